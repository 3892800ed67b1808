//! A client for a node's fast path: one `DoGet` per query, the fragment in the ticket.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use arrow_flight::{Action, Ticket};
use futures::TryStreamExt;
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::credentials::{Credentials, AUTHORIZATION};
use crate::fragment::FragmentRequest;
use crate::tls::ClientTls;

/// Why a node gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached.
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    /// The node answered with an error (a refusal is `PermissionDenied`).
    #[error("{}", .0.message())]
    Status(Status),
    /// The answer could not be decoded.
    #[error("the node's answer could not be read: {0}")]
    Decode(String),
}

impl ClientError {
    /// The gRPC code, when the node answered with an error.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

impl From<FlightError> for ClientError {
    fn from(error: FlightError) -> ClientError {
        match error {
            FlightError::Tonic(status) => ClientError::Status(*status),
            other => ClientError::Decode(other.to_string()),
        }
    }
}

/// A node's answer to one fragment.
#[derive(Debug, Clone)]
pub struct NodeAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl NodeAnswer {
    /// Rows across all batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A connection to one trust node.
#[derive(Clone)]
pub struct NodeClient {
    url: String,
    inner: FlightServiceClient<Channel>,
    /// Sent as the `authorization` header with every request, when set.
    credentials: Option<Credentials>,
}

impl NodeClient {
    /// Connects to `url` (`https://…` with `tls`, or `http://…` without).
    pub async fn connect(url: &str, tls: Option<&ClientTls>) -> Result<NodeClient, ClientError> {
        let endpoint = endpoint(url, tls)?;
        let channel = endpoint.connect().await.map_err(|e| ClientError::Connect {
            url: url.to_string(),
            message: source_chain(&e),
        })?;
        Ok(NodeClient::over(url, channel))
    }

    /// A client whose connection opens on first use; connection failures surface per request.
    pub fn lazy(url: &str, tls: Option<&ClientTls>) -> Result<NodeClient, ClientError> {
        Ok(NodeClient::over(url, endpoint(url, tls)?.connect_lazy()))
    }

    fn over(url: &str, channel: Channel) -> NodeClient {
        NodeClient {
            url: url.to_string(),
            inner: FlightServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
            credentials: None,
        }
    }

    /// Sends `credentials` (a trust analyst's user and password) with every request.
    pub fn with_credentials(mut self, credentials: Option<Credentials>) -> NodeClient {
        self.credentials = credentials;
        self
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one fragment and returns the answer as it arrives (the schema comes with the first message).
    pub async fn stream(&self, request: &FragmentRequest) -> Result<FlightRecordBatchStream, ClientError> {
        let ticket = TicketStatementQuery {
            statement_handle: request.encode().into(),
        };
        let ticket = Ticket {
            ticket: ticket.as_any().encode_to_vec().into(),
        };
        let request = self.authorised(ticket)?;
        let mut client = self.inner.clone();
        let response = client.do_get(request).await.map_err(ClientError::Status)?;
        Ok(FlightRecordBatchStream::new_from_flight_data(
            response.into_inner().map_err(FlightError::from),
        ))
    }

    /// The project's privacy budget at this trust (`None`: the trust keeps none).
    pub async fn budget(&self, request: &FragmentRequest) -> Result<Option<crate::BudgetNote>, ClientError> {
        let mut results = self.action(crate::names::BUDGET_ACTION, request).await?;
        match results.message().await.map_err(ClientError::Status)? {
            None => Ok(None),
            Some(result) => crate::BudgetNote::decode(&result.body)
                .map(Some)
                .ok_or_else(|| ClientError::Decode("the trust's budget is not a budget note".into())),
        }
    }

    /// Runs Flight action `kind` (e.g. [`crate::names::RESERVE_ACTION`]) about one fragment; its
    /// results are drained and ignored (success is the answer).
    pub async fn act(&self, kind: &str, request: &FragmentRequest) -> Result<(), ClientError> {
        let mut results = self.action(kind, request).await?;
        while results.message().await.map_err(ClientError::Status)?.is_some() {}
        Ok(())
    }

    /// Starts Flight action `kind` about one fragment: the stream of its results.
    async fn action(
        &self,
        kind: &str,
        request: &FragmentRequest,
    ) -> Result<tonic::Streaming<arrow_flight::Result>, ClientError> {
        let action = Action {
            r#type: kind.to_string(),
            body: request.encode().into(),
        };
        let request = self.authorised(action)?;
        let mut client = self.inner.clone();
        Ok(client
            .do_action(request)
            .await
            .map_err(ClientError::Status)?
            .into_inner())
    }

    /// `message` with this client's credentials, which go only over TLS.
    fn authorised<T>(&self, message: T) -> Result<tonic::Request<T>, ClientError> {
        let mut request = tonic::Request::new(message);
        if let Some(credentials) = &self.credentials {
            if !self.url.starts_with("https://") {
                return Err(ClientError::Connect {
                    url: self.url.clone(),
                    message: "credentials are sent only over TLS (an https:// URL and its CA)".into(),
                });
            }
            let value = credentials
                .header()
                .parse()
                .map_err(|_| ClientError::Decode("the credentials are not a valid header value".into()))?;
            request.metadata_mut().insert(AUTHORIZATION, value);
        }
        Ok(request)
    }

    /// Sends one fragment and collects the answer.
    pub async fn query(&self, request: &FragmentRequest) -> Result<NodeAnswer, ClientError> {
        let mut stream = self.stream(request).await?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.try_next().await.map_err(ClientError::from)? {
            batches.push(batch);
        }
        let schema = stream
            .schema()
            .cloned()
            .ok_or_else(|| ClientError::Decode("the answer carried no schema".into()))?;
        Ok(NodeAnswer { schema, batches })
    }
}

/// An endpoint for `url`: TLS when `tls` is given, which needs an `https://` URL (and plaintext
/// an `http://` one, so that a link is never silently downgraded).
pub fn endpoint(url: &str, tls: Option<&ClientTls>) -> Result<Endpoint, ClientError> {
    let fail = |message: String| ClientError::Connect {
        url: url.to_string(),
        message,
    };
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| fail(e.to_string()))?
        .connect_timeout(Duration::from_secs(10));
    match (tls, url.starts_with("https://")) {
        (Some(tls), true) => endpoint.tls_config(tls.config()).map_err(|e| fail(source_chain(&e))),
        (None, false) => Ok(endpoint),
        (Some(_), false) => Err(fail("TLS is configured, so the URL must start with https://".into())),
        (None, true) => Err(fail(
            "an https:// URL needs a CA to trust (no TLS settings given)".into(),
        )),
    }
}

/// An error and its causes on one line ("transport error: connection refused").
pub fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
