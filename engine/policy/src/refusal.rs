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

    /// The refusal for an answer with more groups than a trust allows (`max_groups`, less a
    /// secret amount per question, so the refusal does not tell an exact number of cells).
    pub fn too_many_groups(max_groups: usize) -> Refusal {
        Refusal::new(format!(
            "the answer has too many groups for this trust (max_groups, up to {max_groups}); group by fewer or \
             coarser dimensions"
        ))
    }
}
