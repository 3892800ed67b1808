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
}

/// A service behind its door.
pub struct Gate<S>(pub Arc<S>);

impl<S: Door> Gate<S> {
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
    ) -> Result<(), Status> {
        let caller = self.admit(request, call).await?;
        match Any::decode(bytes) {
            Ok(_) => Ok(()),
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
        self.admit(&mut request, "ListFlights").await?;
        self.0.list_flights(request).await
    }

    async fn get_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<FlightInfo>, Status> {
        let cmd = request.get_ref().cmd.clone();
        self.admit_command(&mut request, "GetFlightInfo", &cmd).await?;
        self.0.get_flight_info(request).await
    }

    async fn poll_flight_info(&self, mut request: Request<FlightDescriptor>) -> Result<Response<PollInfo>, Status> {
        self.admit(&mut request, "PollFlightInfo").await?;
        self.0.poll_flight_info(request).await
    }

    async fn get_schema(&self, mut request: Request<FlightDescriptor>) -> Result<Response<SchemaResult>, Status> {
        self.admit(&mut request, "GetSchema").await?;
        self.0.get_schema(request).await
    }

    async fn do_get(&self, mut request: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = request.get_ref().ticket.clone();
        self.admit_command(&mut request, "DoGet", &ticket).await?;
        self.0.do_get(request).await
    }

    async fn do_put(&self, mut request: Request<Streaming<FlightData>>) -> Result<Response<Self::DoPutStream>, Status> {
        self.admit(&mut request, "DoPut").await?;
        self.0.do_put(request).await
    }

    async fn do_exchange(
        &self,
        mut request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.admit(&mut request, "DoExchange").await?;
        self.0.do_exchange(request).await
    }

    async fn do_action(&self, mut request: Request<Action>) -> Result<Response<Self::DoActionStream>, Status> {
        self.admit(&mut request, "DoAction").await?;
        self.0.do_action(request).await
    }

    async fn list_actions(&self, mut request: Request<Empty>) -> Result<Response<Self::ListActionsStream>, Status> {
        self.admit(&mut request, "ListActions").await?;
        self.0.list_actions(request).await
    }
}

impl<S> From<S> for Gate<S> {
    fn from(service: S) -> Gate<S> {
        Gate(Arc::new(service))
    }
}
