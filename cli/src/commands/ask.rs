//! `tessera ask`: one SQL query straight to one node (the coordinator's fast path).

use clap::Args;
use datafusion::arrow::util::pretty::pretty_format_batches;
use tessera_protocol::client::{ClientError, NodeClient};
use tessera_protocol::{FragmentRequest, RequestContext};

use crate::exit::{runtime, Failure, Outcome};

#[derive(Args)]
pub struct AskArgs {
    /// The node's URL, e.g. http://127.0.0.1:50051.
    #[arg(long)]
    pub node: String,
    /// The SQL to send.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub sql: String,
    /// Who is asking (recorded in the node's audit log).
    #[arg(long, default_value = "tessera-cli")]
    pub requester: String,
    /// The project the question belongs to (recorded in the node's audit log).
    #[arg(long, default_value = "")]
    pub project: String,
}

pub fn run(args: AskArgs) -> Outcome {
    runtime()?.block_on(async {
        let client = NodeClient::connect(&args.node).await.map_err(Failure::connection)?;
        let request = FragmentRequest::with_context(args.sql, RequestContext::new(args.requester, args.project));
        let answer = client.query(&request).await.map_err(|e| match e {
            ClientError::Connect { .. } => Failure::connection(e),
            other => Failure::query(other),
        })?;
        let table = pretty_format_batches(&answer.batches).map_err(Failure::query)?;
        println!("{table}\n({} rows)", answer.num_rows());
        Ok(())
    })
}
