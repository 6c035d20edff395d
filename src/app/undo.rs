//! The shell of an undo: reads the event to undo (by position) and its stream from the log,
//! and turns it into the request the writer decides (`domain::undo` holds the rules).
//! Used by `enrol-ledger undo --position P` and the admin functions
//! `ledger_reinstate_enrolment` / `ledger_restore_completion`.

use super::command::{LedgerError, Request};
use crate::domain::event::{CompletionEvent, EnrolmentEvent};
use crate::domain::{undo, DomainError, LedgerEvent};
use crate::store::log;
use crate::store::{Db, StoreError};

/// What may be undone at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoKind {
    /// An `Unenrolled` event: reinstate the enrolment.
    Reinstate,
    /// A `CompletionReset` event: restore the completion.
    Restore,
    /// Whichever the event is (the CLI).
    Any,
}

/// The request that undoes the event at `position`.
///
/// # Errors
/// `DomainError::NotUndoable` (as `LedgerError::Domain`) when there is no such event or it is
/// not of `kind`; a storage error when the log cannot be read.
pub async fn request_for(db: &Db, position: i64, kind: UndoKind, reason: Option<String>) -> Result<Request, UndoError> {
    let refuse = |why| UndoError::Ledger(LedgerError::Domain(DomainError::NotUndoable { position, why }));
    let mut conn = db.pool.acquire().await?;
    let found = log::read_after(&mut conn, position - 1, 1).await?;
    drop(conn);
    let Some(stored) = found.into_iter().next().filter(|e| e.position == position) else {
        return Err(refuse("there is no event at this position"));
    };
    match (stored.event()?, kind) {
        (LedgerEvent::Enrolment(EnrolmentEvent::Unenrolled { .. }), UndoKind::Reinstate | UndoKind::Any) => {
            let mut stream = Vec::new();
            for event in log::read_stream(db, &stored.stream_id).await? {
                if let LedgerEvent::Enrolment(e) = event.event()? {
                    stream.push((event.position, e));
                }
            }
            let enrolment = undo::unenrolled_enrolment(&stream, position).map_err(LedgerError::Domain)?;
            Ok(Request::ReinstateEnrolment { undoes: position, enrolment, reason })
        }
        (
            LedgerEvent::Completion(reset @ CompletionEvent::CompletionReset { .. }),
            UndoKind::Restore | UndoKind::Any,
        ) => Ok(Request::RestoreCompletion { undoes: position, reset, reason }),
        (_, UndoKind::Reinstate) => Err(refuse("it is not an unenrolment")),
        (_, UndoKind::Restore) => Err(refuse("it is not a completion reset")),
        (_, UndoKind::Any) => Err(refuse("only an unenrolment or a completion reset can be undone")),
    }
}

/// Why an undo request could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for UndoError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(error.into())
    }
}
