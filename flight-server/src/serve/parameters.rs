//! Parameters of a prepared statement: `?` (as ADBC and JDBC write them) or `$1`, `$2`, … (as
//! DataFusion does), bound by replacing each placeholder in the parsed statement with a literal
//! node and printing the statement again. A value is never spliced into SQL text, so a string
//! parameter is always a string: `' OR 1=1 --` is compared, not run.

use std::ops::ControlFlow;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{visit_expressions, visit_expressions_mut, Expr, Statement, Value};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Most parameters one statement may have.
pub const MAX_PARAMETERS: usize = 1000;

/// One statement, parsed.
fn parse(sql: &str) -> Result<Statement, String> {
    let mut statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| format!("syntax error: {e}"))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        n => Err(format!("a prepared statement is one SQL statement, not {n}")),
    }
}

/// The placeholders of `statement` in order of appearance.
fn placeholders_of(statement: &Statement) -> Vec<String> {
    let mut found = Vec::new();
    let _ = visit_expressions(statement, |expr| {
        if let Expr::Value(v) = expr {
            if let Value::Placeholder(p) = &v.value {
                found.push(p.clone());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Which parameter (from 0) each placeholder takes: `?` in order, `$n` by number; mixing the
/// two, or any other kind, is refused.
fn positions(placeholders: &[String]) -> Result<Vec<usize>, String> {
    let questions = placeholders.iter().filter(|p| *p == "?").count();
    if questions > 0 && questions < placeholders.len() {
        return Err("write parameters either as ? or as $1, $2, …, not both".into());
    }
    if questions > 0 {
        return Ok((0..questions).collect());
    }
    placeholders
        .iter()
        .map(|p| match p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if (1..=MAX_PARAMETERS).contains(&n) => Ok(n - 1),
            _ => Err(format!("`{p}` is not a parameter: write ? or $1, $2, …")),
        })
        .collect()
}

/// How many parameters `sql` takes.
pub fn count(sql: &str) -> Result<usize, String> {
    let statement = parse(sql)?;
    let positions = positions(&placeholders_of(&statement))?;
    Ok(positions.iter().max().map_or(0, |m| m + 1))
}

/// A parameter's value as a SQL literal expression.
fn literal(value: &ScalarValue) -> Result<Expr, String> {
    let number = |text: String| Ok(Expr::value(Value::Number(text, false)));
    let typed = |text: String| {
        Parser::new(&GenericDialect {})
            .try_with_sql(&text)
            .and_then(|mut p| p.parse_expr())
            .map_err(|e| format!("cannot bind {value}: {e}"))
    };
    if value.is_null() {
        return Ok(Expr::value(Value::Null));
    }
    match value {
        ScalarValue::Boolean(Some(b)) => Ok(Expr::value(Value::Boolean(*b))),
        ScalarValue::Int8(Some(v)) => number(v.to_string()),
        ScalarValue::Int16(Some(v)) => number(v.to_string()),
        ScalarValue::Int32(Some(v)) => number(v.to_string()),
        ScalarValue::Int64(Some(v)) => number(v.to_string()),
        ScalarValue::UInt8(Some(v)) => number(v.to_string()),
        ScalarValue::UInt16(Some(v)) => number(v.to_string()),
        ScalarValue::UInt32(Some(v)) => number(v.to_string()),
        ScalarValue::UInt64(Some(v)) => number(v.to_string()),
        ScalarValue::Float32(Some(v)) if v.is_finite() => number(format!("{v:?}")),
        ScalarValue::Float64(Some(v)) if v.is_finite() => number(format!("{v:?}")),
        // A backslash would be read back as an escape by the SQL parser, ending the value early.
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s))
            if s.contains('\\') =>
        {
            Err("a text parameter holds a backslash (\\), which a question may not contain".into())
        }
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Ok(Expr::value(Value::SingleQuotedString(s.clone())))
        }
        // Rendered from the typed value: digits, dashes and colons only.
        ScalarValue::Date32(Some(_)) | ScalarValue::Date64(Some(_)) => typed(format!("DATE '{value}'")),
        ScalarValue::TimestampSecond(Some(_), None)
        | ScalarValue::TimestampMillisecond(Some(_), None)
        | ScalarValue::TimestampMicrosecond(Some(_), None)
        | ScalarValue::TimestampNanosecond(Some(_), None) => typed(format!("TIMESTAMP '{value}'")),
        other => Err(format!(
            "a parameter of type {} cannot be bound (use a number, text, a boolean, a date or a timestamp)",
            other.data_type()
        )),
    }
}

/// The values of a parameter batch: exactly one row.
pub fn values_of(batches: &[RecordBatch]) -> Result<Vec<ScalarValue>, String> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(format!(
            "bind one row of parameters, not {rows} (run the statement once per row)"
        ));
    }
    let batch = batches.iter().find(|b| b.num_rows() == 1).ok_or("no parameters")?;
    if batch.num_columns() > MAX_PARAMETERS {
        return Err(format!("at most {MAX_PARAMETERS} parameters"));
    }
    batch
        .columns()
        .iter()
        .map(|column| ScalarValue::try_from_array(column, 0).map_err(|e| e.to_string()))
        .collect()
}

/// `sql` with its placeholders replaced by `values` (checked against how many it takes).
pub fn bind(sql: &str, values: &[ScalarValue]) -> Result<String, String> {
    let mut statement = parse(sql)?;
    let positions = positions(&placeholders_of(&statement))?;
    let wanted = positions.iter().max().map_or(0, |m| m + 1);
    if wanted != values.len() {
        return Err(format!(
            "the statement takes {wanted} parameters; {} were bound",
            values.len()
        ));
    }
    if wanted == 0 {
        return Ok(sql.to_string());
    }
    let literals = values.iter().map(literal).collect::<Result<Vec<_>, _>>()?;
    let mut next = positions.into_iter();
    let _ = visit_expressions_mut(&mut statement, |expr| {
        if matches!(expr, Expr::Value(v) if matches!(v.value, Value::Placeholder(_))) {
            if let Some(position) = next.next() {
                *expr = literals[position].clone();
            }
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(statement.to_string())
}
