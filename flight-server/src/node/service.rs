//! The Flight SQL surface of a trust node.

use std::pin::Pin;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::arrow::record_batch::RecordBatch;
use futures::{stream, Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use tessera_protocol::names::{CATALOG, PROJECT_HEADER, REQUESTER_HEADER, SCHEMA};
use tessera_protocol::{token, FragmentRequest, RequestContext};

use super::TrustNode;

type DoGetStream = <TrustNode as FlightService>::DoGetStream;

fn header(metadata: &MetadataMap, name: &str) -> String {
    metadata
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Streams batches as Flight data; the schema is always sent, even for zero groups.
fn stream_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> Response<DoGetStream> {
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::iter(batches.into_iter().map(Ok)))
        .map_err(Status::from);
    Response::new(Box::pin(flight))
}

fn one_batch<E: std::fmt::Display>(
    schema: SchemaRef,
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    Ok(stream_batches(schema, vec![batch]))
}

fn flight_info(
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

impl TrustNode {
    /// Whether the call carries this trust's coordinator token.
    fn is_coordinator(&self, metadata: &MetadataMap) -> bool {
        self.coordinator_digest.as_deref().is_some_and(|digest| {
            let header = metadata.get(token::TOKEN_HEADER).and_then(|v| v.to_str().ok());
            token::verifies(header, digest)
        })
    }

    /// A request for `sql` from a generic client, identified by its headers.
    fn client_request(&self, sql: String, metadata: &MetadataMap) -> FragmentRequest {
        let context = RequestContext::new(header(metadata, REQUESTER_HEADER), header(metadata, PROJECT_HEADER));
        FragmentRequest {
            from_coordinator: self.is_coordinator(metadata),
            ..FragmentRequest::with_context(sql, context)
        }
    }

    /// A request from a ticket or handle the client sent back; who it comes from is decided by
    /// this call's headers, never by the handle.
    fn decode_handle(&self, bytes: &[u8], metadata: &MetadataMap) -> Result<FragmentRequest, Status> {
        let mut request = FragmentRequest::decode(bytes).map_err(Status::invalid_argument)?;
        request.from_coordinator = self.is_coordinator(metadata);
        Ok(request)
    }

    async fn run(&self, request: FragmentRequest, call: &str) -> Result<Response<DoGetStream>, Status> {
        let request = self.with_defaults(request);
        let answer = self.answer(&request, call).await?;
        Ok(stream_batches(answer.schema, answer.batches))
    }

    /// `FlightInfo` for a query: checks it now, and puts the request in the ticket for `DoGet`.
    async fn info_for(
        &self,
        request: FragmentRequest,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let request = self.with_defaults(request);
        let schema = self.describe(&request, "GetFlightInfo").await?;
        let ticket = TicketStatementQuery {
            statement_handle: request.encode().into(),
        };
        flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// `FlightInfo` for a metadata command whose answer is computed on `DoGet`.
    fn metadata_info(
        &self,
        schema: SchemaRef,
        command: Any,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&schema, command.encode_to_vec(), descriptor)
    }
}

#[tonic::async_trait]
impl FlightSqlService for TrustNode {
    type FlightService = TrustNode;

    async fn do_handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        // No authentication yet: answer the handshake so clients that always send one can connect.
        let response = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        Ok(Response::new(Box::pin(stream::iter(vec![Ok(response)]))))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let fragment = self.client_request(query.query, request.metadata());
        self.info_for(fragment, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        // The handle comes from the client: it is decoded, re-planned and re-checked like any query.
        let fragment = self.decode_handle(&ticket.statement_handle, request.metadata())?;
        self.run(fragment, "DoGet").await
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> Result<Response<DoGetStream>, Status> {
        match message.unpack::<CommandStatementQuery>() {
            Ok(Some(query)) => {
                self.run(self.client_request(query.query, request.metadata()), "DoGet")
                    .await
            }
            _ => Err(Status::unimplemented(format!(
                "this node does not answer {}",
                message.type_url
            ))),
        }
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let fragment = self.with_defaults(self.client_request(query.query, request.metadata()));
        let schema = self.describe(&fragment, "CreatePreparedStatement").await?;
        let IpcMessage(dataset_schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e: ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: fragment.encode().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let fragment = self.decode_handle(&query.prepared_statement_handle, request.metadata())?;
        self.info_for(fragment, request.into_inner()).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let fragment = self.decode_handle(&query.prepared_statement_handle, request.metadata())?;
        self.run(fragment, "DoGet").await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles carry the whole request; there is nothing to release.
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&self.sql_info);
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(schema, query.as_any(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(schema, query.as_any(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for contract in self.tables.values() {
            let kind = if contract.public { "VIEW" } else { "TABLE" };
            builder
                .append(CATALOG, SCHEMA, &contract.name, kind, &contract.arrow_schema())
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append("TABLE");
        builder.append("VIEW");
        one_batch(builder.schema(), builder.build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
