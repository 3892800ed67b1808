//! The dashboard: NHS productivity charts in the browser, on `[server] http`, for the service's
//! users. Every chart and every ad-hoc question is answered by the service's own pipeline for the
//! signed-in user in one of their projects — the same disclosure control, limits, audit and
//! release log as Flight SQL — and drawn on the server as inline SVG. Nothing is fetched from
//! another host: the page, its stylesheet and its one small script come from the service.

mod auth;
mod chart;
pub mod dashboards;
mod page;
mod tls;

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
use crate::serve::{Answer, Service};
use auth::{form_token_matches, see_other, set_cookie, Session, NONCE, SESSION};
use dashboards::{parse_month, Filters};
pub use dashboards::{Dashboard, Dashboards};
use page::{escape, Figure};

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
        .map(|(cert, key)| tls::config(cert, key))
        .transpose()
        .map_err(std::io::Error::other)?;
    let app = App {
        service,
        secure: tls.is_some(),
    };
    let router = router(app).into_make_service_with_connect_info::<tls::Peer>();
    match tls {
        Some(config) => {
            axum::serve(tls::TlsListener::new(listener, config)?, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await,
    }
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { see_other("/dashboard") }))
        .route("/signin", get(sign_in_form).post(sign_in))
        .route("/signout", post(sign_out))
        .route("/dashboard", get(dashboard))
        .route("/query", post(ad_hoc))
        .route("/chart.csv", get(chart_csv))
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
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
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
    let token = auth::cookie(headers, SESSION)?;
    let caller = app.service.access.session_caller(&token).ok()?;
    Some(Session {
        caller,
        csrf: auth::form_token(&token),
        token,
    })
}

async fn sign_in_form(State(app): State<App>, headers: HeaderMap) -> Response {
    if session(&app, &headers).is_some() {
        return see_other("/dashboard");
    }
    auth::sign_in_page(app.secure, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn sign_in(
    State(app): State<App>,
    ConnectInfo(tls::Peer(from)): ConnectInfo<tls::Peer>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let nonce = auth::cookie(&headers, NONCE);
    if !nonce.is_some_and(|n| form_token_matches(&n, &form.csrf)) {
        let message = "the sign-in form had expired; please sign in again";
        return auth::sign_in_page(app.secure, Some(message), StatusCode::BAD_REQUEST);
    }
    let service = &app.service;
    match service
        .access
        .sign_in_with_password(&form.username, form.password, Some(from))
        .await
    {
        Ok((caller, token)) => {
            if let Err(status) = service.audit_sign_in(&caller, "SignIn (web)").await {
                return error_page(StatusCode::SERVICE_UNAVAILABLE, status.message());
            }
            let mut response = see_other("/dashboard");
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie(SESSION, &token, app.secure, 3600));
            headers.append(SET_COOKIE, set_cookie(NONCE, "", app.secure, 0));
            response
        }
        Err(who) => {
            let status = service.refuse_unrecognised("SignIn (web)", &who, Some(from)).await;
            auth::sign_in_page(app.secure, Some(status.message()), StatusCode::UNAUTHORIZED)
        }
    }
}

#[derive(Deserialize)]
struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(State(app): State<App>, headers: HeaderMap, Form(form): Form<SignOutForm>) -> Response {
    let Some(session) = session(&app, &headers) else {
        return see_other("/signin");
    };
    if !form_token_matches(&session.token, &form.csrf) {
        return error_page(StatusCode::BAD_REQUEST, "the form had expired; please try again");
    }
    app.service.access.end_session(&session.token);
    let mut response = see_other("/signin");
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION, "", app.secure, 0));
    response
}

fn error_page(status: StatusCode, message: &str) -> Response {
    let body = format!(
        r#"<h1>Something went wrong</h1><p class="error" role="alert">{}</p><p><a href="/dashboard">Back to the dashboard</a></p>"#,
        escape(message)
    );
    (status, Html(page::layout("Error", &body))).into_response()
}

/// The dashboard's query string: which dashboard, project and filters.
#[derive(Deserialize, Default, Clone)]
struct View {
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    trust: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

impl View {
    /// The filters, when they are valid: a trust of the federation and whole months.
    fn filters(&self, trusts: &[String]) -> Result<Filters, String> {
        let trust = self.trust.as_deref().map(str::trim).filter(|t| !t.is_empty());
        if let Some(t) = trust {
            if !trusts.iter().any(|known| known == t) {
                return Err(format!("`{t}` is not a trust of this federation"));
            }
        }
        let month = |text: &Option<String>, what: &str| match text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => parse_month(t)
                .map(Some)
                .ok_or_else(|| format!("{what}: `{t}` is not a month (YYYY-MM)")),
        };
        let from = month(&self.from, "from")?;
        let until = month(&self.to, "to")?.map(dashboards::next_month);
        if let (Some(from), Some(until)) = (from, until) {
            if from >= until {
                return Err("the period ends before it starts".into());
            }
        }
        Ok(Filters {
            trust: trust.map(str::to_string),
            from,
            until,
        })
    }

    /// The query string of this view (for links that keep it).
    fn query_string(&self) -> String {
        let pairs = [
            ("d", &self.d),
            ("project", &self.project),
            ("trust", &self.trust),
            ("from", &self.from),
            ("to", &self.to),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref()
                    .filter(|v| !v.is_empty())
                    .map(|v| format!("{k}={}", url_encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
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

async fn dashboard(State(app): State<App>, headers: HeaderMap, Query(view): Query<View>) -> Response {
    match session(&app, &headers) {
        Some(session) => render(&app, &session, &view, None).await,
        None => see_other("/signin"),
    }
}

#[derive(Deserialize)]
struct AdHocForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sql: String,
    #[serde(flatten)]
    view: View,
}

async fn ad_hoc(State(app): State<App>, headers: HeaderMap, Form(form): Form<AdHocForm>) -> Response {
    let Some(session) = session(&app, &headers) else {
        return see_other("/signin");
    };
    if !form_token_matches(&session.token, &form.csrf) {
        return error_page(StatusCode::BAD_REQUEST, "the form had expired; please try again");
    }
    render(&app, &session, &form.view, Some(form.sql)).await
}

/// An answer's provenance and disclosure lines.
fn lines(answer: &Answer) -> (String, String) {
    let metadata = answer.schema.metadata();
    (
        metadata.get(PROVENANCE_METADATA).cloned().unwrap_or_default(),
        metadata.get(DISCLOSURE_METADATA).cloned().unwrap_or_default(),
    )
}

/// One chart of a dashboard, asked and drawn.
async fn chart_figure(
    app: &App,
    caller: &Caller,
    project: &str,
    spec: &dashboards::ChartSpec,
    id: String,
    filters: &Filters,
    csv: String,
) -> Figure {
    let mut figure = Figure {
        id,
        title: spec.title.clone(),
        description: spec.description.clone(),
        body: Err(String::new()),
        provenance: String::new(),
        disclosure: String::new(),
        table: None,
        csv: None,
    };
    let sql = match dashboards::expand(&spec.sql, filters) {
        Ok(sql) => sql,
        Err(e) => {
            figure.body = Err(e);
            return figure;
        }
    };
    match app.service.answer(caller, project, &sql, "Dashboard").await {
        Ok(answer) => {
            (figure.provenance, figure.disclosure) = lines(&answer);
            let y_label = spec.y_label.clone().unwrap_or_else(|| spec.y.clone());
            figure.body = chart::Plot::of(&answer.batches, &spec.x, &spec.y, spec.series.as_deref())
                .map(|plot| chart::svg(&plot, spec.kind, &figure.id, &spec.title, &y_label));
            figure.table = Some(page::table(&answer.batches, &spec.title));
            figure.csv = Some(csv);
        }
        Err(status) => figure.body = Err(status.message().to_string()),
    }
    figure
}

/// An ad-hoc question, asked and shown as a table and an automatic chart.
async fn ad_hoc_figure(app: &App, caller: &Caller, project: &str, sql: &str) -> String {
    let sql = sql.trim();
    let mut out = format!(
        r#"<section class="ad-hoc-result" aria-live="polite"><h2>Your question</h2><pre class="sql">{}</pre>"#,
        escape(sql)
    );
    match app.service.answer(caller, project, sql, "Dashboard (ad hoc)").await {
        Ok(answer) => {
            let (provenance, disclosure) = lines(&answer);
            let body = match chart::automatic(&answer.batches) {
                Some((kind, x, y)) => chart::Plot::of(&answer.batches, &x, &y, None)
                    .map(|plot| chart::svg(&plot, kind, "ad-hoc", "Your question", &y)),
                None => Err("no chart: the answer needs a category and a number column".into()),
            };
            out.push_str(&page::figure(&Figure {
                id: "ad-hoc".into(),
                title: "Your question".into(),
                description: String::new(),
                body,
                provenance,
                disclosure,
                table: None,
                csv: None,
            }));
            out.push_str(&page::table(&answer.batches, "Your question's answer"));
        }
        Err(status) => {
            let _ = std::fmt::Write::write_fmt(
                &mut out,
                format_args!(
                    r#"<p class="error refused" role="alert">{}</p>"#,
                    escape(status.message())
                ),
            );
        }
    }
    out.push_str("</section>");
    out
}

async fn render(app: &App, session: &Session, view: &View, sql: Option<String>) -> Response {
    let caller = &session.caller;
    let (project, projects) = match project_of(app, caller, view) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::FORBIDDEN, &e),
    };
    let Some(dashboard) = app.service.dashboards.get(view.d.as_deref()) else {
        return error_page(StatusCode::NOT_FOUND, "there is no such dashboard");
    };
    let trusts = app.service.trusts();
    let (filters, filter_error) = match view.filters(&trusts) {
        Ok(f) => (f, None),
        Err(e) => (Filters::default(), Some(e)),
    };
    let mut body = String::new();
    body.push_str(&page_header(
        session,
        dashboard,
        &project,
        &projects,
        app,
        view,
        &trusts,
        filter_error.as_deref(),
    ));
    if let Some(sql) = sql.as_deref().filter(|s| !s.trim().is_empty()) {
        body.push_str(&ad_hoc_figure(app, caller, &project, sql).await);
    }
    body.push_str(r#"<div class="charts">"#);
    let mut view_with = view.clone();
    view_with.project = Some(project.clone());
    view_with.d = Some(dashboard.name.clone());
    for (i, spec) in dashboard.charts.iter().enumerate() {
        let csv = format!("/chart.csv?{}&chart={i}", view_with.query_string());
        let figure = chart_figure(app, caller, &project, spec, format!("chart-{i}"), &filters, csv).await;
        body.push_str(&page::figure(&figure));
    }
    body.push_str("</div>");
    Html(page::layout(&dashboard.title, &body)).into_response()
}

#[allow(clippy::too_many_arguments)]
fn page_header(
    session: &Session,
    dashboard: &Dashboard,
    project: &str,
    projects: &[String],
    app: &App,
    view: &View,
    trusts: &[String],
    filter_error: Option<&str>,
) -> String {
    let option = |value: &str, selected: bool| {
        format!(
            r#"<option value="{}"{}>{}</option>"#,
            escape(value),
            if selected { " selected" } else { "" },
            if value.is_empty() {
                "all".to_string()
            } else {
                escape(value)
            }
        )
    };
    let current_trust = view.trust.clone().unwrap_or_default();
    let trust_options: String = std::iter::once(String::new())
        .chain(trusts.iter().cloned())
        .map(|t| option(&t, t == current_trust))
        .collect();
    let project_options: String = projects.iter().map(|p| option(p, p == project)).collect();
    let dashboard_options: String = app
        .service
        .dashboards
        .list
        .iter()
        .map(|d| {
            format!(
                r#"<option value="{}"{}>{}</option>"#,
                escape(&d.name),
                if d.name == dashboard.name { " selected" } else { "" },
                escape(&d.title)
            )
        })
        .collect();
    let error = filter_error
        .map(|e| format!(r#"<p class="error" role="alert">Filters ignored: {}</p>"#, escape(e)))
        .unwrap_or_default();
    let hidden = |name: &str, value: &Option<String>| {
        format!(
            r#"<input type="hidden" name="{name}" value="{}">"#,
            escape(value.as_deref().unwrap_or_default())
        )
    };
    format!(
        r#"<div class="who"><span>Signed in as <strong class="user">{user}</strong>, project <strong class="project">{project}</strong></span>
<form method="post" action="/signout" class="inline"><input type="hidden" name="csrf" value="{csrf}"><button type="submit" class="link">Sign out</button></form></div>
<h1>{title}</h1>
<p class="lede">{description}</p>
<form method="get" action="/dashboard" class="filters">
<label>Dashboard <select name="d">{dashboard_options}</select></label>
<label>Project <select name="project">{project_options}</select></label>
<label>Trust <select name="trust">{trust_options}</select></label>
<label>From <input type="month" name="from" value="{from}" placeholder="YYYY-MM"></label>
<label>To <input type="month" name="to" value="{to}" placeholder="YYYY-MM"></label>
<button type="submit">Apply</button>
</form>
{error}
<form method="post" action="/query" class="ad-hoc">
<input type="hidden" name="csrf" value="{csrf}">{d}{p}{t}{f}{to_hidden}
<label for="sql">Ask your own question (SQL; Ctrl+Enter runs it)</label>
<textarea id="sql" name="sql" rows="4" spellcheck="false" placeholder="SELECT age_band, count(*) AS admissions FROM apc_episodes GROUP BY age_band"></textarea>
<button type="submit">Run</button>
</form>"#,
        user = escape(&session.caller.name),
        project = escape(project),
        csrf = escape(&session.csrf),
        title = escape(&dashboard.title),
        description = escape(&dashboard.description),
        from = escape(view.from.as_deref().unwrap_or_default()),
        to = escape(view.to.as_deref().unwrap_or_default()),
        d = hidden("d", &Some(dashboard.name.clone())),
        p = hidden("project", &Some(project.to_string())),
        t = hidden("trust", &view.trust),
        f = hidden("from", &view.from),
        to_hidden = hidden("to", &view.to),
    )
}

#[derive(Deserialize)]
struct CsvQuery {
    #[serde(flatten)]
    view: View,
    chart: usize,
}

async fn chart_csv(State(app): State<App>, headers: HeaderMap, Query(query): Query<CsvQuery>) -> Response {
    let Some(session) = session(&app, &headers) else {
        return see_other("/signin");
    };
    let (project, _) = match project_of(&app, &session.caller, &query.view) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::FORBIDDEN, &e),
    };
    let Some(spec) = app
        .service
        .dashboards
        .get(query.view.d.as_deref())
        .and_then(|d| d.charts.get(query.chart))
    else {
        return error_page(StatusCode::NOT_FOUND, "there is no such chart");
    };
    let filters = match query.view.filters(&app.service.trusts()) {
        Ok(filters) => filters,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let sql = match dashboards::expand(&spec.sql, &filters) {
        Ok(sql) => sql,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let answer = match app
        .service
        .answer(&session.caller, &project, &sql, "Dashboard CSV")
        .await
    {
        Ok(answer) => answer,
        Err(status) => return error_page(StatusCode::FORBIDDEN, status.message()),
    };
    let (provenance, disclosure) = lines(&answer);
    let mut bytes = Vec::new();
    {
        let mut writer = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut bytes);
        for batch in &answer.batches {
            if let Err(e) = writer.write(batch) {
                return error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
            }
        }
    }
    let name: String = spec
        .title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let header = |text: String| HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(
        CONTENT_DISPOSITION,
        header(format!("attachment; filename=\"{name}.csv\"")),
    );
    headers.insert("x-tessera-provenance", header(provenance));
    headers.insert("x-tessera-disclosure", header(disclosure));
    response
}

impl Service {
    /// Audits a browser's sign-in.
    pub(crate) async fn audit_sign_in(&self, caller: &Caller, call: &str) -> Result<(), tonic::Status> {
        let context = tessera_protocol::RequestContext::new(caller.name.clone(), "");
        let record = self.record(&context, caller, call, "", Decision::Allowed, None, 0);
        self.audit.record(record).await
    }
}
