//! A client of `tessera serve`: sign in with a user name and password (the Flight SQL handshake
//! gives a bearer token), then ask questions as Flight SQL statements in one of the user's
//! projects. What the CLI's `--server` mode and the tests use.

use std::net::IpAddr;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{Action, FlightDescriptor, HandshakeRequest};
use futures::{stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

use crate::client::{endpoint, source_chain, ClientError};
use crate::credentials::{Credentials, AUTHORIZATION};
use crate::names::{PRIVACY_SPEND_HEADER, PROJECT_HEADER};
use crate::tls::ClientTls;

/// A signed-in connection to the service.
#[derive(Clone)]
pub struct ServiceClient {
    inner: FlightServiceClient<Channel>,
    token: String,
    project: Option<String>,
    /// The privacy spend asked for each question, as a ρ in text (`None`: each trust's default).
    spend: Option<String>,
}

/// The service's answer: its schema carries the provenance and disclosure lines.
#[derive(Debug, Clone)]
pub struct ServiceAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Whether `url` is `http://` to a loopback address (the only place a password may go without TLS).
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl ServiceClient {
    /// Connects to `url` (`https://…` with `tls`, or `http://` to a loopback address) and signs
    /// in; questions go to `project` (the user's first project when `None`).
    pub async fn sign_in(
        url: &str,
        tls: Option<&ClientTls>,
        user: &str,
        password: &str,
        project: Option<String>,
    ) -> Result<ServiceClient, ClientError> {
        if tls.is_none() && !is_loopback_http(url) {
            return Err(ClientError::Connect {
                url: url.to_string(),
                message: "a password is sent only over TLS (an https:// URL and its CA), or to http:// on this machine"
                    .into(),
            });
        }
        let channel = endpoint(url, tls)?.connect().await.map_err(|e| ClientError::Connect {
            url: url.to_string(),
            message: source_chain(&e),
        })?;
        let mut inner = FlightServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        let mut request = Request::new(stream::iter(vec![HandshakeRequest::default()]));
        let basic = Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        };
        let value = basic
            .header()
            .parse()
            .map_err(|_| ClientError::Decode("the user name or password is not a valid header value".into()))?;
        request.metadata_mut().insert(AUTHORIZATION, value);
        let response = inner.handshake(request).await.map_err(ClientError::Status)?;
        let token = response
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(Credentials::parse);
        let Some(Credentials::Bearer(token)) = token else {
            return Err(ClientError::Decode("the service gave no session token".into()));
        };
        Ok(ServiceClient {
            inner,
            token,
            project,
            spend: None,
        })
    }

    /// The same session asking every question at privacy spend `rho` at each trust.
    pub fn with_spend(mut self, rho: Option<f64>) -> ServiceClient {
        self.spend = rho.map(|r| r.to_string());
        self
    }

    /// `message` with the session token and the project.
    fn request<T>(&self, message: T) -> Result<Request<T>, ClientError> {
        let mut request = Request::new(message);
        let bearer = Credentials::Bearer(self.token.clone()).header();
        let bad = |_| ClientError::Decode("not a valid header value".into());
        request
            .metadata_mut()
            .insert(AUTHORIZATION, MetadataValue::try_from(bearer).map_err(bad)?);
        if let Some(project) = &self.project {
            request
                .metadata_mut()
                .insert(PROJECT_HEADER, MetadataValue::try_from(project.as_str()).map_err(bad)?);
        }
        if let Some(spend) = &self.spend {
            request.metadata_mut().insert(
                PRIVACY_SPEND_HEADER,
                MetadataValue::try_from(spend.as_str()).map_err(bad)?,
            );
        }
        Ok(request)
    }

    /// What the session's project has spent of its privacy budget at each trust, and may still
    /// spend, as each trust's ledger says.
    pub async fn budget(&self) -> Result<Vec<crate::TrustBudget>, ClientError> {
        let action = Action {
            r#type: crate::names::BUDGET_ACTION.to_string(),
            body: Default::default(),
        };
        let mut client = self.inner.clone();
        let mut results = client
            .do_action(self.request(action)?)
            .await
            .map_err(ClientError::Status)?
            .into_inner();
        let mut lines = Vec::new();
        while let Some(result) = results.message().await.map_err(ClientError::Status)? {
            let line = crate::TrustBudget::decode(&result.body)
                .ok_or_else(|| ClientError::Decode("the service's budget line is not one".into()))?;
            lines.push(line);
        }
        Ok(lines)
    }

    /// Asks `sql` and collects the answer.
    pub async fn query(&self, sql: &str) -> Result<ServiceAnswer, ClientError> {
        let command = CommandStatementQuery {
            query: sql.to_string(),
            transaction_id: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let mut client = self.inner.clone();
        let info = client
            .get_flight_info(self.request(descriptor)?)
            .await
            .map_err(ClientError::Status)?
            .into_inner();
        let mut schema = None;
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint
                .ticket
                .ok_or_else(|| ClientError::Decode("the answer came without a ticket".into()))?;
            let response = client
                .do_get(self.request(ticket)?)
                .await
                .map_err(ClientError::Status)?;
            let mut stream =
                FlightRecordBatchStream::new_from_flight_data(response.into_inner().map_err(FlightError::from));
            while let Some(batch) = stream.try_next().await.map_err(ClientError::from)? {
                batches.push(batch);
            }
            schema = schema.or_else(|| stream.schema().cloned());
        }
        let schema = schema.ok_or_else(|| ClientError::Decode("the answer carried no schema".into()))?;
        Ok(ServiceAnswer { schema, batches })
    }
}
