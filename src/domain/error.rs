//! Business-rule failures, one variant per rule, declared in the order the checks run.
//!
//! Only `api::errors` knows the Moodle error codes and messages these become.

use super::column::ColumnOverflow;
use super::ids::{CourseId, UserId};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("the SEMCO enrolment plugin is disabled")]
    PluginNotEnabled,
    #[error("recompletion is switched off")]
    RecompletionNotInstalled,
    #[error("course {0} does not exist")]
    CourseNotExist(CourseId),
    #[error("no user enrolment {0}")]
    EnrolNoUserInstance(i64),
    #[error("user {0} does not exist")]
    UserNotExist(UserId),
    #[error("booking ID is empty")]
    BookingIdEmpty,
    #[error("booking ID {0} is taken")]
    BookingIdDuplicate(String),
    #[error("booking ID {0} is taken (edit)")]
    BookingIdDuplicateMustChange(String),
    #[error("timestart < 0")]
    TimestartInvalid,
    #[error("timeend < 0")]
    TimeendInvalid,
    #[error("timestart > timeend")]
    TimestartEndOrder,
    #[error("enrolment periods overlap")]
    BookingOverlap,
    #[error("recompletion was required but is switched off")]
    RecompletionNotExpectable,
    #[error("recompletion is disabled in course {0}")]
    RecompletionNotEnabled(CourseId),
    #[error("recompletion is not on demand in course {0}")]
    RecompletionNotOnDemand(CourseId),
    #[error("timecompleted must be > 0")]
    TimeCompletedInvalid,
    #[error("unknown setting {0}")]
    UnknownSetting(String),
    #[error("invalid value {value:?} for setting {name}")]
    InvalidSettingValue { name: String, value: String },
    /// Mute of a health check id that does not exist (`app::health`).
    #[error("unknown health check {0}")]
    UnknownHealthCheck(String),
    /// A mute needs a reason of 1 to `health::MUTE_REASON_MAX` characters.
    #[error("a muted check needs a reason (at most 500 characters)")]
    MuteReasonInvalid,
    /// A manual enrolment refused (`enrol_manual_*`), in that plugin's own order.
    #[error(transparent)]
    Manual(#[from] super::manual::ManualError),
    /// The event at this position cannot be undone (`ledger_reinstate_enrolment`,
    /// `ledger_restore_completion`, `enrol-ledger undo`): it is not of the undoable kind, or
    /// what it changed has changed again since.
    #[error("the event at position {position} cannot be undone: {why}")]
    NotUndoable { position: i64, why: &'static str },
    /// Last, as in Moodle where the write comes after every check: a value its column cannot hold.
    #[error(transparent)]
    DoesNotFit(#[from] ColumnOverflow),
}

impl From<super::ids::BookingIdError> for DomainError {
    fn from(error: super::ids::BookingIdError) -> Self {
        match error {
            super::ids::BookingIdError::Empty => Self::BookingIdEmpty,
            super::ids::BookingIdError::DoesNotFit(overflow) => Self::DoesNotFit(overflow),
        }
    }
}

/// An event that cannot follow its stream's state. The rules never produce one, so meeting it
/// while folding the log means the log holds something they did not decide (a defect of an
/// earlier version, or a row written by hand). Not a business-rule failure: no client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{event} cannot follow a {state} enrolment stream: expected {expected}")]
pub struct ImpossibleEvent {
    /// The event's type, as in the log's `event_type` column.
    pub event: &'static str,
    /// The stream's state before it: `new`, `live`, `orphaned` or `closed`.
    pub state: &'static str,
    /// What may follow that state.
    pub expected: String,
}
