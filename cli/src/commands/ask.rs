//! `tessera ask`: one SQL query straight to one node — as a trust analyst (user name and password;
//! the answer passes the node's disclosure control) or, for the coordinator's operator, with the
//! coordinator's certificate (exact partials).

use std::path::PathBuf;

use clap::Args;
use datafusion::arrow::util::pretty::pretty_format_batches;
use tessera_protocol::client::{ClientError, NodeClient};
use tessera_protocol::credentials::Credentials;
use tessera_protocol::names::{DISCLOSURE_METADATA, PROVENANCE_METADATA};
use tessera_protocol::tls::ClientTls;
use tessera_protocol::{FragmentRequest, RequestContext};

use crate::exit::{runtime, Failure, Outcome};

/// Where `tessera ask` reads a password from, when not from standard input.
pub const PASSWORD_ENV: &str = "TESSERA_PASSWORD";

#[derive(Args)]
pub struct AskArgs {
    /// The node's URL, e.g. https://127.0.0.1:50051.
    #[arg(long)]
    pub node: String,
    /// The SQL to send.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub sql: String,
    /// The CA the node's certificate chains to (e.g. DIR/certs/ca.pem from `tessera gen`).
    #[arg(long, value_name = "FILE", env = "TESSERA_CA")]
    pub ca: Option<PathBuf>,
    /// Sign in as this analyst; the password comes from TESSERA_PASSWORD or the first line of stdin.
    #[arg(long, env = "TESSERA_USER")]
    pub user: Option<String>,
    /// Present this certificate (with --key): the coordinator operator's exact access.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

pub fn run(args: AskArgs) -> Outcome {
    let tls = match &args.ca {
        Some(ca) => {
            Some(ClientTls::load(ca, args.cert.as_deref().zip(args.key.as_deref())).map_err(Failure::connection)?)
        }
        None => None,
    };
    let credentials = match &args.user {
        Some(user) => Some(Credentials::Basic {
            user: user.clone(),
            password: password()?,
        }),
        None => None,
    };
    runtime()?.block_on(async {
        let client = NodeClient::connect(&args.node, tls.as_ref())
            .await
            .map_err(Failure::connection)?
            .with_credentials(credentials);
        let requester = std::env::var("USER").unwrap_or_else(|_| "tessera-cli".into());
        let request = FragmentRequest::with_context(args.sql, RequestContext::new(requester, ""));
        let answer = client.query(&request).await.map_err(|e| match e {
            ClientError::Connect { .. } => Failure::connection(e),
            other => Failure::query(other),
        })?;
        let table = pretty_format_batches(&answer.batches).map_err(Failure::query)?;
        println!("{table}\n({} rows)", answer.num_rows());
        let metadata = answer.schema.metadata();
        if let Some(provenance) = metadata.get(PROVENANCE_METADATA) {
            println!("{provenance}");
        }
        if let Some(disclosure) = metadata.get(DISCLOSURE_METADATA) {
            println!("disclosure control: {disclosure}");
        }
        Ok(())
    })
}

/// The password from the environment, else the first line of standard input.
fn password() -> Result<String, Failure> {
    match std::env::var(PASSWORD_ENV) {
        Ok(password) => Ok(password),
        Err(_) => crate::commands::user::read_password(),
    }
}
