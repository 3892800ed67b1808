//! Dashboards as files: a title, a description and charts, each a SQL question with a chart kind
//! and the columns it draws. `{trust:COLUMN}` and `{period:COLUMN}` in a chart's SQL are where the
//! page's filters go: each becomes a condition on that column, or `TRUE` when the filter is not
//! set. Filter values come from fixed forms — a trust of the federation, a month — and are written
//! as literals, never pasted from what the browser sent.
//!
//! ```toml
//! title = "Emergency care"
//! description = "…"
//!
//! [[charts]]
//! title = "Attendances per trust and month"
//! kind = "line"                 # or "bar"
//! x = "month"                   # the column along the x axis
//! y = "attendances"             # the value drawn
//! series = "trust"              # optional: one line (or bar colour) per value of this column
//! y_label = "attendances"       # optional
//! sql = "SELECT provider_code AS trust, CAST(date_trunc('month', arrival_time) AS DATE) AS month, count(*) AS attendances FROM ec_attendances WHERE {trust:provider_code} AND {period:arrival_time} GROUP BY 1, 2"
//! ```

use std::path::Path;

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;

/// The built-in NHS productivity dashboard.
const DEFAULT: &str = include_str!("default_dashboard.toml");

/// The name of the built-in dashboard.
pub const DEFAULT_NAME: &str = "nhs-productivity";

/// How a chart draws its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Bars: a category × a value.
    Bar,
    /// Lines: a series over time.
    Line,
}

/// One chart of a dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartSpec {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub kind: Kind,
    pub sql: String,
    pub x: String,
    pub y: String,
    #[serde(default)]
    pub series: Option<String>,
    #[serde(default)]
    pub y_label: Option<String>,
}

/// A dashboard file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dashboard {
    #[serde(skip)]
    pub name: String,
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub charts: Vec<ChartSpec>,
}

/// The page's filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// A trust of the federation.
    pub trust: Option<String>,
    /// The first day of the first month.
    pub from: Option<NaiveDate>,
    /// The first day of the first month after the period.
    pub until: Option<NaiveDate>,
}

/// Reads `YYYY-MM` as the first day of that month.
pub fn parse_month(text: &str) -> Option<NaiveDate> {
    let (year, month) = text.trim().split_once('-')?;
    NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, 1).filter(|d| (1900..=2200).contains(&d.year()))
}

/// The first day of the month after `date`.
pub fn next_month(date: NaiveDate) -> NaiveDate {
    date.checked_add_months(chrono::Months::new(1)).unwrap_or(date)
}

/// Whether `column` is a column reference (`name` or `alias.name`).
fn is_column(column: &str) -> bool {
    !column.is_empty()
        && column.split('.').count() <= 2
        && column
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// `sql` with its filter markers replaced by conditions for `filters`.
pub fn expand(sql: &str, filters: &Filters) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or("a `{` without its `}`: write filters as {trust:COLUMN} or {period:COLUMN}")?;
        let marker = &rest[start + 1..end];
        let (kind, column) = marker.split_once(':').unwrap_or((marker, ""));
        if !is_column(column) {
            return Err(format!(
                "{{{marker}}}: write filters as {{trust:COLUMN}} or {{period:COLUMN}}"
            ));
        }
        let condition = match kind {
            "trust" => match &filters.trust {
                Some(trust) if trust.chars().all(|c| c.is_ascii_alphanumeric()) => format!("{column} = '{trust}'"),
                Some(trust) => return Err(format!("`{trust}` is not a trust code")),
                None => "TRUE".to_string(),
            },
            "period" => match (filters.from, filters.until) {
                (Some(from), Some(until)) => format!("{column} >= DATE '{from}' AND {column} < DATE '{until}'"),
                (Some(from), None) => format!("{column} >= DATE '{from}'"),
                (None, Some(until)) => format!("{column} < DATE '{until}'"),
                (None, None) => "TRUE".to_string(),
            },
            other => return Err(format!("{{{other}:…}} is not a filter: use trust or period")),
        };
        out.push_str(&format!("({condition})"));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The dashboards a service shows: the built-in one first.
#[derive(Debug, Clone)]
pub struct Dashboards {
    pub list: Vec<Dashboard>,
}

fn parse(name: &str, text: &str) -> Result<Dashboard, String> {
    let mut dashboard: Dashboard = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
    dashboard.name = name.to_string();
    if dashboard.charts.is_empty() {
        return Err(format!("{name}: a dashboard has at least one [[charts]]"));
    }
    for chart in &dashboard.charts {
        expand(&chart.sql, &Filters::default()).map_err(|e| format!("{name}: chart `{}`: {e}", chart.title))?;
    }
    Ok(dashboard)
}

impl Dashboards {
    /// The built-in dashboard, and every `*.toml` in `folder` (named by its file name).
    pub fn load(folder: Option<&Path>) -> Result<Dashboards, String> {
        let mut list = vec![parse(DEFAULT_NAME, DEFAULT)?];
        if let Some(folder) = folder {
            let entries = std::fs::read_dir(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
            let mut files = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect::<Vec<_>>();
            files.sort();
            for file in files {
                let name = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let dashboard = parse(&name, &text).map_err(|e| format!("{}: {e}", folder.display()))?;
                if list.iter().any(|d| d.name == name) {
                    return Err(format!("{}: a second dashboard named {name}", file.display()));
                }
                list.push(dashboard);
            }
        }
        Ok(Dashboards { list })
    }

    /// The dashboard called `name` (the built-in one when `None`).
    pub fn get(&self, name: Option<&str>) -> Option<&Dashboard> {
        match name {
            None | Some("") => self.list.first(),
            Some(name) => self.list.iter().find(|d| d.name == name),
        }
    }
}
