//! The door every request passes, for the trust node and the service alike: the caller is
//! authenticated before anything in the request is decoded, and a request that does not decode is
//! audited too, so that no request that arrives goes unrecorded — not a garbage ticket, not an
//! unknown command, not a call nobody answers.

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::Any;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo, SchemaResult, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Caller;

/// A Flight service that authenticates and audits its callers.
#[tonic::async_trait]
pub trait Door: FlightService {
    /// Authenticates the caller of `request`; one who is refused is audited.
    async fn admit<T: Send + Sync>(&self, request: &Request<T>, call: &str) -> Result<Caller, Status>;

    /// Audits a request whose content (`bytes` long) is not a Flight SQL command, and says so.
    async fn undecodable(&self, caller: &Caller, call: &str, bytes: usize) -> Status;

    /// Audits a request this server does not answer, and says `why`.
    async fn unanswered(&self, caller: &Caller, call: &str, why: String) -> Status;
}

/// Whether `status` is a refusal the Flight SQL framework made itself (its default for a call
/// not implemented, or a message it could not unpack), not one of ours.
fn by_the_framework(status: &Status) -> bool {
    let message = status.message();
    status.code() == tonic::Code::Unimplemented
        || (status.code() == tonic::Code::InvalidArgument
            && (message.starts_with("Unable to unpack")
                || message.starts_with("Unable to decode")
                || message.contains("DecodeError")))
}

/// A service behind its door.
pub struct Gate<S>(pub Arc<S>);

impl<S: Door> Gate<S> {
    /// Words and audits what the Flight SQL framework refused on its own — a call this service
    /// does not implement, a command or action that does not unpack — so that no refusal goes
    /// unaudited and no library's wording reaches the caller.
    async fn settle<R>(&self, caller: &Caller, call: &str, result: Result<R, Status>) -> Result<R, Status> {
        match result {
            Err(status) if by_the_framework(&status) => {
                let why = format!("this server does not answer this kind of {call} request");
                Err(self.0.unanswered(caller, call, why).await)
            }
            other => other,
        }
    }

    /// Authenticates the caller and hands who it is to the handlers.
    async fn admit<T: Send + Sync>(&self, request: &mut Request<T>, call: &str) -> Result<Caller, Status> {
        let caller = self.0.admit(request, call).await?;
        request.extensions_mut().insert(caller.clone());
        Ok(caller)
    }

    /// Admits the caller and checks `bytes` hold a protobuf `Any` (a Flight SQL command).
    async fn admit_command<T: Send + Sync>(
        &self,
        request: &mut Request<T>,
        call: &str,
        bytes: &[u8],
    ) -> Result<Caller, Status> {
        let caller = self.admit(request, call).await?;
        match Any::decode(bytes) {
            Ok(_) => Ok(caller),
            Err(_) => Err(self.0.undecodable(&caller, call, bytes.len()).await),
        }
    }
}

#[tonic::async_trait]
impl<S: Door> FlightService for Gate<S> {
    type HandshakeStream = <S as FlightService>::HandshakeStream;
    type ListFlightsStream = <S as FlightService>::ListFlightsStream;
    type DoGetStream = <S as FlightService>::DoGetStream;
    type DoPutStream = <S as FlightService>::DoPutStream;
    type DoExchangeStream = <S as FlightService>::DoExchangeStream;
    type DoActionStream = <S as FlightService>::DoActionStream;
    type ListActionsStream = <S as FlightService>::ListActionsStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        // The handshake authenticates and audits itself (it is where a password signs in).
        self.0.handshake(request).await
    }

    async fn list_flights(&self, mut request: Request<Criteria>) -> Result<Response<Self::ListFlightsStream>, Status> {
        let caller = self.admit(&mut request, "ListFlights").await?;
        let result = self.0.list_flights(request).await;
        self.settle(&caller, "ListFlights", result).await
    }

    async fn get_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let cmd = request.get_ref().cmd.clone();
        let caller = self.admit_command(&mut request, "GetFlightInfo", &cmd).await?;
        let result = self.0.get_flight_info(request).await;
        self.settle(&caller, "GetFlightInfo", result).await
    }

    async fn poll_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        let caller = self.admit(&mut request, "PollFlightInfo").await?;
        let result = self.0.poll_flight_info(request).await;
        self.settle(&caller, "PollFlightInfo", result).await
    }

    async fn get_schema(&self, mut request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        let caller = self.admit(&mut request, "GetSchema").await?;
        let result = self.0.get_schema(request).await;
        self.settle(&caller, "GetSchema", result).await
    }

    async fn do_get(&self, mut request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = request.get_ref().ticket.clone();
        let caller = self.admit_command(&mut request, "DoGet", &ticket).await?;
        let result = self.0.do_get(request).await;
        self.settle(&caller, "DoGet", result).await
    }

    async fn do_put(&self, mut request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        let caller = self.admit(&mut request, "DoPut").await?;
        let result = self.0.do_put(request).await;
        self.settle(&caller, "DoPut", result).await
    }

    async fn do_exchange(
        &self,
        mut request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let caller = self.admit(&mut request, "DoExchange").await?;
        let result = self.0.do_exchange(request).await;
        self.settle(&caller, "DoExchange", result).await
    }

    async fn do_action(&self, mut request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        let caller = self.admit(&mut request, "DoAction").await?;
        let result = self.0.do_action(request).await;
        self.settle(&caller, "DoAction", result).await
    }

    async fn list_actions(&self, mut request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        let caller = self.admit(&mut request, "ListActions").await?;
        let result = self.0.list_actions(request).await;
        self.settle(&caller, "ListActions", result).await
    }
}

/// Most bytes of one gRPC message a server accepts.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

impl<S: Door> Gate<S> {
    /// Serves the gated service and gRPC health (SERVING until `shutdown` starts, then
    /// NOT_SERVING while the calls in flight finish) with `builder`, on `listener` through the
    /// bounded listener (which does TLS with `tls` when given; else `builder` may).
    pub async fn serve(
        self,
        mut builder: tonic::transport::Server,
        listener: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        use arrow_flight::flight_service_server::FlightServiceServer;
        let service = FlightServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(64 * 1024 * 1024);
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<FlightServiceServer<Gate<S>>>().await;
        let shutdown = async move {
            shutdown.await;
            health.set_not_serving::<FlightServiceServer<Gate<S>>>().await;
        };
        let router = builder.add_service(health_service).add_service(service);
        match crate::listener::bounded(listener, tls) {
            Ok(incoming) => {
                router
                    .serve_with_incoming_shutdown(incoming.into_stream(), shutdown)
                    .await
            }
            Err(e) => {
                tracing::error!("cannot listen: {e}");
                Ok(())
            }
        }
    }
}

impl<S> From<S> for Gate<S> {
    fn from(service: S) -> Gate<S> {
        Gate(Arc::new(service))
    }
}
