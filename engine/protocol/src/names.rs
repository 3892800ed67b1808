//! Names both sides of the wire must agree on.

/// The catalog every node presents its tables under.
pub const CATALOG: &str = "tessera";

/// The schema every node presents its tables under.
pub const SCHEMA: &str = "public";

/// Request header a generic client may set to name itself in a node's audit log.
pub const REQUESTER_HEADER: &str = "x-tessera-requester";

/// Request header a generic client may set to name its project in a node's audit log.
pub const PROJECT_HEADER: &str = "x-tessera-project";

/// Request header a researcher may set to choose a question's privacy spend at each trust (a ρ
/// such as `0.1`; trusts in differential privacy mode cap it). Absent: each trust's default.
pub const PRIVACY_SPEND_HEADER: &str = "x-tessera-privacy-spend";

/// The per-record key sum a node answers only to its coordinator (the cell key method).
pub const CELL_KEY: &str = "tessera_cell_key";

/// The two largest contributions to a sum, answered only to the coordinator (dominance rules).
pub const TOP2: &str = "tessera_top2";

/// Schema metadata key of a result's disclosure line (what disclosure control did).
pub const DISCLOSURE_METADATA: &str = "tessera.disclosure";

/// Schema metadata key of a result's provenance line (which trusts answered).
pub const PROVENANCE_METADATA: &str = "tessera.provenance";

/// Field metadata key saying what disclosure control did to a column: `perturbed`, `rounded` or `exact`.
pub const STATUS_METADATA: &str = "tessera.status";

/// Schema metadata key of a node's answer: the as-at date of the trust's data (`YYYY-MM-DD`).
pub const AS_AT_METADATA: &str = "tessera.as_at";

/// Schema metadata key of a node's differentially private answer: a [`crate::PrivacyNote`] as JSON.
pub const PRIVACY_METADATA: &str = "tessera.privacy";

/// Flight action: reserve a fragment's privacy spend at a trust before any trust answers (the
/// body is the [`crate::FragmentRequest`]; nothing is read and nothing is answered).
pub const RESERVE_ACTION: &str = "tessera.privacy.reserve";

/// Flight action: give back a reservation of [`RESERVE_ACTION`] for a fragment that will not be
/// asked after all (another trust refused). A trust gives back only what it has not answered.
pub const CANCEL_ACTION: &str = "tessera.privacy.cancel";

/// Flight action: a project's privacy budget at a trust (the body is a [`crate::FragmentRequest`]
/// whose context names the project; the one result is a [`crate::BudgetNote`] as JSON, none at a
/// trust that keeps no budget).
pub const BUDGET_ACTION: &str = "tessera.privacy.budget";

/// Field metadata key: the standard deviation of the noise in every value of a column.
pub const NOISE_SD_METADATA: &str = "tessera.noise_sd";

/// Field metadata key: what one person can change a column's exact values by (the sensitivity
/// its noise is calibrated to), in the column's units.
pub const SENSITIVITY_METADATA: &str = "tessera.sensitivity";

/// Field metadata key: the noise in a released column in words, e.g. `sd 12.2 (sensitivity 10)`
/// or, for a mean, the noise of the sums it is computed from.
pub const NOISE_METADATA: &str = "tessera.noise";
