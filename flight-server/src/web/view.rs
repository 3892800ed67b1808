//! The dashboard page: its filters, its charts asked and drawn, and an ad-hoc question.

use super::*;

#[derive(Deserialize, Default, Clone)]
pub(super) struct View {
    #[serde(default)]
    pub(super) d: Option<String>,
    #[serde(default)]
    pub(super) project: Option<String>,
    #[serde(default)]
    pub(super) trust: Option<String>,
    #[serde(default)]
    pub(super) from: Option<String>,
    #[serde(default)]
    pub(super) to: Option<String>,
}

impl View {
    /// The filters, when they are valid: a trust of the federation and whole months.
    pub(super) fn filters(&self, trusts: &[String]) -> Result<Filters, String> {
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
    pub(super) fn query_string(&self) -> String {
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

pub(super) async fn dashboard(State(app): State<App>, headers: HeaderMap, Query(view): Query<View>) -> Response {
    match session(&app, &headers) {
        Some(session) => render(&app, &session, &view, None).await,
        None => see_other("/signin"),
    }
}

#[derive(Deserialize)]
pub(super) struct AdHocForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    sql: String,
    #[serde(flatten)]
    view: View,
}

pub(super) async fn ad_hoc(State(app): State<App>, headers: HeaderMap, Form(form): Form<AdHocForm>) -> Response {
    let session = match posted(&app, &headers, &form.csrf) {
        Ok(session) => session,
        Err(not_taken) => return not_taken.into_response(),
    };
    render(&app, &session, &form.view, Some(form.sql)).await
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
    match app
        .service
        .answer(caller, &Asked::project(project), &sql, "Dashboard")
        .await
    {
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
    match app
        .service
        .answer(caller, &Asked::project(project), sql, "Dashboard (ad hoc)")
        .await
    {
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
    body.push_str(&budget_section(app, caller, &project).await);
    Html(page::layout(&dashboard.title, &body)).into_response()
}

/// What the project has spent of its privacy budget at each trust, after this page's questions.
async fn budget_section(app: &App, caller: &Caller, project: &str) -> String {
    let lines = match app
        .service
        .budget_lines(caller, &Asked::project(project), "Dashboard (budget)")
        .await
    {
        Ok(lines) => lines,
        Err(status) => return format!(r#"<p class="error budget">{}</p>"#, escape(status.message())),
    };
    let items: String = lines
        .iter()
        .map(|line| {
            format!(
                r#"<li><strong class="trust">{}</strong>: {}</li>"#,
                escape(&line.trust),
                escape(&line.summary())
            )
        })
        .collect();
    format!(
        r#"<section class="budget"><h2>Privacy budget of project {}</h2>
<p>Each trust keeps its own budget (ρ, zero-concentrated differential privacy); a new question spends from it at every trust, a question asked before costs nothing.</p>
<ul>{items}</ul></section>"#,
        escape(project)
    )
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
