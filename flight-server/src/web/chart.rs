//! Charts drawn on the server as inline SVG: bars for a category × a value, lines for a series over
//! time. Each has a title and a description for screen readers; a withheld value (a NULL
//! statistic, or a cell missing from a series that others have) is drawn as a hatched mark and
//! named in its tooltip, and every drawn value says it may be perturbed.

use std::collections::BTreeMap;
use std::fmt::Write;

use datafusion::arrow::array::{Array, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::dashboards::Kind;
use super::page::escape;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 90.0;

/// Colours that stay apart for common colour-vision deficiencies (NHS blue first).
const PALETTE: [&str; 8] = [
    "#005eb8", "#ed8b00", "#009639", "#7c2855", "#41b6e6", "#ffb81c", "#425563", "#d5281b",
];

/// What a chart draws: per series, per x, the value (`None`: withheld).
#[derive(Debug, Default)]
pub struct Plot {
    pub xs: Vec<String>,
    pub series: Vec<String>,
    pub values: BTreeMap<(usize, usize), Option<f64>>,
}

/// A column's values as text.
fn texts(batch: &RecordBatch, column: usize) -> Result<Vec<String>, String> {
    let array = batch.column(column);
    let formatter = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).map_err(|e| e.to_string())?;
    Ok((0..array.len()).map(|i| formatter.value(i).to_string()).collect())
}

/// A column's values as numbers (`None` for NULL).
fn numbers(batch: &RecordBatch, column: usize) -> Result<Vec<Option<f64>>, String> {
    let array =
        cast(batch.column(column), &DataType::Float64).map_err(|e| format!("cannot draw column {column}: {e}"))?;
    let values = array
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or("not a number column")?;
    Ok((0..values.len())
        .map(|i| values.is_valid(i).then(|| values.value(i)))
        .collect())
}

fn index_of(batches: &[RecordBatch], name: &str) -> Result<usize, String> {
    let schema = batches.first().map(|b| b.schema()).ok_or("no rows")?;
    schema
        .index_of(name)
        .map_err(|_| format!("the answer has no column `{name}`"))
}

impl Plot {
    /// The values of column `y` by `x` (and by `series`, when given).
    pub fn of(batches: &[RecordBatch], x: &str, y: &str, series: Option<&str>) -> Result<Plot, String> {
        let mut plot = Plot::default();
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(plot);
        }
        let (xi, yi) = (index_of(batches, x)?, index_of(batches, y)?);
        let si = series.map(|s| index_of(batches, s)).transpose()?;
        for batch in batches.iter().filter(|b| b.num_rows() > 0) {
            let xs = texts(batch, xi)?;
            let ys = numbers(batch, yi)?;
            let ss = match si {
                Some(si) => texts(batch, si)?,
                None => vec![String::new(); batch.num_rows()],
            };
            for ((x, y), s) in xs.into_iter().zip(ys).zip(ss) {
                let xpos = position(&mut plot.xs, x);
                let spos = position(&mut plot.series, s);
                plot.values.insert((spos, xpos), y.filter(|v| v.is_finite()));
            }
        }
        Ok(plot)
    }

    /// How many values are drawn (bars or points).
    pub fn drawn(&self) -> usize {
        self.values.values().filter(|v| v.is_some()).count()
    }

    /// Withheld values: NULLs, and cells missing from a series that other series have.
    fn withheld(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for s in 0..self.series.len() {
            for x in 0..self.xs.len() {
                if !matches!(self.values.get(&(s, x)), Some(Some(_))) {
                    out.push((s, x));
                }
            }
        }
        out
    }
}

fn position(list: &mut Vec<String>, value: String) -> usize {
    match list.iter().position(|v| *v == value) {
        Some(i) => i,
        None => {
            list.push(value);
            list.len() - 1
        }
    }
}

/// Round numbers for the axis: about five steps of 1, 2 or 5 × 10ⁿ.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    let start = (lo / step).floor() * step;
    (0..=12)
        .map(|i| start + i as f64 * step)
        .take_while(|t| *t <= hi + step * 0.999)
        .collect()
}

fn number(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The chart as an `<svg>` element (`id` makes its title and description ids unique).
pub fn svg(plot: &Plot, kind: Kind, id: &str, title: &str, y_label: &str) -> String {
    let values: Vec<f64> = plot.values.values().flatten().copied().collect();
    let lo = values.iter().copied().fold(0.0, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max).max(lo + 1.0);
    let ticks = ticks(lo, hi);
    let (lo, hi) = (
        ticks.first().copied().unwrap_or(lo),
        ticks.last().copied().unwrap_or(hi),
    );
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let y_at = |v: f64| TOP + h - (v - lo) / (hi - lo).max(1e-9) * h;
    let n = plot.xs.len().max(1) as f64;
    let band = w / n;
    let desc = format!(
        "{} chart of {y_label} by {}: {} values drawn, {} withheld",
        match kind {
            Kind::Bar => "Bar",
            Kind::Line => "Line",
        },
        if plot.series.len() > 1 {
            "category and series"
        } else {
            "category"
        },
        plot.drawn(),
        plot.withheld().len()
    );
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="{id}-title {id}-desc"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(title),
        escape(&desc)
    );
    out.push_str(r##"<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#768692" stroke-width="2"/></pattern></defs>"##);
    // The value axis, its grid and its label.
    out.push_str(r#"<g class="axis y-axis">"#);
    for t in &ticks {
        let y = y_at(*t);
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#d8dde0"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + w,
            LEFT - 6.0,
            y + 4.0,
            number(*t)
        );
    }
    let _ = write!(
        out,
        r#"<text class="axis-label" transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">{}</text></g>"#,
        TOP + h / 2.0,
        escape(y_label)
    );
    // The category axis: every label when they fit, else every k-th.
    let every = (plot.xs.len() as f64 / 24.0).ceil().max(1.0) as usize;
    out.push_str(r#"<g class="axis x-axis">"#);
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#425563"/>"##,
        LEFT + w,
        TOP + h,
        TOP + h
    );
    for (i, x) in plot.xs.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let cx = LEFT + band * (i as f64 + 0.5);
        let _ = write!(
            out,
            r#"<text transform="translate({cx:.1} {:.1}) rotate(-40)" text-anchor="end">{}</text>"#,
            TOP + h + 14.0,
            escape(x)
        );
    }
    out.push_str("</g>");
    let groups = plot.series.len().max(1) as f64;
    let base = y_at(0.0f64.clamp(lo, hi));
    for (s, name) in plot.series.iter().enumerate() {
        let colour = PALETTE[s % PALETTE.len()];
        let _ = write!(out, r#"<g class="series" data-series="{}">"#, escape(name));
        let mut line = Vec::new();
        for (x, label) in plot.xs.iter().enumerate() {
            let Some(Some(v)) = plot.values.get(&(s, x)) else {
                continue;
            };
            let tip = format!(
                "{}{}: {} (may be perturbed)",
                if name.is_empty() {
                    String::new()
                } else {
                    format!("{name}, ")
                },
                label,
                number(*v)
            );
            match kind {
                Kind::Bar => {
                    let bw = band * 0.8 / groups;
                    let bx = LEFT + band * x as f64 + band * 0.1 + bw * s as f64;
                    let (top, bottom) = (y_at(*v).min(base), y_at(*v).max(base));
                    let _ = write!(
                        out,
                        r#"<rect class="bar" x="{bx:.1}" y="{top:.1}" width="{bw:.1}" height="{:.1}" fill="{colour}"><title>{}</title></rect>"#,
                        (bottom - top).max(0.5),
                        escape(&tip)
                    );
                }
                Kind::Line => {
                    let (cx, cy) = (LEFT + band * (x as f64 + 0.5), y_at(*v));
                    line.push(format!("{cx:.1},{cy:.1}"));
                    let _ = write!(
                        out,
                        r#"<circle class="point" cx="{cx:.1}" cy="{cy:.1}" r="3" fill="{colour}"><title>{}</title></circle>"#,
                        escape(&tip)
                    );
                }
            }
        }
        if kind == Kind::Line && line.len() > 1 {
            let _ = write!(
                out,
                r#"<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                line.join(" ")
            );
        }
        out.push_str("</g>");
    }
    for (s, x) in plot.withheld() {
        let bw = band * 0.8 / groups;
        let bx = LEFT + band * x as f64 + band * 0.1 + bw * s as f64;
        let name = &plot.series[s];
        let _ = write!(
            out,
            r#"<rect class="withheld" x="{bx:.1}" y="{:.1}" width="{bw:.1}" height="12" fill="url(#hatch)"><title>{}{}: withheld by disclosure control</title></rect>"#,
            TOP + h - 12.0,
            if name.is_empty() {
                String::new()
            } else {
                format!("{}, ", escape(name))
            },
            escape(&plot.xs[x])
        );
    }
    if plot.series.len() > 1 {
        out.push_str(r#"<g class="legend">"#);
        for (s, name) in plot.series.iter().enumerate() {
            let y = TOP + 10.0 + s as f64 * 18.0;
            let _ = write!(
                out,
                r#"<rect x="{}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{:.1}">{}</text>"#,
                WIDTH - RIGHT + 16.0,
                y - 10.0,
                PALETTE[s % PALETTE.len()],
                WIDTH - RIGHT + 34.0,
                y,
                escape(name)
            );
        }
        out.push_str("</g>");
    }
    if plot.xs.is_empty() {
        let _ = write!(
            out,
            r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">No values to draw: every cell was withheld or the answer was empty</text>"#,
            LEFT + w / 2.0,
            TOP + h / 2.0
        );
    }
    out.push_str("</svg>");
    out
}

/// The chart an ad-hoc answer gets: its first column along x, its last numeric column as the
/// value; lines when the first column is a date.
pub fn automatic(batches: &[RecordBatch]) -> Option<(Kind, String, String)> {
    let schema = batches.first()?.schema();
    if schema.fields().len() < 2 {
        return None;
    }
    let x = schema.field(0);
    let y = schema
        .fields()
        .iter()
        .skip(1)
        .rev()
        .find(|f| f.data_type().is_numeric())?;
    let kind = match x.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) => Kind::Line,
        _ => Kind::Bar,
    };
    Some((kind, x.name().clone(), y.name().clone()))
}
