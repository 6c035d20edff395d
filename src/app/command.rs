//! What the shell asks the ledger to do, what it answers, and how it can fail.

use crate::domain::completion::GradeInput;
use crate::domain::DomainError;
pub use crate::registry::rules::RegistryError;
use crate::registry::{NewCourse, NewUser};

/// One write request. Every state change of the ledger is one of these.
#[derive(Debug, Clone)]
pub enum Request {
    Enrol {
        user_id: i64,
        course_id: i64,
        booking_id: String,
        timestart: i64,
        timeend: i64,
        suspend: bool,
        require_recompletion: bool,
    },
    Unenrol {
        enrolid: i64,
    },
    Edit {
        enrolid: i64,
        booking_id: Option<String>,
        timestart: Option<i64>,
        timeend: Option<i64>,
        suspend: Option<bool>,
    },
    ResetCompletion {
        enrolid: i64,
    },
    RecordCompletion {
        user_id: i64,
        course_id: i64,
        timecompleted: i64,
        grade: GradeInput,
    },
    SetRecompletion {
        course_id: i64,
        recompletion_type: String,
    },
    SetConfig {
        name: String,
        value: String,
    },
    /// All or nothing, like `core_user_create_users`.
    CreateUsers(Vec<UserInput>),
    /// Per user, like `core_user_update_users`: a refused user becomes a warning.
    UpdateUsers(Vec<crate::registry::UserUpdate>),
    /// All or nothing, like `core_user_delete_users`.
    DeleteUsers(Vec<i64>),
    CreateCourses(Vec<NewCourse>),
    /// Per course, like `core_course_update_courses`: a refused course becomes a warning.
    UpdateCourses(Vec<crate::registry::CourseUpdate>),
    CleanupOrphans,
    /// Appends queued token changes (the token outbox, in id order) as token events and deletes
    /// their outbox rows in the same transaction.
    AppendTokenEvents(Vec<crate::app::token_events::OutboxRow>),
    /// Appends queued web account changes (`account_outbox`, in id order) as account events and
    /// deletes their outbox rows in the same transaction (src/web/accounts.rs).
    AppendAccountEvents(Vec<crate::web::accounts::OutboxRow>),
    /// `enrol_manual_enrol_users`: all or nothing, each item seeing the ones before it.
    ManualEnrol(Vec<ManualEnrolItem>),
    /// `enrol_manual_unenrol_users`: all or nothing.
    ManualUnenrol(Vec<ManualUnenrolItem>),
    /// `ledger_set_course_completion_criteria`: `gradepass` absent or 0 removes the criterion.
    SetCompletionCriteria {
        course_id: i64,
        gradepass: Option<f64>,
    },
    /// Gives every course of the registry that lacks one its manual instance (at start-up, for
    /// logs written before manual instances existed).
    EnsureManualInstances,
    /// A manager mutes one health check (`app::health`), with a reason.
    MuteCheck {
        check: String,
        reason: String,
        by: crate::domain::event::ChangedBy,
    },
    /// A manager unmutes one health check.
    UnmuteCheck {
        check: String,
        by: crate::domain::event::ChangedBy,
    },
    /// Undo an unenrolment by mistake (`ledger_reinstate_enrolment`, `enrol-ledger undo`): the
    /// enrolment as it was before the `Unenrolled` event at `undoes` (read from its stream by
    /// the shell, `domain::undo::unenrolled_enrolment`), enrolled again under today's rules.
    ReinstateEnrolment {
        undoes: i64,
        enrolment: crate::domain::enrolment::LiveEnrolment,
        reason: Option<String>,
    },
    /// Undo a completion reset (`ledger_restore_completion`, `enrol-ledger undo`): `reset` is
    /// the `CompletionReset` event at `undoes`, read from the log by the shell.
    RestoreCompletion {
        undoes: i64,
        reset: crate::domain::event::CompletionEvent,
        reason: Option<String>,
    },
}

/// One `enrolments[]` item of `enrol_manual_enrol_users`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualEnrolItem {
    pub role_id: i64,
    pub user_id: i64,
    pub course_id: i64,
    pub timestart: Option<i64>,
    pub timeend: Option<i64>,
    pub suspend: Option<i64>,
}

/// One `enrolments[]` item of `enrol_manual_unenrol_users` (`roleid` is accepted and ignored,
/// as Moodle's unenrol ignores it).
#[derive(Debug, Clone, PartialEq)]
pub struct ManualUnenrolItem {
    pub user_id: i64,
    pub course_id: i64,
}

/// A user to create, with the password facts Moodle checks (the ledger stores no password).
#[derive(Debug, Clone, Default)]
pub struct UserInput {
    pub user: NewUser,
    pub password_given: bool,
    pub createpassword: bool,
}

/// What the writer answers to a request: one generic reply that every request fills as far as
/// it applies (a request that creates nothing leaves `created` empty), so no caller matches on
/// which request it sent. The API shapes it into each function's own typed reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The user enrolment `Enrol` created (0 for every other request).
    pub enrolid: i64,
    /// What the request created, in input order: `(id, username)` for `CreateUsers`,
    /// `(id, shortname)` for `CreateCourses`.
    pub created: Vec<(i64, String)>,
    /// How many orphaned instances `CleanupOrphans` removed.
    pub removed: i64,
    /// Per-item refusals of an update call (itemid, the rule); `api/errors.rs` words them as
    /// Moodle's warnings.
    pub warnings: Vec<(i64, RegistryError)>,
}

impl Outcome {
    /// The reply of a request that only changes state.
    #[allow(non_upper_case_globals)]
    pub const Done: Outcome = Outcome { enrolid: 0, created: Vec::new(), removed: 0, warnings: Vec::new() };

    pub fn enrolled(enrolid: i64) -> Self {
        Self { enrolid, ..Self::default() }
    }
    pub fn created(created: Vec<(i64, String)>) -> Self {
        Self { created, ..Self::default() }
    }
    pub fn removed(removed: i64) -> Self {
        Self { removed, ..Self::default() }
    }
    pub fn warnings(warnings: Vec<(i64, RegistryError)>) -> Self {
        Self { warnings, ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An event of the request did not decode back to the event it was encoded from; nothing of
    /// the request was applied or written (the writer's assert on write).
    #[error("the {event_type} event does not survive its own encoding: {reason}")]
    EventRoundTrip { event_type: &'static str, reason: String },
    /// The batch could not be made durable; nothing of it was kept.
    #[error("the ledger could not store the change: {0}")]
    Unavailable(String),
    /// The connection was lost during COMMIT and the writer could not find out whether the
    /// change was kept: it may or may not be in the log.
    #[error(
        "the ledger lost its database connection while committing; the change may or may not have been recorded: {0}"
    )]
    OutcomeUnknown(String),
    /// `submit` waited this many milliseconds without an answer; the change may or may not
    /// have been recorded.
    #[error("the ledger did not answer within {0} ms; the change may or may not have been recorded")]
    Timeout(u64),
}
