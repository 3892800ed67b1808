//! Flight responses both services build: a `FlightInfo` for an answer's schema and ticket, an
//! answer's batches as a stream, and a question's failure as a gRPC status.

use std::pin::Pin;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{stream, Stream, TryStreamExt};
use tessera_coordinator::{ErrorKind, QueryError};
use tonic::{Response, Status};

use crate::audit::Decision;

/// The stream `DoGet` answers with.
pub type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

/// Streams batches as Flight data; the schema is always sent, even for zero groups.
pub fn stream_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::iter(batches.into_iter().map(Ok)))
        .inspect_ok(|data| crate::operations::bytes_out(data.data_header.len() + data.data_body.len()))
        .map_err(Status::from);
    Response::new(Box::pin(flight))
}

pub fn one_batch<E: std::fmt::Display>(
    schema: SchemaRef,
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    Ok(stream_batches(schema, vec![batch]))
}

pub fn flight_info(
    schema: &SchemaRef,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket { ticket: ticket.into() });
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("cannot encode the answer's schema: {e}")))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// How a question the coordinator's pipeline did not answer is told and audited: disclosure
/// control's refusals read as reasons; syntax errors and unknown names are invalid arguments; a
/// trust that cannot be reached is unavailable.
pub fn status_of(error: &QueryError) -> (Decision, Status) {
    let invalid = error.message.starts_with("syntax error") || error.message.contains("not found");
    match (error.kind, invalid) {
        (ErrorKind::Query, false) => (Decision::Refused, Status::permission_denied(error.message.clone())),
        (ErrorKind::Query, true) => (Decision::Error, Status::invalid_argument(error.message.clone())),
        (ErrorKind::Connection, _) => (Decision::Error, Status::unavailable(error.message.clone())),
    }
}

/// The stream a handshake answers with.
pub type HandshakeStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::HandshakeResponse, Status>> + Send>>;

/// A handshake's answer, carrying `token` (a new session's bearer token) when there is one.
pub fn handshake_response(token: Option<String>) -> Result<Response<HandshakeStream>, Status> {
    let message = arrow_flight::HandshakeResponse {
        protocol_version: 0,
        payload: Default::default(),
    };
    let mut response = Response::new(Box::pin(stream::iter(vec![Ok(message)])) as HandshakeStream);
    if let Some(token) = token {
        let value = tessera_protocol::credentials::Credentials::Bearer(token)
            .header()
            .parse()
            .map_err(|_| Status::internal("cannot encode the session token"))?;
        response
            .metadata_mut()
            .insert(tessera_protocol::credentials::AUTHORIZATION, value);
    }
    Ok(response)
}
