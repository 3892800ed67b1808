//! The Flight SQL surface of a trust node.

use std::pin::Pin;

use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::Stream;
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use tessera_coordinator::QueryResult;
use tessera_protocol::names::{BUDGET_ACTION, CANCEL_ACTION, PROJECT_HEADER, REQUESTER_HEADER, RESERVE_ACTION};
use tessera_protocol::{FragmentRequest, RequestContext};

use super::{TrustNode, Unanswered};
use crate::access::{Caller, Role};
use crate::audit::Decision;
use tessera_policy::Refusal;

use crate::responses::{flight_info, one_batch, stream_batches, DoGetStream};

fn header(metadata: &MetadataMap, name: &str) -> String {
    metadata
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A result's batches as a Flight stream (schema and metadata first).
fn stream_result(result: QueryResult) -> Response<DoGetStream> {
    stream_batches(result.schema, result.batches)
}

impl TrustNode {
    /// The authenticated caller of `request` (as the gate found it, when it did); anyone else is
    /// audited and refused.
    pub(super) async fn caller<T>(&self, request: &Request<T>, call: &str, sql: &str) -> Result<Caller, Status> {
        if let Some(caller) = request.extensions().get::<Caller>() {
            return Ok(caller.clone());
        }
        match self.access.identify(request).await {
            Ok(caller) => Ok(caller),
            Err(who) => match self.access.audit_unrecognised(request.remote_addr()) {
                Some(turned_away) => Err(self.core.record_unrecognised(call, sql, &who, turned_away).await),
                // A flood from one address is not written line by line; the next line counts it.
                None => Err(Status::unauthenticated(who.reason)),
            },
        }
    }

    /// The request an audit line stands for when a call carries no SQL (a sign-in, a ticket that
    /// does not decode): an analyst's is theirs and their project's, the coordinator's carries
    /// the node's defaults.
    pub(super) fn request_without_sql(&self, caller: &Caller) -> FragmentRequest {
        match caller.role {
            Role::Analyst => self.analysts.request(caller, String::new()),
            Role::Coordinator => self.core.with_defaults(FragmentRequest::new("")),
        }
    }

    /// A request for `sql` from the coordinator over plain Flight SQL: the coordinator forwards
    /// who asked in its headers.
    fn coordinator_request(&self, sql: String, metadata: &MetadataMap) -> FragmentRequest {
        let context = RequestContext::new(header(metadata, REQUESTER_HEADER), header(metadata, PROJECT_HEADER));
        FragmentRequest {
            from_coordinator: true,
            ..FragmentRequest::with_context(sql, context)
        }
    }

    /// A request from a ticket or handle the client sent back; the role comes from the caller,
    /// never from the handle. One that does not decode is audited.
    async fn decode_handle(&self, bytes: &[u8], caller: &Caller, call: &str) -> Result<FragmentRequest, Status> {
        match FragmentRequest::decode(bytes) {
            Ok(mut request) => {
                request.from_coordinator = caller.role == Role::Coordinator;
                Ok(request)
            }
            Err(why) => {
                let request = self.request_without_sql(caller);
                Err(self
                    .core
                    .record_failure(&request, caller, call, Unanswered::Invalid(why))
                    .await)
            }
        }
    }

    /// Refuses (and audits) the coordinator's question for a project this trust has not approved.
    async fn approved(&self, request: &FragmentRequest, caller: &Caller, call: &str) -> Result<(), Status> {
        let project = &request.context.project;
        // The analysts' own project is the node's, never the coordinator's to claim.
        let analysts = *project == self.analysts.project();
        if caller.role != Role::Coordinator || (self.access.approves(project) && !analysts) {
            return Ok(());
        }
        let refusal = Refusal::new(format!(
            "project `{project}` is not approved by this trust (its [access] projects file)"
        ));
        Err(self
            .core
            .record_failure(request, caller, call, Unanswered::Refused(refusal))
            .await)
    }

    /// Answers `request` for `caller`: exact for the coordinator, protected for an analyst.
    async fn run(
        &self,
        request: FragmentRequest,
        caller: &Caller,
        call: &str,
    ) -> Result<Response<DoGetStream>, Status> {
        match caller.role {
            Role::Coordinator => {
                let request = self.core.with_defaults(request);
                self.approved(&request, caller, call).await?;
                let answer = self.core.answer(&request, caller, call).await?;
                Ok(stream_batches(answer.schema, answer.batches))
            }
            Role::Analyst => Ok(stream_result(self.analysts.run(caller, request.sql, call).await?)),
        }
    }

    /// `FlightInfo` for a query. The coordinator's is checked now and run on `DoGet` from the
    /// request in the ticket; an analyst's is run now and fetched by a one-time handle, so the
    /// schema announced is exactly the one streamed.
    async fn info_for(
        &self,
        request: FragmentRequest,
        caller: &Caller,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let (schema, handle) = match caller.role {
            Role::Coordinator => {
                let request = self.core.with_defaults(request);
                self.approved(&request, caller, "GetFlightInfo").await?;
                let schema = self.core.describe(&request, caller, "GetFlightInfo").await?;
                (schema, request.encode())
            }
            Role::Analyst => {
                let result = self.analysts.run(caller, request.sql, "GetFlightInfo").await?;
                let schema = result.schema.clone();
                (schema, self.analysts.park(caller, result).into_bytes())
            }
        };
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// `FlightInfo` for a metadata command whose answer is computed on `DoGet`.
    async fn metadata_info(
        &self,
        schema: SchemaRef,
        command: Any,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request, "GetFlightInfo", &command.type_url).await?;
        flight_info(&schema, command.encode_to_vec(), request.into_inner())
    }

    /// Checks the caller of a metadata command's `DoGet`.
    async fn metadata_caller(&self, request: &Request<Ticket>, command: &str) -> Result<Caller, Status> {
        self.caller(request, "DoGet", command).await
    }
}

#[tonic::async_trait]
impl crate::gate::Door for TrustNode {
    async fn admit<T: Send + Sync>(&self, request: &Request<T>, call: &str) -> Result<Caller, Status> {
        self.caller(request, call, "").await
    }

    async fn undecodable(&self, caller: &Caller, call: &str, bytes: usize) -> Status {
        let why = format!("the request ({bytes} bytes) is not a Flight SQL command this node answers");
        crate::gate::Door::unanswered(self, caller, call, why).await
    }

    async fn unanswered(&self, caller: &Caller, call: &str, why: String) -> Status {
        let request = self.request_without_sql(caller);
        self.core
            .record_failure(&request, caller, call, Unanswered::Invalid(why))
            .await
    }
}

#[tonic::async_trait]
impl FlightSqlService for TrustNode {
    type FlightService = TrustNode;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        // Basic credentials in the header (as ADBC and arrow-flight's client send them) sign an
        // analyst in; the answer carries a bearer token for the calls that follow.
        let caller = self.caller(&request, "Handshake", "").await?;
        let sign_in = self.request_without_sql(&caller);
        let record = self
            .core
            .audit_record(&sign_in, &caller, "Handshake", Decision::Allowed, None, 0);
        self.core.record(record).await?;
        crate::responses::handshake_response(self.access.open_session(&caller, &request))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request, "GetFlightInfo", &query.query).await?;
        let fragment = self.coordinator_request(query.query, request.metadata());
        self.info_for(fragment, &caller, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request, "DoGet", "").await?;
        if caller.role == Role::Analyst {
            if let Some(result) = self.analysts.take(&caller, &ticket.statement_handle) {
                return Ok(stream_result(result));
            }
        }
        // The handle comes from the client: it is decoded, re-planned and re-checked like any query.
        let fragment = self.decode_handle(&ticket.statement_handle, &caller, "DoGet").await?;
        self.run(fragment, &caller, "DoGet").await
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request, "DoGet", &message.type_url).await?;
        match message.unpack::<CommandStatementQuery>() {
            Ok(Some(query)) => {
                let fragment = self.coordinator_request(query.query, request.metadata());
                self.run(fragment, &caller, "DoGet").await
            }
            _ => {
                let unknown = Unanswered::Invalid(format!("this node does not answer {}", message.type_url));
                let request = self.request_without_sql(&caller);
                Err(self.core.record_failure(&request, &caller, "DoGet", unknown).await)
            }
        }
    }

    /// The coordinator's reservation of a private fragment's spend, before any trust answers
    /// ([`RESERVE_ACTION`]), and its cancellation ([`CANCEL_ACTION`]).
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as arrow_flight::flight_service_server::FlightService>::DoActionStream>, Status> {
        let kind = request.get_ref().r#type.clone();
        let caller = self.caller(&request, "DoAction", &kind).await?;
        let reserve = match kind.as_str() {
            RESERVE_ACTION => Some(true),
            CANCEL_ACTION => Some(false),
            BUDGET_ACTION => None,
            _ => return Err(Status::invalid_argument(format!("this node has no action {kind:?}"))),
        };
        if caller.role != Role::Coordinator {
            return Err(Status::permission_denied(
                "only the federation's coordinator reserves privacy spend or reads a project's budget here; \
                 an analyst's question reserves its own",
            ));
        }
        let fragment = self.decode_handle(&request.get_ref().body, &caller, "DoAction").await?;
        let fragment = self.core.with_defaults(fragment);
        self.approved(&fragment, &caller, "DoAction").await?;
        let Some(reserve) = reserve else {
            let note = self.core.budget(&fragment, &caller).await?;
            let results = note.map(|n| {
                Ok(arrow_flight::Result {
                    body: n.encode().into_bytes().into(),
                })
            });
            return Ok(Response::new(Box::pin(futures::stream::iter(results))));
        };
        self.core.reserve(&fragment, &caller, reserve).await?;
        Ok(Response::new(Box::pin(futures::stream::empty())))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        const CALL: &str = "CreatePreparedStatement";
        let caller = self.caller(&request, CALL, &query.query).await?;
        let fragment = self
            .core
            .with_defaults(self.coordinator_request(query.query, request.metadata()));
        let schema = match caller.role {
            Role::Coordinator => {
                self.approved(&fragment, &caller, CALL).await?;
                self.core.describe(&fragment, &caller, CALL).await?
            }
            Role::Analyst => self.analysts.describe(&caller, fragment.sql.clone(), CALL).await?,
        };
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
        let caller = self.caller(&request, "GetFlightInfo", "").await?;
        let fragment = self
            .decode_handle(&query.prepared_statement_handle, &caller, "GetFlightInfo")
            .await?;
        self.info_for(fragment, &caller, request.into_inner()).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request, "DoGet", "").await?;
        let fragment = self
            .decode_handle(&query.prepared_statement_handle, &caller, "DoGet")
            .await?;
        self.run(fragment, &caller, "DoGet").await
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles carry the whole request; there is nothing to release.
        self.caller(&request, "ClosePreparedStatement", "").await?;
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(schema, query.as_any(), request).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_caller(&request, "GetSqlInfo").await?;
        let builder = query.into_builder(&self.sql_info);
        one_batch(builder.schema(), builder.build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(schema, query.as_any(), request).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_caller(&request, "GetCatalogs").await?;
        let schema = query.into_builder().schema();
        one_batch(schema, crate::metadata::catalogs(query))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(schema, query.as_any(), request).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_caller(&request, "GetDbSchemas").await?;
        let schema = query.clone().into_builder().schema();
        one_batch(schema, crate::metadata::schemas(query))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(schema, query.as_any(), request).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_caller(&request, "GetTables").await?;
        let schema = query.clone().into_builder().schema();
        one_batch(schema, crate::metadata::tables(query, self.core.tables.values()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(schema, query.as_any(), request).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.metadata_caller(&request, "GetTableTypes").await?;
        let schema = query.into_builder().schema();
        one_batch(schema, crate::metadata::table_types(query))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
