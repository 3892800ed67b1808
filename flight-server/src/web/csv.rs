//! A chart's answer as a CSV file.

use super::*;

#[derive(Deserialize)]
pub(super) struct CsvQuery {
    #[serde(flatten)]
    view: View,
    chart: usize,
}

pub(super) async fn chart_csv(State(app): State<App>, headers: HeaderMap, Query(query): Query<CsvQuery>) -> Response {
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
        .answer(&session.caller, &Asked::project(&project), &sql, "Dashboard CSV")
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
    let header = |text: String| HeaderValue::from_str(&ascii(&text)).unwrap_or_else(|_| HeaderValue::from_static(""));
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

/// `text` in the ASCII a header carries reliably (`±` as `+/-`; other marks as `?`).
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '±' => "+/-".to_string(),
            '–' | '—' => "-".to_string(),
            '…' => "...".to_string(),
            '≤' => "<=".to_string(),
            '≥' => ">=".to_string(),
            '£' => "GBP ".to_string(),
            c if c.is_ascii() && !c.is_ascii_control() => c.to_string(),
            _ => "?".to_string(),
        })
        .collect()
}
