//! Undo without loss (issue 8 item 6): which earlier event a compensating event may undo, and
//! what it brings back. Pure: the shell reads the undone event's stream from the log (by index)
//! and hands it in; the writer then decides the compensation against today's rules.
//!
//! - An `Unenrolled` (reason `semco`) is undone by `EnrolmentReinstated`: the enrolment as it
//!   was just before, re-enrolled through the enrolment aggregate's own rules (plugin enabled,
//!   user and course exist, booking ID free, no overlap), on a new instance and user enrolment.
//! - A `CompletionReset` that archived a completion is undone by `CompletionRestored`, while
//!   no newer completion is current.

use super::enrolment::{transition, EnrolmentState, LiveEnrolment};
use super::event::{CompletionEvent, CourseCompletion, EnrolmentEvent, UndoEvent};
use super::{DomainError, LedgerEvent};

/// The compensating event of a reinstatement: the `Enrolled` event the enrolment aggregate
/// decided for it (under today's rules), pointing to the unenrolment it undoes.
pub fn reinstated(enrolled: EnrolmentEvent, undoes: i64, reason: Option<String>) -> LedgerEvent {
    match enrolled {
        EnrolmentEvent::Enrolled {
            instance_id,
            user_enrolment_id,
            user_id,
            course_id,
            booking_id,
            timestart,
            timeend,
            suspended,
            role_id,
            sortorder,
        } => LedgerEvent::Undo(UndoEvent::EnrolmentReinstated {
            undoes,
            reason,
            instance_id,
            user_enrolment_id,
            user_id,
            course_id,
            booking_id,
            timestart,
            timeend,
            suspended,
            role_id,
            sortorder,
        }),
        other => LedgerEvent::Enrolment(other),
    }
}

/// The enrolment an `Unenrolled` event at `position` ended, as it was just before it, from
/// its stream's events in order (`(position, event)`).
///
/// # Errors
/// `NotUndoable` when no event of the stream is at `position`, when it is not an unenrolment
/// by SEMCO (a user's or course's deletion is not undone by reinstating one enrolment), or
/// when the stream cannot be folded up to it.
pub fn unenrolled_enrolment(stream: &[(i64, EnrolmentEvent)], position: i64) -> Result<LiveEnrolment, DomainError> {
    let refuse = |why| DomainError::NotUndoable { position, why };
    let mut state = EnrolmentState::New;
    for (at, event) in stream {
        if *at == position {
            return match (event, state) {
                (
                    EnrolmentEvent::Unenrolled { reason: super::event::UnenrolReason::Semco, .. },
                    EnrolmentState::Live(live),
                ) => Ok(live),
                (EnrolmentEvent::Unenrolled { .. }, _) => Err(refuse("only an unenrolment by SEMCO can be reinstated")),
                _ => Err(refuse("it is not an unenrolment")),
            };
        }
        state = transition(state, event.clone()).map_err(|_| refuse("its enrolment stream cannot be followed"))?;
    }
    Err(refuse("it is not an unenrolment"))
}

/// The completion a `CompletionReset` archived, to be current again.
///
/// # Errors
/// `NotUndoable` when the event is not a reset, archived nothing, or a completion is current
/// now (restoring would overwrite a newer one).
pub fn restorable_completion(
    position: i64,
    event: &CompletionEvent,
    current: Option<&CourseCompletion>,
) -> Result<CourseCompletion, DomainError> {
    let refuse = |why| DomainError::NotUndoable { position, why };
    match event {
        CompletionEvent::CompletionReset { archived: Some(archived), .. } if current.is_none() => Ok(*archived),
        CompletionEvent::CompletionReset { archived: Some(_), .. } => {
            Err(refuse("a completion is current again; restoring would replace it"))
        }
        CompletionEvent::CompletionReset { archived: None, .. } => Err(refuse("the reset archived no completion")),
        CompletionEvent::CompletionRecorded { .. } => Err(refuse("it is not a completion reset")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::{Change, UnenrolReason};
    use crate::domain::ids::{BookingId, CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};

    fn enrolled() -> EnrolmentEvent {
        EnrolmentEvent::Enrolled {
            instance_id: InstanceId(1),
            user_enrolment_id: UserEnrolmentId(1),
            user_id: UserId(4),
            course_id: CourseId(2),
            booking_id: BookingId::parse("B-1").unwrap(),
            timestart: 100,
            timeend: 200,
            suspended: false,
            role_id: RoleId(5),
            sortorder: 0,
        }
    }

    fn unenrolled(reason: UnenrolReason) -> EnrolmentEvent {
        EnrolmentEvent::Unenrolled {
            user_enrolment_id: UserEnrolmentId(1),
            user_id: UserId(4),
            course_id: CourseId(2),
            reason,
        }
    }

    // given an enrolment edited to end at 300 and then unenrolled by SEMCO, when the
    // unenrolment is undone, then the enrolment as it was just before comes back.
    #[test]
    fn an_unenrolment_by_semco_gives_back_the_enrolment_just_before_it() {
        let edit = EnrolmentEvent::EnrolmentEdited {
            user_enrolment_id: UserEnrolmentId(1),
            timestart: None,
            timeend: Some(Change { old: 200, new: 300 }),
            suspended: None,
        };
        let stream = [(7, enrolled()), (9, edit), (12, unenrolled(UnenrolReason::Semco))];
        let live = unenrolled_enrolment(&stream, 12).unwrap();
        assert_eq!((live.user_id.0, live.course_id.0, live.booking_id.as_str()), (4, 2, "B-1"));
        assert_eq!((live.period.timestart, live.period.timeend), (100, 300));
    }

    // given a stream, when a position that is not a SEMCO unenrolment is undone, then it is refused.
    #[test]
    fn only_an_unenrolment_by_semco_can_be_reinstated() {
        let by_deletion = [(7, enrolled()), (8, unenrolled(UnenrolReason::UserDeleted))];
        assert!(matches!(unenrolled_enrolment(&by_deletion, 8), Err(DomainError::NotUndoable { position: 8, .. })));
        assert!(matches!(unenrolled_enrolment(&by_deletion, 7), Err(DomainError::NotUndoable { position: 7, .. })));
        assert!(matches!(unenrolled_enrolment(&by_deletion, 99), Err(DomainError::NotUndoable { position: 99, .. })));
    }

    // given a reset that archived a completion, when it is undone with no current completion,
    // then the archived one comes back; with a current one, or nothing archived, it is refused.
    #[test]
    fn a_reset_completion_is_restored_only_while_none_is_current() {
        let completion = CourseCompletion { timecompleted: 180, grade: None };
        let reset = |archived| CompletionEvent::CompletionReset {
            user_id: UserId(4),
            course_id: CourseId(2),
            user_enrolment_id: UserEnrolmentId(1),
            archived,
        };
        assert_eq!(restorable_completion(5, &reset(Some(completion)), None), Ok(completion));
        let newer = CourseCompletion { timecompleted: 999, grade: None };
        assert!(restorable_completion(5, &reset(Some(completion)), Some(&newer)).is_err());
        assert!(restorable_completion(5, &reset(None), None).is_err());
    }
}
