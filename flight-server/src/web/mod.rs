//! The dashboard: NHS productivity charts in the browser, on `[server] http`, for the service's
//! users. Every chart and every ad-hoc question is answered by the service's own pipeline for the
//! signed-in user in one of their projects — the same disclosure control, limits, audit and
//! release log as Flight SQL — and drawn on the server as inline SVG. Nothing is fetched from
//! another host: the page, its stylesheet and its one small script come from the service.

mod auth;
pub mod chart;
mod csv;
pub mod dashboards;
mod page;
mod peer;
mod signin;
mod view;

use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tessera_protocol::names::{DISCLOSURE_METADATA, PROVENANCE_METADATA};
use tokio::net::TcpListener;

use crate::access::Caller;
use crate::audit::Decision;
use crate::serve::{Answer, Asked, Service};
use auth::{form_token_matches, see_other, set_cookie, Session, NONCE, SESSION};
use dashboards::{parse_month, Filters};
pub use dashboards::{Dashboard, Dashboards};
use page::{escape, Figure};
use view::View;

/// What every handler shares.
#[derive(Clone)]
struct App {
    service: Arc<Service>,
    /// Whether the page is served over TLS (cookies are then `Secure`).
    secure: bool,
}

/// Serves the dashboard on `listener` (over TLS when the service has a certificate) until `shutdown`.
pub async fn serve(
    service: Arc<Service>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = service
        .tls_files
        .as_ref()
        .map(|(cert, key)| crate::listener::tls_config(cert, key, &[b"http/1.1"]))
        .transpose()
        .map_err(std::io::Error::other)?;
    let app = App {
        service,
        secure: tls.is_some(),
    };
    let router = router(app).into_make_service_with_connect_info::<peer::Peer>();
    axum::serve(crate::listener::bounded(listener, tls)?, router)
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { see_other("/dashboard") }))
        .route("/signin", get(signin::form).post(signin::sign_in))
        .route("/signout", post(signin::sign_out))
        .route("/dashboard", get(view::dashboard))
        .route("/query", post(view::ad_hoc))
        .route("/chart.csv", get(csv::chart_csv))
        .route(
            "/static/app.css",
            get(|| async { asset("text/css", include_str!("static/app.css")) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", include_str!("static/app.js")) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Html(page::layout("Not found", "<h1>Not found</h1>")),
            )
        })
        .layer(axum::middleware::map_response(protect))
        .with_state(app)
}

/// Headers on every response: no resource from anywhere else, no framing, nothing cached.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let policy = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; \
                  form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // `same-origin`, not `no-referrer`: with no referrer, browsers send `Origin: null` on our own forms.
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, kind), (CACHE_CONTROL, "max-age=3600")], body).into_response()
}

/// The signed-in browser, if it is one.
fn session(app: &App, headers: &HeaderMap) -> Option<Session> {
    let token = auth::cookie(headers, SESSION, app.secure)?;
    let caller = app.service.access.session_caller(&token).ok()?;
    Some(Session {
        caller,
        csrf: auth::form_token(&token),
        token,
    })
}

/// Why a posted form was not taken.
enum NotTaken {
    /// No live session: sign in.
    SignedOut,
    /// The form's token is wrong, or the browser says it came from another site.
    Expired,
}

impl IntoResponse for NotTaken {
    fn into_response(self) -> Response {
        match self {
            NotTaken::SignedOut => see_other("/signin"),
            NotTaken::Expired => error_page(StatusCode::BAD_REQUEST, "the form had expired; please try again"),
        }
    }
}

/// The session a form was posted in, if the form carries that session's token and the browser
/// does not say it came from another site.
fn posted(app: &App, headers: &HeaderMap, csrf: &str) -> Result<Session, NotTaken> {
    let session = session(app, headers).ok_or(NotTaken::SignedOut)?;
    match auth::cross_site(headers) || !form_token_matches(&session.token, csrf) {
        true => Err(NotTaken::Expired),
        false => Ok(session),
    }
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"<h1>Something went wrong</h1><p class="error" role="alert">{}</p><p><a href="/dashboard">Back to the dashboard</a></p>"#,
        escape(message)
    );
    (status, Html(page::layout("Error", &body))).into_response()
}

/// The dashboard's query string: which dashboard, project and filters.
/// An answer's provenance and disclosure lines.
fn lines(answer: &Answer) -> (String, String) {
    let metadata = answer.schema.metadata();
    (
        metadata.get(PROVENANCE_METADATA).cloned().unwrap_or_default(),
        metadata.get(DISCLOSURE_METADATA).cloned().unwrap_or_default(),
    )
}

/// The project a page asks in: the view's, if it is the user's, else their first.
fn project_of(app: &App, caller: &Caller, view: &View) -> Result<(String, Vec<String>), String> {
    let theirs = app.service.access.projects_of(&caller.name);
    let project = match view.project.as_deref().filter(|p| !p.is_empty()) {
        Some(p) if theirs.iter().any(|t| t == p) => p.to_string(),
        Some(p) => return Err(format!("you may not ask for project `{p}`")),
        None => theirs
            .first()
            .cloned()
            .ok_or("you have no projects yet; ask the service's operator to add one")?,
    };
    Ok((project, theirs))
}

impl Service {
    /// Audits a browser's sign-in.
    pub(crate) async fn audit_sign_in(&self, caller: &Caller, call: &str) -> Result<(), tonic::Status> {
        let context = tessera_protocol::RequestContext::new(caller.name.clone(), "");
        let record = self.record(&context, caller, call, "", Decision::Allowed, None, 0);
        self.audit.record(record).await
    }
}
