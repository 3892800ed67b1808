//! Who is asking, decided by the node for every request:
//!
//! - **the federation's coordinator**: a client certificate that chains to `[tls] client_ca`
//!   (checked by TLS) and carries exactly `[access] coordinator_subject`;
//! - **a trust analyst**: a user name and password from the users file (Basic on the call, or the
//!   bearer token a handshake gave), over TLS;
//! - anyone else is refused as unauthenticated.
//!
//! The identity comes from the TLS session and the credentials, never from what a client claims.

pub mod projects;
pub mod sessions;
pub mod throttle;
pub mod users;
pub mod watched;

use std::path::PathBuf;
use std::sync::Arc;

use tessera_protocol::credentials::{Credentials, AUTHORIZATION};
use tonic::Request;

use projects::ProjectsFile;
use sessions::Sessions;
use throttle::Throttle;
use users::UsersFile;
use watched::Watched;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Exact partial aggregates, hidden support columns, contributions and cell keys.
    Coordinator,
    /// Answers passed through this node's disclosure control.
    Analyst,
}

impl Role {
    /// The role's name in the audit log.
    pub fn audit_name(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Analyst => "analyst",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    /// The certificate subject (coordinator) or user name (analyst).
    pub name: String,
}

/// A caller the node did not recognise: what it presented, and why it was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecognised {
    /// e.g. `anonymous`, `certificate CN=RTH, O=…`, `user alice`.
    pub presented: String,
    pub reason: String,
}

/// Most password checks running at once.
pub const MAX_CONCURRENT_CHECKS: usize = 4;

/// How long a sign-in waits for a password check to be free.
const WAIT_FOR_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// A new random secret (hex).
pub fn random_secret() -> String {
    tessera_protocol::credentials::generate_token()
}

/// The node's view of who may ask.
pub struct Access {
    coordinator_subject: Option<String>,
    /// This trust's analysts (none without a users file).
    users: Option<Watched<UsersFile>>,
    /// The projects the coordinator may ask for (any, without a projects file).
    projects: Option<Watched<ProjectsFile>>,
    sessions: Sessions,
    throttle: Throttle,
    /// Bounds the argon2id checks running at once (each takes 19 MiB and a core for a while).
    checking: tokio::sync::Semaphore,
}

impl Access {
    /// Access for a node that pins `coordinator_subject`, reads its analysts from `users_path`
    /// and its approved projects from `projects_path`.
    pub fn new(
        coordinator_subject: Option<String>,
        users_path: Option<PathBuf>,
        projects_path: Option<PathBuf>,
    ) -> Result<Access, String> {
        let users = users_path
            .map(|p| Watched::open(p, UsersFile::load, UsersFile::default))
            .transpose()
            .map_err(|e| format!("[access] users: {e}"))?;
        let projects = projects_path
            .map(|p| Watched::open(p, ProjectsFile::load, ProjectsFile::default))
            .transpose()
            .map_err(|e| format!("[access] projects: {e}"))?;
        Ok(Access {
            coordinator_subject: coordinator_subject.map(|s| s.trim().to_string()),
            users,
            projects,
            sessions: Sessions::default(),
            throttle: Throttle::default(),
            checking: tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS),
        })
    }

    /// The users as the file now says.
    fn users(&self) -> Arc<UsersFile> {
        self.users.as_ref().map(Watched::get).unwrap_or_default()
    }

    /// The projects `user` may ask for, their default first (a service's users).
    pub fn projects_of(&self, user: &str) -> Vec<String> {
        self.users()
            .users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.projects.clone())
            .unwrap_or_default()
    }

    /// Whether the coordinator may ask for `project` (every project, without a projects file).
    pub fn approves(&self, project: &str) -> bool {
        self.projects.as_ref().is_none_or(|p| p.get().approves(project))
    }

    /// Who sent `request`: the coordinator by its certificate, else an analyst by credentials.
    pub async fn identify<T>(&self, request: &Request<T>) -> Result<Caller, Unrecognised> {
        let subject = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(|c| tessera_protocol::tls::subject_of(c)));
        if let (Some(subject), Some(pinned)) = (&subject, &self.coordinator_subject) {
            if subject == pinned {
                return Ok(Caller {
                    role: Role::Coordinator,
                    name: subject.clone(),
                });
            }
        }
        let header = request.metadata().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        match header.map(Credentials::parse) {
            Some(Some(Credentials::Basic { user, password })) => {
                self.sign_in(&user, password, request.remote_addr()).await
            }
            Some(Some(Credentials::Bearer(token))) => self.session_caller(&token),
            Some(None) => Err(Unrecognised {
                presented: "a malformed authorization header".into(),
                reason: "credentials must be Basic (user and password) or a Bearer token".into(),
            }),
            None => Err(Unrecognised {
                presented: subject.map_or("anonymous".into(), |s| format!("certificate {s}")),
                reason: "no credentials: sign in with a user name and password, or connect as the federation's \
                         coordinator"
                    .into(),
            }),
        }
    }

    /// The user whose live session `token` is (a bearer token, or a browser's session cookie).
    pub fn session_caller(&self, token: &str) -> Result<Caller, Unrecognised> {
        match self.sessions.user(token) {
            Some((user, hash)) if self.users().hash_of(&user) == Some(hash.as_str()) => Ok(Caller {
                role: Role::Analyst,
                name: user,
            }),
            Some((user, _)) => Err(Unrecognised {
                presented: format!("user {user}"),
                reason: "the session ended: the user was removed or has a new password; sign in again".into(),
            }),
            None => Err(Unrecognised {
                presented: "a session token".into(),
                reason: "the session is unknown or has expired; sign in again".into(),
            }),
        }
    }

    /// Checks `user`'s `password` (throttled as every sign-in) and opens a session for them:
    /// the caller and the session's token. For sign-in forms.
    pub async fn sign_in_with_password(
        &self,
        user: &str,
        password: String,
        from: Option<std::net::SocketAddr>,
    ) -> Result<(Caller, String), Unrecognised> {
        let caller = self.sign_in(user, password, from).await?;
        let users = self.users();
        let hash = users.hash_of(&caller.name).ok_or_else(|| Unrecognised {
            presented: format!("user {}", bounded(user)),
            reason: "wrong user name or password".into(),
        })?;
        let token = self.sessions.open(&caller.name, hash);
        Ok((caller, token))
    }

    /// Ends the session of `token` (signing out).
    pub fn end_session(&self, token: &str) {
        self.sessions.close(token);
    }

    /// Checks a user's password: throttled per user, per address and per both, at most
    /// [`MAX_CONCURRENT_CHECKS`] argon2id checks at once.
    async fn sign_in(
        &self,
        user: &str,
        password: String,
        from: Option<std::net::SocketAddr>,
    ) -> Result<Caller, Unrecognised> {
        let presented = format!("user {}", bounded(user));
        let wrong = || Unrecognised {
            presented: presented.clone(),
            reason: "wrong user name or password".into(),
        };
        if users::check_name(user).is_err() {
            return Err(wrong());
        }
        let address = throttle::address_key(from);
        let keys = [
            (format!("user:{user}@{address}"), 5),
            (format!("user:{user}"), 20),
            (format!("addr:{address}"), 20),
        ];
        if let Err(wait) = self.throttle.begin(&keys) {
            return Err(Unrecognised {
                presented,
                reason: format!("too many failed sign-ins; try again in {} s", wait.as_secs().max(1)),
            });
        }
        // Wait in line for a check rather than fail at once, so that a burst of wrong guesses
        // elsewhere delays a sign-in instead of refusing it.
        let Ok(Ok(_permit)) = tokio::time::timeout(WAIT_FOR_CHECK, self.checking.acquire()).await else {
            self.throttle.succeeded(&keys);
            return Err(Unrecognised {
                presented,
                reason: "too many sign-ins at once; try again shortly".into(),
            });
        };
        let users = self.users();
        let name = user.to_string();
        let verified = tokio::task::spawn_blocking(move || users.verify(&name, &password).is_some())
            .await
            .unwrap_or(false);
        if !verified {
            return Err(wrong());
        }
        self.throttle.succeeded(&keys);
        Ok(Caller {
            role: Role::Analyst,
            name: user.to_string(),
        })
    }

    /// Whether a request from `from` that the node did not recognise is audited: while an
    /// address keeps sending them, most are turned away unaudited (`None`), and the next audited
    /// one says how many (`Some(turned away since)`).
    pub fn audit_unrecognised(&self, from: Option<std::net::SocketAddr>) -> Option<u64> {
        let key = [(format!("unrecognised:{}", throttle::address_key(from)), 20)];
        self.throttle
            .begin(&key)
            .ok()
            .map(|()| self.throttle.take_turned_away(&key[0].0))
    }

    /// A session token for an analyst who just signed in with a password (not for a session
    /// token renewing itself, which would let a stolen token live for ever).
    pub fn open_session<T>(&self, caller: &Caller, request: &Request<T>) -> Option<String> {
        let header = request.metadata().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let by_password = matches!(header.map(Credentials::parse), Some(Some(Credentials::Basic { .. })));
        let users = self.users();
        let hash = users.hash_of(&caller.name)?;
        (caller.role == Role::Analyst && by_password).then(|| self.sessions.open(&caller.name, hash))
    }
}

/// A client-supplied name cut to what an audit line keeps.
fn bounded(text: &str) -> String {
    text.chars().take(tessera_protocol::context::MAX_FIELD_CHARS).collect()
}
