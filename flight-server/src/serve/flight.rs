//! The service's Flight SQL surface: sign-in, statements, prepared statements with bound
//! parameters, and the metadata commands BI tools browse with. Every answer is computed at
//! `GetFlightInfo` and fetched once by a random handle bound to the user, so the schema a client
//! is told is exactly the one it receives.

use std::pin::Pin;

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    Any, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandStatementQuery, DoPutPreparedStatementResult,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tessera_protocol::RequestContext;
use tonic::{Request, Response, Status, Streaming};

use super::{parameters, Asked, Service, Statement};
use crate::access::Caller;
use crate::audit::Decision;
use crate::responses::{flight_info, one_batch, stream_batches, DoGetStream};

impl Service {
    /// The caller the gate admitted (or, for the handshake, the one its credentials name).
    async fn caller<T: Send + Sync>(&self, request: &Request<T>, call: &str) -> Result<Caller, Status> {
        if let Some(caller) = request.extensions().get::<Caller>() {
            return Ok(caller.clone());
        }
        crate::gate::Door::admit(self, request, call).await
    }

    /// Audits a request the service does not answer, and refuses it.
    pub(super) async fn unanswered(&self, caller: &Caller, call: &str, why: String) -> Status {
        let record = self.record(
            &RequestContext::new(caller.name.clone(), ""),
            caller,
            call,
            "",
            Decision::Error,
            Some(why.clone()),
            0,
        );
        match self.audit.record(record).await {
            Ok(()) => Status::invalid_argument(why),
            Err(failure) => failure,
        }
    }

    /// Runs `sql` now for the caller of `request` and hands back a ticket for the answer.
    async fn run_for_info(
        &self,
        sql: &str,
        asked: &Asked,
        caller: &Caller,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let answer = self.answer(caller, asked, sql, "GetFlightInfo").await?;
        let schema = answer.schema.clone();
        let handle = self.answers.insert(&caller.name, answer);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into_bytes().into(),
        };
        flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// `FlightInfo` for a metadata command whose answer is computed on `DoGet`.
    fn metadata_info(
        &self,
        schema: SchemaRef,
        command: Any,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        flight_info(&schema, command.encode_to_vec(), request.into_inner())
    }
}

#[tonic::async_trait]
impl crate::gate::Door for Service {
    async fn admit<T: Send + Sync>(&self, request: &Request<T>, call: &str) -> Result<Caller, Status> {
        match self.access.identify(request).await {
            Ok(caller) => Ok(caller),
            Err(who) => Err(self.refuse_unrecognised(call, &who, request.remote_addr()).await),
        }
    }

    async fn undecodable(&self, caller: &Caller, call: &str, bytes: usize) -> Status {
        let why = format!("the request ({bytes} bytes) is not a Flight SQL command this service answers");
        self.unanswered(caller, call, why).await
    }

    async fn unanswered(&self, caller: &Caller, call: &str, why: String) -> Status {
        Service::unanswered(self, caller, call, why).await
    }
}

#[tonic::async_trait]
impl FlightSqlService for Service {
    type FlightService = Service;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let caller = self.caller(&request, "Handshake").await?;
        let record = self.record(
            &RequestContext::new(caller.name.clone(), ""),
            &caller,
            "Handshake",
            "",
            Decision::Allowed,
            None,
            0,
        );
        self.audit.record(record).await?;
        crate::responses::handshake_response(self.access.open_session(&caller, &request))
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request, "GetFlightInfo").await?;
        let asked = self.asked_by(&caller, request.metadata(), "GetFlightInfo").await?;
        self.run_for_info(&query.query, &asked, &caller, request.into_inner())
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request, "DoGet").await?;
        match self.answers.take(&caller.name, &ticket.statement_handle) {
            Some(answer) => Ok(stream_batches(answer.schema, answer.batches)),
            None => Err(self
                .unanswered(&caller, "DoGet", "the answer is not here: it was fetched already, has expired (after 10 minutes), or is not yours; ask again".into())
                .await),
        }
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request, "DoGet").await?;
        Err(self
            .unanswered(
                &caller,
                "DoGet",
                format!(
                    "this service does not answer {} as a ticket; use GetFlightInfo",
                    message.type_url
                ),
            )
            .await)
    }

    /// A researcher's privacy budget at each trust ([`tessera_protocol::names::BUDGET_ACTION`]):
    /// one result per trust, a [`tessera_protocol::TrustBudget`] as JSON.
    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as arrow_flight::flight_service_server::FlightService>::DoActionStream>, Status> {
        let caller = self.caller(&request, "DoAction").await?;
        let lines = self.act(&caller, &request.get_ref().r#type, request.metadata()).await?;
        let results = lines.into_iter().map(|line| {
            Ok(arrow_flight::Result {
                body: line.encode().into_bytes().into(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(results))))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        const CALL: &str = "CreatePreparedStatement";
        let caller = self.caller(&request, CALL).await?;
        let asked = self.asked_by(&caller, request.metadata(), CALL).await?;
        let parameters = match parameters::count(&query.query) {
            Ok(n) => n,
            Err(why) => return Err(self.unanswered(&caller, CALL, why).await),
        };
        // Without parameters the statement is planned (and refused) now; with them, when bound.
        let schema = match parameters {
            0 => Some(self.describe(&caller, &asked, &query.query, CALL).await?),
            _ => None,
        };
        let dataset_schema = match &schema {
            Some(schema) => {
                let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
                    .try_into()
                    .map_err(|e: ArrowError| Status::internal(e.to_string()))?;
                bytes
            }
            None => Default::default(),
        };
        let statement = Statement {
            asked,
            sql: query.query,
            parameters,
            bound: None,
        };
        let handle = self.statements.insert(&caller.name, statement);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema,
            parameter_schema: Default::default(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        const CALL: &str = "BindParameters";
        let caller = self.caller(&request, CALL).await?;
        let handle = query.prepared_statement_handle.clone();
        let batches: Result<Vec<_>, _> =
            FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from))
                .try_collect()
                .await;
        let values = match batches
            .map_err(|e| e.to_string())
            .and_then(|b| parameters::values_of(&b).map_err(|e| e.to_string()))
        {
            Ok(values) => values,
            Err(why) => {
                return Err(self
                    .unanswered(&caller, CALL, format!("cannot bind the parameters: {why}"))
                    .await)
            }
        };
        let bound = self.statements.update(&caller.name, &handle, |statement| {
            match values.len() == statement.parameters {
                true => {
                    statement.bound = Some(values.clone());
                    Ok(())
                }
                false => Err(format!(
                    "the statement takes {} parameters; {} were bound",
                    statement.parameters,
                    values.len()
                )),
            }
        });
        match bound {
            Some(Ok(())) => Ok(DoPutPreparedStatementResult {
                prepared_statement_handle: Some(handle),
            }),
            Some(Err(why)) => Err(self.unanswered(&caller, CALL, why).await),
            None => Err(self
                .unanswered(
                    &caller,
                    CALL,
                    "no such prepared statement (closed, expired, or not yours)".into(),
                )
                .await),
        }
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request, "GetFlightInfo").await?;
        let Some(statement) = self
            .statements
            .update(&caller.name, &query.prepared_statement_handle, |s| s.clone())
        else {
            return Err(self
                .unanswered(
                    &caller,
                    "GetFlightInfo",
                    "no such prepared statement (closed, expired, or not yours)".into(),
                )
                .await);
        };
        let sql = match (statement.parameters, &statement.bound) {
            (0, _) => Ok(statement.sql.clone()),
            (n, None) => Err(format!(
                "the statement takes {n} parameters; bind them before executing it"
            )),
            (_, Some(values)) => parameters::bind(&statement.sql, values),
        };
        match sql {
            Ok(sql) => {
                self.run_for_info(&sql, &statement.asked, &caller, request.into_inner())
                    .await
            }
            Err(why) => Err(self.unanswered(&caller, "GetFlightInfo", why).await),
        }
    }

    async fn do_get_prepared_statement(
        &self,
        _query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.caller(&request, "DoGet").await?;
        Err(self
            .unanswered(
                &caller,
                "DoGet",
                "fetch a prepared statement's answer with the ticket GetFlightInfo gives".into(),
            )
            .await)
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request, "ClosePreparedStatement").await?;
        self.statements.take(&caller.name, &query.prepared_statement_handle);
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(schema, query.as_any(), request)
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
        self.metadata_info(schema, query.as_any(), request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.into_builder().schema();
        one_batch(schema, crate::metadata::catalogs(query))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(schema, query.as_any(), request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.clone().into_builder().schema();
        one_batch(schema, crate::metadata::schemas(query))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(schema, query.as_any(), request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.clone().into_builder().schema();
        one_batch(schema, crate::metadata::tables(query, self.catalog.contracts()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(schema, query.as_any(), request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.into_builder().schema();
        one_batch(schema, crate::metadata::table_types(query))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(crate::metadata::xdbc_types()).schema();
        self.metadata_info(schema, query.as_any(), request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let schema = query.into_builder(crate::metadata::xdbc_types()).schema();
        one_batch(schema, crate::metadata::xdbc_type_info(query))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
