//! Manual enrolments (Moodle's `enrol_manual`): every course has one `manual` instance, and
//! each (instance, user) pair is one stream of enrolled / edited / unenrolled events.
//!
//! SEMCO's rules never look at these: the overlap check, booking IDs and SEMCO's reads see
//! `semco` instances only, as the plugin does. The facts a decision needs (does the course
//! exist and has it its manual instance, is the user active, the new user enrolment id) are
//! looked up by the writer and handed in with the command.

use super::column::{self, Column};
use super::event::{Change, ManualEvent, ManualUnenrolReason};
use super::ids::{CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
use super::ImpossibleEvent;

/// The role ids a site administrator may assign in a course context on a fresh Moodle
/// (`get_assignable_roles`): manager, editingteacher, teacher, student.
pub const ASSIGNABLE_ROLES: [i64; 4] = [1, 3, 4, 5];
/// The role a new course's manual instance gives by default (student).
pub const DEFAULT_ROLE: i64 = 5;

/// Why a manual enrolment request is refused, in the order `enrol_manual_external` checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManualError {
    /// `validate_context` of a missing course context.
    #[error("course {0} has no context")]
    ContextNotExist(CourseId),
    /// `wsusercannotassign`: the role is not assignable in the course.
    #[error("role {role} cannot be assigned to user {user} in course {course}")]
    CannotAssignRole { role: RoleId, user: UserId, course: CourseId },
    /// `wsnoinstance`: the course has no manual instance.
    #[error("course {0} has no manual instance")]
    NoInstance(CourseId),
    /// The user is missing or deleted (`enrol_manual_unenrol_users`: "User id not exist").
    #[error("user {0} does not exist")]
    UserNotExist(UserId),
    /// A time outside `int(10)`.
    #[error(transparent)]
    DoesNotFit(#[from] column::ColumnOverflow),
}

/// A live manual user enrolment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManualLive {
    pub user_enrolment_id: UserEnrolmentId,
    /// The course of the stream's instance (so ending a user's enrolments needs no lookup).
    pub course_id: CourseId,
    pub timestart: i64,
    pub timeend: i64,
    pub suspended: bool,
    pub role_id: RoleId,
}

/// One (instance, user) stream: `None` before the first enrolment and after an unenrolment
/// (a later enrolment opens a new user enrolment in the same stream, as Moodle does).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManualState {
    pub live: Option<ManualLive>,
}

/// One `enrolments[]` item of `enrol_manual_enrol_users`, with the facts its checks need.
#[derive(Debug, Clone)]
pub struct ManualEnrol {
    pub course_id: CourseId,
    pub course_exists: bool,
    /// The course's manual instance, when it has one.
    pub instance_id: Option<InstanceId>,
    pub user_id: UserId,
    pub user_exists: bool,
    pub role_id: RoleId,
    pub timestart: Option<i64>,
    pub timeend: Option<i64>,
    pub suspend: Option<i64>,
    pub new_user_enrolment_id: UserEnrolmentId,
}

/// One `enrolments[]` item of `enrol_manual_unenrol_users`.
#[derive(Debug, Clone)]
pub struct ManualUnenrol {
    pub course_id: CourseId,
    pub course_exists: bool,
    pub instance_id: Option<InstanceId>,
    pub user_id: UserId,
    pub user_exists: bool,
}

#[derive(Debug, Clone)]
pub enum ManualCommand {
    Enrol(ManualEnrol),
    Unenrol(ManualUnenrol),
    /// The user was deleted: end the live enrolment, if any.
    UnenrolDeletedUser {
        instance_id: InstanceId,
        course_id: CourseId,
        user_id: UserId,
    },
}

pub struct ManualEnrolment;

impl esrs::Aggregate for ManualEnrolment {
    const NAME: &'static str = "manual";
    type State = ManualState;
    type Command = ManualCommand;
    type Event = ManualEvent;
    type Error = ManualError;

    fn handle_command(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        match command {
            ManualCommand::Enrol(cmd) => enrol(state, cmd),
            ManualCommand::Unenrol(cmd) => {
                if !cmd.course_exists {
                    return Err(ManualError::ContextNotExist(cmd.course_id));
                }
                let instance = cmd.instance_id.ok_or(ManualError::NoInstance(cmd.course_id))?;
                if !cmd.user_exists {
                    return Err(ManualError::UserNotExist(cmd.user_id));
                }
                // Moodle's unenrol_user does nothing for a user without an enrolment there.
                Ok(state
                    .live
                    .as_ref()
                    .map(|live| ManualEvent::ManualUnenrolled {
                        instance_id: instance,
                        user_enrolment_id: live.user_enrolment_id,
                        user_id: cmd.user_id,
                        course_id: cmd.course_id,
                        reason: ManualUnenrolReason::Manual,
                    })
                    .into_iter()
                    .collect())
            }
            ManualCommand::UnenrolDeletedUser { instance_id, course_id, user_id } => Ok(state
                .live
                .as_ref()
                .map(|live| ManualEvent::ManualUnenrolled {
                    instance_id,
                    user_enrolment_id: live.user_enrolment_id,
                    user_id,
                    course_id,
                    reason: ManualUnenrolReason::UserDeleted,
                })
                .into_iter()
                .collect()),
        }
    }

    fn apply_event(state: Self::State, event: Self::Event) -> Self::State {
        transition(state, event)
            .unwrap_or_else(|impossible| panic!("the rules decided an impossible event: {impossible}"))
    }
}

fn enrol(state: &ManualState, cmd: ManualEnrol) -> Result<Vec<ManualEvent>, ManualError> {
    if !cmd.course_exists {
        return Err(ManualError::ContextNotExist(cmd.course_id));
    }
    if !ASSIGNABLE_ROLES.contains(&cmd.role_id.0) {
        return Err(ManualError::CannotAssignRole { role: cmd.role_id, user: cmd.user_id, course: cmd.course_id });
    }
    let instance = cmd.instance_id.ok_or(ManualError::NoInstance(cmd.course_id))?;
    if !cmd.user_exists {
        return Err(ManualError::UserNotExist(cmd.user_id));
    }
    let suspended = cmd.suspend.is_some_and(|s| s != 0);
    let timestart = column::time(Column::UserEnrolmentsTimestart, cmd.timestart.unwrap_or(0))?;
    let timeend = column::time(Column::UserEnrolmentsTimeend, cmd.timeend.unwrap_or(0))?;
    Ok(match &state.live {
        None => vec![ManualEvent::ManualEnrolled {
            instance_id: instance,
            user_enrolment_id: cmd.new_user_enrolment_id,
            user_id: cmd.user_id,
            course_id: cmd.course_id,
            timestart,
            timeend,
            suspended,
            role_id: cmd.role_id,
        }],
        // Moodle's enrol_user on an existing enrolment updates only what differs.
        Some(live) => {
            let edit = ManualEvent::ManualEnrolmentEdited {
                instance_id: instance,
                user_enrolment_id: live.user_enrolment_id,
                user_id: cmd.user_id,
                timestart: Change::between(live.timestart, timestart),
                timeend: Change::between(live.timeend, timeend),
                suspended: Change::between(live.suspended, suspended),
                role_id: Change::between(live.role_id, cmd.role_id),
            };
            match &edit {
                ManualEvent::ManualEnrolmentEdited { timestart, timeend, suspended, role_id, .. }
                    if timestart.is_none() && timeend.is_none() && suspended.is_none() && role_id.is_none() =>
                {
                    Vec::new()
                }
                _ => vec![edit],
            }
        }
    })
}

/// The checked fold of one manual enrolment stream.
pub fn transition(state: ManualState, event: ManualEvent) -> Result<ManualState, ImpossibleEvent> {
    let name = if state.live.is_some() { "live" } else { "new" };
    let impossible =
        |expected: &str| ImpossibleEvent { event: event.event_type(), state: name, expected: expected.into() };
    match (&state.live, &event) {
        (
            None,
            ManualEvent::ManualEnrolled {
                user_enrolment_id, course_id, timestart, timeend, suspended, role_id, ..
            },
        ) => Ok(ManualState {
            live: Some(ManualLive {
                user_enrolment_id: *user_enrolment_id,
                course_id: *course_id,
                timestart: *timestart,
                timeend: *timeend,
                suspended: *suspended,
                role_id: *role_id,
            }),
        }),
        (
            Some(live),
            ManualEvent::ManualEnrolmentEdited { user_enrolment_id, timestart, timeend, suspended, role_id, .. },
        ) if live.user_enrolment_id == *user_enrolment_id => {
            let mut live = live.clone();
            if let Some(c) = timestart {
                live.timestart = c.new;
            }
            if let Some(c) = timeend {
                live.timeend = c.new;
            }
            if let Some(c) = suspended {
                live.suspended = c.new;
            }
            if let Some(c) = role_id {
                live.role_id = c.new;
            }
            Ok(ManualState { live: Some(live) })
        }
        (Some(live), ManualEvent::ManualUnenrolled { user_enrolment_id, .. })
            if live.user_enrolment_id == *user_enrolment_id =>
        {
            Ok(ManualState { live: None })
        }
        (None, _) => Err(impossible("ManualEnrolled")),
        (Some(_), _) => Err(impossible("ManualEnrolmentEdited or ManualUnenrolled of its user enrolment")),
    }
}

/// Given / when / then: each command against a stream state gives exactly these events.
#[cfg(test)]
mod tests {
    use super::*;
    use esrs::Aggregate;

    fn enrol_cmd() -> ManualEnrol {
        ManualEnrol {
            course_id: CourseId(2),
            course_exists: true,
            instance_id: Some(InstanceId(9)),
            user_id: UserId(7),
            user_exists: true,
            role_id: RoleId(5),
            timestart: None,
            timeend: None,
            suspend: None,
            new_user_enrolment_id: UserEnrolmentId(30),
        }
    }

    fn live() -> ManualState {
        ManualState {
            live: Some(ManualLive {
                user_enrolment_id: UserEnrolmentId(30),
                course_id: CourseId(2),
                timestart: 0,
                timeend: 0,
                suspended: false,
                role_id: RoleId(5),
            }),
        }
    }

    fn when(state: &ManualState, cmd: ManualCommand) -> Result<Vec<ManualEvent>, ManualError> {
        ManualEnrolment::handle_command(state, cmd)
    }

    #[test]
    fn given_no_enrolment_when_enrolled_then_one_enrolled_event_with_moodles_defaults() {
        let events = when(&ManualState::default(), ManualCommand::Enrol(enrol_cmd())).unwrap();
        assert_eq!(
            events,
            vec![ManualEvent::ManualEnrolled {
                instance_id: InstanceId(9),
                user_enrolment_id: UserEnrolmentId(30),
                user_id: UserId(7),
                course_id: CourseId(2),
                timestart: 0,
                timeend: 0,
                suspended: false,
                role_id: RoleId(5),
            }]
        );
    }

    #[test]
    fn checks_come_in_moodles_order_context_role_instance_user() {
        let all_wrong = ManualEnrol {
            course_exists: false,
            role_id: RoleId(8),
            instance_id: None,
            user_exists: false,
            ..enrol_cmd()
        };
        let new = ManualState::default();
        assert_eq!(when(&new, ManualCommand::Enrol(all_wrong.clone())), Err(ManualError::ContextNotExist(CourseId(2))));
        let cmd = ManualEnrol { course_exists: true, ..all_wrong };
        assert!(matches!(when(&new, ManualCommand::Enrol(cmd.clone())), Err(ManualError::CannotAssignRole { .. })));
        let cmd = ManualEnrol { role_id: RoleId(3), ..cmd };
        assert_eq!(when(&new, ManualCommand::Enrol(cmd.clone())), Err(ManualError::NoInstance(CourseId(2))));
        let cmd = ManualEnrol { instance_id: Some(InstanceId(9)), ..cmd };
        assert_eq!(when(&new, ManualCommand::Enrol(cmd)), Err(ManualError::UserNotExist(UserId(7))));
    }

    #[test]
    fn given_a_live_enrolment_when_enrolled_again_then_only_the_changes_or_nothing() {
        assert_eq!(when(&live(), ManualCommand::Enrol(enrol_cmd())).unwrap(), vec![]);
        let cmd = ManualEnrol { timeend: Some(500), suspend: Some(1), ..enrol_cmd() };
        let events = when(&live(), ManualCommand::Enrol(cmd)).unwrap();
        assert_eq!(
            events,
            vec![ManualEvent::ManualEnrolmentEdited {
                instance_id: InstanceId(9),
                user_enrolment_id: UserEnrolmentId(30),
                user_id: UserId(7),
                timestart: None,
                timeend: Some(Change { old: 0, new: 500 }),
                suspended: Some(Change { old: false, new: true }),
                role_id: None,
            }]
        );
        let after = events.into_iter().fold(live(), ManualEnrolment::apply_event);
        assert_eq!(after.live.as_ref().map(|l| (l.timeend, l.suspended)), Some((500, true)));
    }

    #[test]
    fn given_a_live_enrolment_when_unenrolled_then_the_stream_can_enrol_again() {
        let cmd = ManualUnenrol {
            course_id: CourseId(2),
            course_exists: true,
            instance_id: Some(InstanceId(9)),
            user_id: UserId(7),
            user_exists: true,
        };
        let events = when(&live(), ManualCommand::Unenrol(cmd.clone())).unwrap();
        assert!(matches!(events[..], [ManualEvent::ManualUnenrolled { reason: ManualUnenrolReason::Manual, .. }]));
        let after = events.into_iter().fold(live(), ManualEnrolment::apply_event);
        assert_eq!(after, ManualState::default());
        assert_eq!(when(&after, ManualCommand::Unenrol(cmd.clone())).unwrap(), vec![], "nothing to unenrol");
        let missing = ManualUnenrol { user_exists: false, ..cmd };
        assert_eq!(when(&after, ManualCommand::Unenrol(missing)), Err(ManualError::UserNotExist(UserId(7))));
    }

    #[test]
    fn an_event_of_another_user_enrolment_cannot_follow_the_stream() {
        let wrong = ManualEvent::ManualUnenrolled {
            instance_id: InstanceId(9),
            user_enrolment_id: UserEnrolmentId(31),
            user_id: UserId(7),
            course_id: CourseId(2),
            reason: ManualUnenrolReason::Manual,
        };
        assert_eq!(transition(live(), wrong.clone()).unwrap_err().state, "live");
        assert_eq!(transition(ManualState::default(), wrong).unwrap_err().state, "new");
    }

    #[test]
    fn a_time_beyond_int10_is_refused_last() {
        let cmd = ManualEnrol { timeend: Some(i64::from(u32::MAX) * 4), ..enrol_cmd() };
        assert!(matches!(when(&ManualState::default(), ManualCommand::Enrol(cmd)), Err(ManualError::DoesNotFit(_))));
    }
}
