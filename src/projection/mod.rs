//! Read models folded from the log: Moodle's `enrol` and `user_enrolments`, current course
//! completions, the recompletion history, course recompletion types and the settings.
//!
//! `state` is the pure fold (also used for rebuild, verify and "as of" queries); `tables` maps it
//! to SQL rows (`rowmap` holds the id-keyed ones); `writes` are the writer's incremental row
//! writes, merged per batch; `schema` drops and creates the tables and records their version,
//! inside the transaction of `app::audit::upgrade_projections`, which rebuilds them when
//! `PROJECTION_VERSION` changes.

pub mod queries;
pub mod rowmap;
pub mod schema;
pub mod state;
pub mod tables;
pub mod writes;

pub use state::ProjectionState;

/// Bump when a projection's definition changes: the next start drops and rebuilds them all,
/// in one transaction with the new version.
pub const PROJECTION_VERSION: i64 = 4;
