//! How a group key or a condition may use one contract column: the rules that keep every cell a
//! cell of public domains.
//!
//! | role | allowed use |
//! |---|---|
//! | dimension | anything (its domain is public; a function of it is a coarser domain) |
//! | date | `date_trunc`/`date_part` to its grain or coarser; comparisons with the first day of a period (`>=`, `<`) or its last day (`<=`, `>`) |
//! | measure | comparisons with its declared band edges only (whole numbers `<= e`/`> e`, amounts `< e`/`>= e`) |
//! | identifier | never |

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, Operator};
use tessera_schemas::{Grain, Role};

use super::fold::{literal, number};
use super::is_comparison;
use crate::refusal::Refusal;

/// A contract column as the rules see it.
pub struct ColumnInfo<'a> {
    pub table: &'a str,
    pub column: &'a tessera_schemas::Column,
}

impl ColumnInfo<'_> {
    fn name(&self) -> &str {
        &self.column.name
    }
}

/// Checks that `expr` uses `info`'s column only as its role allows.
pub fn check_use(expr: &Expr, column: &Column, info: &ColumnInfo) -> Result<(), Refusal> {
    match info.column.role {
        Role::Dimension => Ok(()),
        Role::Identifier => Err(Refusal::new(format!(
            "column {} is an identifier and cannot be compared with a value, grouped on or used in an expression",
            info.name()
        ))),
        Role::Date => walk(expr, column, &|e| date_use(e, column, info)),
        Role::Measure => walk(expr, column, &|e| measure_use(e, column, info)),
    }
}

/// Outcome of judging one expression node.
enum Verdict {
    /// This node's use is fine; its children need no look.
    Fine,
    /// Not a use of the column by itself: look at the children.
    Descend,
}

/// Walks `expr` top-down, asking `judge` about each node; the raw column reached anywhere the
/// judge did not accept is refused by the judge itself.
fn walk(expr: &Expr, column: &Column, judge: &dyn Fn(&Expr) -> Result<Verdict, Refusal>) -> Result<(), Refusal> {
    let mut outcome = Ok(());
    let _ = expr.apply(|e| {
        if !e.column_refs().contains(column) {
            return Ok(TreeNodeRecursion::Jump);
        }
        match judge(e) {
            Ok(Verdict::Fine) => Ok(TreeNodeRecursion::Jump),
            Ok(Verdict::Descend) => Ok(TreeNodeRecursion::Continue),
            Err(refusal) => {
                outcome = Err(refusal);
                Ok(TreeNodeRecursion::Stop)
            }
        }
    });
    outcome
}

/// Whether `expr` is the column itself, possibly cast to a type that keeps every value and its
/// order (a cast to text, or to a narrower type, would draw other lines than the public ones).
fn is_bare(expr: &Expr, column: &Column) -> bool {
    match expr {
        Expr::Column(c) => c == column,
        Expr::Cast(c) => keeps_values(c.field.data_type()) && is_bare(&c.expr, column),
        Expr::TryCast(c) => keeps_values(c.field.data_type()) && is_bare(&c.expr, column),
        Expr::Alias(a) => is_bare(&a.expr, column),
        _ => false,
    }
}

/// Types every measure or date value converts to without losing its place among the others (no
/// time zone: a shifted clock would move a month's edges into the middle of a day).
pub(super) fn keeps_values(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Float64 | DataType::Int64 | DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, None)
    )
}

/// `column op literal` (flipped when written the other way round), if `expr` is a comparison of the bare column.
fn comparison<'e>(expr: &'e Expr, column: &Column) -> Option<(Operator, &'e ScalarValue)> {
    let Expr::BinaryExpr(b) = expr else { return None };
    if !is_comparison(b.op) {
        return None;
    }
    if is_bare(&b.left, column) {
        return literal(&b.right).map(|v| (b.op, v));
    }
    if is_bare(&b.right, column) {
        return literal(&b.left).and_then(|v| b.op.swap().map(|op| (op, v)));
    }
    None
}

fn date_use(expr: &Expr, column: &Column, info: &ColumnInfo) -> Result<Verdict, Refusal> {
    let grain = info.column.grain;
    let too_fine = || {
        Refusal::new(format!(
            "{} can be shown or selected by {} or coarser only: group by date_trunc('{}', {}) or extract(year FROM …), \
             and compare it with the first day of a {} (>=, <) or its last day (<=, >)",
            info.name(),
            grain.name(),
            grain.name(),
            info.name(),
            grain.name()
        ))
    };
    if let Expr::ScalarFunction(f) = expr {
        if matches!(f.func.name(), "date_trunc" | "datetrunc" | "date_part" | "datepart") {
            let unit = f.args.first().and_then(literal).and_then(|v| match v {
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
                    Grain::of_unit(s)
                }
                _ => None,
            });
            return match (unit, f.args.get(1)) {
                (Some(unit), Some(arg)) if unit >= grain && is_bare(arg, column) => Ok(Verdict::Fine),
                _ => Err(too_fine()),
            };
        }
    }
    let timestamp = matches!(info.column.data_type, DataType::Timestamp(..));
    if let Some((op, value)) = comparison(expr, column) {
        return aligned(op, value, grain, timestamp)
            .then_some(Verdict::Fine)
            .ok_or_else(too_fine);
    }
    match expr {
        Expr::Between(b) if is_bare(&b.expr, column) => {
            let (Some(low), Some(high)) = (literal(&b.low), literal(&b.high)) else {
                return Err(too_fine());
            };
            match aligned(Operator::GtEq, low, grain, timestamp) && aligned(Operator::LtEq, high, grain, timestamp) {
                true => Ok(Verdict::Fine),
                false => Err(too_fine()),
            }
        }
        Expr::InList(list) if is_bare(&list.expr, column) => {
            let all = list
                .list
                .iter()
                .all(|v| literal(v).is_some_and(|v| aligned(Operator::Eq, v, grain, timestamp)));
            all.then_some(Verdict::Fine).ok_or_else(too_fine)
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) if is_bare(inner, column) => Ok(Verdict::Fine),
        e if is_bare(e, column) => Err(too_fine()),
        _ => Ok(Verdict::Descend),
    }
}

/// Whether `column op value` selects whole periods of `grain` (`timestamp`: the column holds
/// times of day, so only `>=` and `<` a period's first midnight do).
fn aligned(op: Operator, value: &ScalarValue, grain: Grain, timestamp: bool) -> bool {
    if grain == Grain::Day && !timestamp && day_of(value).is_some() {
        return true;
    }
    let starts = |d: NaiveDate| match grain {
        Grain::Day => true,
        Grain::Month => d.day() == 1,
        Grain::Quarter => d.day() == 1 && d.month() % 3 == 1,
        Grain::Year => d.day() == 1 && d.month() == 1,
    };
    let Some((day, midnight)) = day_of(value) else {
        return false;
    };
    match op {
        Operator::GtEq | Operator::Lt => midnight && starts(day),
        // The last day of a period, for dates (a timestamp's last instant cannot be written).
        Operator::LtEq | Operator::Gt => {
            !timestamp && midnight && !is_timestamp(value) && day.succ_opt().is_some_and(starts)
        }
        _ => false,
    }
}

fn is_timestamp(value: &ScalarValue) -> bool {
    matches!(value.data_type(), DataType::Timestamp(..)) || matches!(value, ScalarValue::Utf8(Some(s)) if s.len() > 10)
}

/// The calendar day of a date or timestamp literal, and whether it is at midnight.
fn day_of(value: &ScalarValue) -> Option<(NaiveDate, bool)> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?.and_time(NaiveTime::MIN);
    let at = |t: NaiveDateTime| Some((t.date(), t.time() == NaiveTime::MIN));
    match value {
        ScalarValue::Date32(Some(days)) => at(epoch + chrono::Duration::days(*days as i64)),
        ScalarValue::Date64(Some(ms)) => at(epoch + chrono::Duration::milliseconds(*ms)),
        ScalarValue::TimestampSecond(Some(v), _) => at(epoch + chrono::Duration::seconds(*v)),
        ScalarValue::TimestampMillisecond(Some(v), _) => at(epoch + chrono::Duration::milliseconds(*v)),
        ScalarValue::TimestampMicrosecond(Some(v), _) => at(epoch + chrono::Duration::microseconds(*v)),
        ScalarValue::TimestampNanosecond(Some(v), _) => at(epoch + chrono::Duration::nanoseconds(*v)),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            let s = s.trim();
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Some((d, true));
            }
            [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S%.f",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .and_then(at)
        }
        _ => None,
    }
}

fn measure_use(expr: &Expr, column: &Column, info: &ColumnInfo) -> Result<Verdict, Refusal> {
    let edges = &info.column.bands;
    let whole = is_whole(&info.column.data_type);
    let refused = || {
        let listed = edges.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
        let how = if whole {
            "<= edge or > edge"
        } else {
            "< edge or >= edge"
        };
        Refusal::new(match edges.is_empty() {
            true => format!(
                "{} is a measure: aggregate it (sum, avg, …); it has no public bands, so it cannot be compared, grouped \
                 on or used in a condition",
                info.name()
            ),
            false => format!(
                "{} is a measure: it can be grouped on or selected only by its public bands, comparing it as {how} \
                 with an edge from {listed}",
                info.name()
            ),
        })
    };
    let is_edge = |e: f64| edges.contains(&e);
    let compares = |op: Operator, k: f64| -> bool {
        match (whole, op) {
            (true, Operator::LtEq | Operator::Gt) => is_edge(k.floor()),
            (true, Operator::Lt | Operator::GtEq) => is_edge(k.ceil() - 1.0),
            (true, Operator::Eq | Operator::NotEq) => k.fract() == 0.0 && is_edge(k) && is_edge(k - 1.0),
            (false, Operator::Lt | Operator::GtEq) => is_edge(k),
            _ => false,
        }
    };
    if let Expr::BinaryExpr(b) = expr {
        if let Some((op, value)) = comparison(expr, column) {
            let k = number(&Expr::Literal(value.clone(), None));
            return match k.is_some_and(|k| compares(op, k)) {
                true => Ok(Verdict::Fine),
                false => Err(refused()),
            };
        }
        if is_bare(&b.left, column) || is_bare(&b.right, column) {
            return Err(refused());
        }
    }
    match expr {
        Expr::Between(b) if is_bare(&b.expr, column) => {
            let ok = number(&b.low).is_some_and(|k| compares(Operator::GtEq, k))
                && number(&b.high).is_some_and(|k| compares(Operator::LtEq, k));
            ok.then_some(Verdict::Fine).ok_or_else(refused)
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) if is_bare(inner, column) => Ok(Verdict::Fine),
        e if is_bare(e, column) => Err(refused()),
        _ => Ok(Verdict::Descend),
    }
}

/// Whether values of `data_type` are whole numbers.
fn is_whole(data_type: &DataType) -> bool {
    data_type.is_integer()
}
