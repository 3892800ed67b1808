//! Why a query was not run: shared by the cell model and the node's policy.

/// Why a query was not run. `Display` gives the text sent to the client: `refused: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {reason}")]
pub struct Refusal {
    pub reason: String,
}

impl Refusal {
    pub fn new(reason: impl Into<String>) -> Refusal {
        Refusal { reason: reason.into() }
    }

    /// The refusal for an answer with more groups than `max_groups`.
    pub fn too_many_groups(max_groups: usize) -> Refusal {
        Refusal::new(format!(
            "the answer has more than {max_groups} groups (this trust's max_groups); group by fewer or coarser dimensions"
        ))
    }
}
