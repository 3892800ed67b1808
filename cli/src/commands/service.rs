//! Signing in to a `tessera serve`: the flags `tessera query` and `tessera budget` share.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use tessera_protocol::service_client::ServiceClient;
use tessera_protocol::tls::ClientTls;

use crate::exit::Failure;

/// Where the service is and who signs in to it.
#[derive(Args)]
pub struct ServiceArgs {
    /// Ask a `tessera serve` instead: https://host:port (or http:// on this machine).
    #[arg(long, value_name = "URL", env = "TESSERA_URL")]
    pub server: Option<String>,
    /// Sign in to the service as this user (the password comes from TESSERA_PASSWORD or a prompt).
    #[arg(long, env = "TESSERA_USER", requires = "server")]
    pub user: Option<String>,
    /// The CA the service's certificate chains to.
    #[arg(long, value_name = "FILE", env = "TESSERA_CA")]
    pub ca: Option<PathBuf>,
    /// Ask in this project of yours (default: your first).
    #[arg(long, env = "TESSERA_PROJECT", requires = "server")]
    pub project: Option<String>,
}

impl ServiceArgs {
    /// Signs in to the service at `url` as `--user` (else `$USER`), with the password of
    /// `TESSERA_PASSWORD` or read from standard input.
    pub async fn sign_in(&self, url: &str) -> Result<ServiceClient, Failure> {
        let user = match &self.user {
            Some(user) => user.clone(),
            None => std::env::var("USER").map_err(|_| Failure::connection("--user (or TESSERA_USER) is required"))?,
        };
        let password = match std::env::var(crate::commands::ask::PASSWORD_ENV) {
            Ok(password) => password,
            Err(_) => {
                if std::io::stdin().is_terminal() {
                    eprint!("password for {user} at {url}: ");
                }
                crate::commands::user::read_password()?
            }
        };
        let tls = match &self.ca {
            Some(ca) => Some(ClientTls::load(ca, None).map_err(Failure::connection)?),
            None => None,
        };
        ServiceClient::sign_in(url, tls.as_ref(), &user, &password, self.project.clone())
            .await
            .map_err(|e| Failure::connection(format!("cannot sign in to {url}: {e}")))
    }
}
