//! The pages, as HTML text: plain, accessible and self-contained (one stylesheet and one small
//! script, both served by the service; no fonts, images or scripts from anywhere else).

use std::fmt::Write;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Most rows an HTML table shows (the CSV has them all).
pub const MAX_TABLE_ROWS: usize = 1000;

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} – Tessera</title>
<link rel="stylesheet" href="/static/app.css">
<script src="/static/app.js" defer></script>
</head>
<body>
<header class="banner"><div class="width"><a class="brand" href="/dashboard">Tessera</a> <span class="strap">federated NHS analytics, protected by disclosure control</span></div></header>
<main id="main" class="width">
{body}
</main>
</body>
</html>
"#,
        escape(title)
    )
}

/// The sign-in page; `nonce` ties the form to this browser, `message` says why the last try failed.
pub fn sign_in(nonce: &str, message: Option<&str>) -> String {
    let error = message
        .map(|m| format!(r#"<p class="error" role="alert">{}</p>"#, escape(m)))
        .unwrap_or_default();
    let body = format!(
        r#"<h1>Sign in</h1>
{error}
<form method="post" action="/signin" class="signin">
<input type="hidden" name="csrf" value="{}">
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="hint">Use the user name and password the federation's data-access team gave you.</p>"#,
        escape(nonce)
    );
    layout("Sign in", &body)
}

/// A table of an answer's rows (at most [`MAX_TABLE_ROWS`]).
pub fn table(batches: &[RecordBatch], caption: &str) -> String {
    let mut out = String::from(r#"<table class="data">"#);
    let _ = write!(out, "<caption>{}</caption><thead><tr>", escape(caption));
    if let Some(first) = batches.first() {
        for field in first.schema().fields() {
            let _ = write!(out, r#"<th scope="col">{}</th>"#, escape(field.name()));
        }
    }
    out.push_str("</tr></thead><tbody>");
    let options = FormatOptions::default().with_null("withheld");
    let mut shown = 0;
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>();
        let Ok(formatters) = formatters else { continue };
        for row in 0..batch.num_rows() {
            if shown == MAX_TABLE_ROWS {
                break;
            }
            out.push_str("<tr>");
            for (formatter, column) in formatters.iter().zip(batch.columns()) {
                let class = if column.is_null(row) {
                    r#" class="withheld""#
                } else {
                    ""
                };
                let _ = write!(out, "<td{class}>{}</td>", escape(&formatter.value(row).to_string()));
            }
            out.push_str("</tr>");
            shown += 1;
        }
    }
    out.push_str("</tbody></table>");
    out
}

/// One chart as the page shows it.
pub struct Figure {
    pub id: String,
    pub title: String,
    pub description: String,
    /// The SVG, or why there is none (a refusal's reason).
    pub body: Result<String, String>,
    pub provenance: String,
    pub disclosure: String,
    /// The data table (HTML), when there is an answer.
    pub table: Option<String>,
    pub csv: Option<String>,
}

/// A `<figure class="chart">` with its caption: title, provenance and disclosure lines.
pub fn figure(f: &Figure) -> String {
    let mut out = String::new();
    let _ = write!(out, r#"<figure class="chart" id="{}">"#, escape(&f.id));
    match &f.body {
        Ok(svg) => out.push_str(svg),
        Err(reason) => {
            let _ = write!(out, r#"<p class="error refused" role="alert">{}</p>"#, escape(reason));
        }
    }
    let _ = write!(
        out,
        r#"<figcaption><strong class="chart-title">{}</strong>"#,
        escape(&f.title)
    );
    if !f.description.is_empty() {
        let _ = write!(out, r#" <span class="description">{}</span>"#, escape(&f.description));
    }
    if !f.provenance.is_empty() {
        let _ = write!(out, r#"<span class="provenance">{}</span>"#, escape(&f.provenance));
    }
    if !f.disclosure.is_empty() {
        let _ = write!(
            out,
            r#"<span class="disclosure">disclosure control: {}</span>"#,
            escape(&f.disclosure)
        );
    }
    out.push_str("</figcaption>");
    if let Some(table) = &f.table {
        let _ = write!(
            out,
            r#"<details class="data-table"><summary>Data table</summary>{table}</details>"#
        );
    }
    if let Some(csv) = &f.csv {
        let _ = write!(
            out,
            r#"<a class="csv" href="{}" download>Download CSV</a>"#,
            escape(csv)
        );
    }
    out.push_str("</figure>");
    out
}
