//! The door every request passes: the caller is authenticated before anything in the request is
//! decoded, and a request that does not decode is audited too, so that no request that arrives
//! goes unrecorded — not a garbage ticket, not an unknown command, not a call nobody answers.

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::Any;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo, SchemaResult, Ticket,
};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::{TrustNode, Unanswered};
use crate::access::Caller;

/// The node behind its door.
pub struct Gate(pub Arc<TrustNode>);

type Inner = TrustNode;

impl Gate {
    /// Authenticates the caller (audited if refused) and hands who it is to the handlers.
    async fn admit<T>(&self, request: &mut Request<T>, call: &str) -> Result<Caller, Status> {
        let caller = self.0.caller(request, call, "").await?;
        request.extensions_mut().insert(caller.clone());
        Ok(caller)
    }

    /// Audits a request whose content is not a Flight SQL command, and says so.
    async fn undecodable(&self, caller: &Caller, call: &str, bytes: &[u8]) -> Status {
        let request = self.0.request_without_sql(caller);
        let why = format!(
            "the request ({} bytes) is not a Flight SQL command this node answers",
            bytes.len()
        );
        self.0
            .core
            .record_failure(&request, caller, call, Unanswered::Invalid(why))
            .await
    }

    /// Admits the caller and checks `bytes` hold a protobuf `Any` (a Flight SQL command).
    async fn admit_command<T>(&self, request: &mut Request<T>, call: &str, bytes: &[u8]) -> Result<(), Status> {
        let caller = self.admit(request, call).await?;
        match Any::decode(bytes) {
            Ok(_) => Ok(()),
            Err(_) => Err(self.undecodable(&caller, call, bytes).await),
        }
    }
}

#[tonic::async_trait]
impl FlightService for Gate {
    type HandshakeStream = <Inner as FlightService>::HandshakeStream;
    type ListFlightsStream = <Inner as FlightService>::ListFlightsStream;
    type DoGetStream = <Inner as FlightService>::DoGetStream;
    type DoPutStream = <Inner as FlightService>::DoPutStream;
    type DoExchangeStream = <Inner as FlightService>::DoExchangeStream;
    type DoActionStream = <Inner as FlightService>::DoActionStream;
    type ListActionsStream = <Inner as FlightService>::ListActionsStream;

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

impl From<TrustNode> for Gate {
    fn from(node: TrustNode) -> Gate {
        Gate(Arc::new(node))
    }
}
