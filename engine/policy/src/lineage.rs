//! Where each output column of a plan node comes from, as far as the policy cares.

use datafusion::common::{Column, DFSchema};

use super::Refusal;

/// What a column carries, traced back to the contract columns it is computed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taint {
    /// Nothing the policy restricts.
    Plain,
    /// An identifier column passed through unchanged.
    Identifier { name: String },
    /// A sensitive measure passed through unchanged.
    SensitiveRaw { name: String },
    /// An expression computed from a sensitive measure.
    SensitiveDerived { name: String },
    /// A column the trust withholds (`denied_columns`): any reference is refused.
    Denied { table: String, name: String },
}

/// What the policy knows about a plan node's output.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// One entry per output column, in schema order.
    pub columns: Vec<Taint>,
    /// The table whose rows this node's output would expose, if it is not aggregated.
    pub exposes_rows_of: Option<String>,
}

impl NodeInfo {
    /// A node whose output carries nothing restricted and exposes no rows.
    pub fn plain(width: usize) -> NodeInfo {
        NodeInfo {
            columns: vec![Taint::Plain; width],
            exposes_rows_of: None,
        }
    }

    /// The taint of `column`, resolved against this node's `schema`.
    pub fn taint_of(&self, schema: &DFSchema, column: &Column) -> Result<&Taint, Refusal> {
        let index = schema
            .maybe_index_of_column(column)
            .ok_or_else(|| Refusal::new(format!("column {} cannot be resolved", column.flat_name())))?;
        Ok(&self.columns[index])
    }
}
