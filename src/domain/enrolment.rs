//! The enrolment aggregate: one stream per enrolment instance, i.e. per SEMCO booking.
//!
//! Cross-stream facts (is the booking ID taken, the user's other periods in the course) are
//! looked up by the single writer from its authoritative index and handed in with the
//! command; because that writer decides one command at a time, the facts cannot go stale
//! between lookup and append (see docs/ARCHITECTURE.md, "Invariants").

use super::column::{self, Column};
use super::event::{Change, EnrolmentEvent, UnenrolReason};
use super::ids::{BookingId, BookingIdError, CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
use super::period::{EnrolmentPeriod, OverlapRule};
use super::recompletion::RecompletionFacts;
use super::{DomainError, ImpossibleEvent};

/// A live SEMCO enrolment: its instance and its one user enrolment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveEnrolment {
    pub instance_id: InstanceId,
    pub user_enrolment_id: UserEnrolmentId,
    pub user_id: UserId,
    pub course_id: CourseId,
    pub booking_id: BookingId,
    pub period: EnrolmentPeriod,
    pub suspended: bool,
    pub role_id: RoleId,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EnrolmentState {
    /// No event yet.
    #[default]
    New,
    Live(LiveEnrolment),
    /// The user was deleted: the instance is empty but still holds its booking ID.
    Orphaned {
        instance_id: InstanceId,
        course_id: CourseId,
        booking_id: BookingId,
    },
    /// Unenrolled and instance removed: nothing can happen to this stream any more.
    Closed,
}

impl EnrolmentState {
    pub fn live(&self) -> Option<&LiveEnrolment> {
        match self {
            Self::Live(enrolment) => Some(enrolment),
            _ => None,
        }
    }
}

/// `enrol_semco_enrol_user`, with the facts its checks need.
#[derive(Debug, Clone)]
pub struct EnrolUser {
    pub plugin_enabled: bool,
    pub course_id: CourseId,
    pub course_exists: bool,
    pub user_id: UserId,
    pub user_exists: bool,
    pub booking_id: String,
    pub booking_id_taken: bool,
    pub timestart: i64,
    pub timeend: i64,
    pub suspend: bool,
    pub require_recompletion: bool,
    pub recompletion: RecompletionFacts,
    /// Periods of the user's other SEMCO enrolments in the course.
    pub other_periods: Vec<EnrolmentPeriod>,
    pub overlap_rule: OverlapRule,
    pub role_id: RoleId,
    pub new_instance_id: InstanceId,
    pub new_user_enrolment_id: UserEnrolmentId,
    pub sortorder: i64,
}

/// `enrol_semco_edit_enrolment`: `None` means the parameter was not sent.
#[derive(Debug, Clone)]
pub struct EditEnrolment {
    pub plugin_enabled: bool,
    pub requested_id: i64,
    pub user_exists: bool,
    pub booking_id: Option<String>,
    pub booking_id_taken: bool,
    pub timestart: Option<i64>,
    pub timeend: Option<i64>,
    pub suspend: Option<bool>,
    /// Periods of the user's other SEMCO enrolments in the course, this one excluded.
    pub other_periods: Vec<EnrolmentPeriod>,
    pub overlap_rule: OverlapRule,
}

#[derive(Debug, Clone)]
pub enum EnrolmentCommand {
    Enrol(EnrolUser),
    Edit(EditEnrolment),
    /// `enrol_semco_unenrol_user`.
    Unenrol {
        plugin_enabled: bool,
        requested_id: i64,
        user_exists: bool,
    },
    /// The user was deleted: end the user enrolment, keep the instance.
    UnenrolDeletedUser,
    /// The orphan clean-up removes an empty instance.
    RemoveOrphan,
}

pub struct Enrolment;

impl esrs::Aggregate for Enrolment {
    const NAME: &'static str = "enrolment";
    type State = EnrolmentState;
    type Command = EnrolmentCommand;
    type Event = EnrolmentEvent;
    type Error = DomainError;

    fn handle_command(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        match command {
            EnrolmentCommand::Enrol(cmd) => enrol(state, cmd),
            EnrolmentCommand::Edit(cmd) => edit(state, cmd),
            EnrolmentCommand::Unenrol { plugin_enabled, requested_id, user_exists } => {
                let live = existing(state, plugin_enabled, requested_id, user_exists)?;
                Ok(vec![unenrolled(live, UnenrolReason::Semco)])
            }
            EnrolmentCommand::UnenrolDeletedUser => {
                Ok(state.live().map(|live| unenrolled(live, UnenrolReason::UserDeleted)).into_iter().collect())
            }
            EnrolmentCommand::RemoveOrphan => Ok(match state {
                EnrolmentState::Orphaned { instance_id, course_id, .. } => vec![EnrolmentEvent::InstanceDeleted {
                    instance_id: *instance_id,
                    course_id: *course_id,
                    reason: UnenrolReason::OrphanCleanup,
                }],
                _ => Vec::new(),
            }),
        }
    }

    /// For events this ledger decided, which are valid by construction; `transition` is the
    /// checked fold for events read back from the log.
    fn apply_event(state: Self::State, event: Self::Event) -> Self::State {
        transition(state, event)
            .unwrap_or_else(|impossible| panic!("the rules decided an impossible event: {impossible}"))
    }
}

impl EnrolmentState {
    /// The state's name in `ImpossibleEvent`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Live(_) => "live",
            Self::Orphaned { .. } => "orphaned",
            Self::Closed => "closed",
        }
    }

    /// What may follow this state, for `ImpossibleEvent`.
    fn expected(&self) -> String {
        match self {
            Self::New => "Enrolled".into(),
            Self::Live(live) => format!(
                "EnrolmentEdited or Unenrolled of user enrolment {}, or BookingIdChanged of instance {}",
                live.user_enrolment_id, live.instance_id
            ),
            Self::Orphaned { instance_id, .. } => format!("InstanceDeleted of instance {instance_id}"),
            Self::Closed => "no further event (the instance was removed)".into(),
        }
    }
}

/// The checked fold of one enrolment stream: the state after `event`, or why `event` cannot
/// follow `state` (a wrong state, or ids that are not this stream's).
pub fn transition(state: EnrolmentState, event: EnrolmentEvent) -> Result<EnrolmentState, ImpossibleEvent> {
    let impossible = |state: &EnrolmentState, event: &EnrolmentEvent| ImpossibleEvent {
        event: event.event_type(),
        state: state.name(),
        expected: state.expected(),
    };
    Ok(match (state, event) {
        (
            EnrolmentState::New,
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
                ..
            },
        ) => EnrolmentState::Live(LiveEnrolment {
            instance_id,
            user_enrolment_id,
            user_id,
            course_id,
            booking_id,
            period: EnrolmentPeriod { timestart, timeend },
            suspended,
            role_id,
        }),
        (
            EnrolmentState::Live(mut live),
            EnrolmentEvent::EnrolmentEdited { user_enrolment_id, timestart, timeend, suspended },
        ) if user_enrolment_id == live.user_enrolment_id => {
            if let Some(change) = timestart {
                live.period.timestart = change.new;
            }
            if let Some(change) = timeend {
                live.period.timeend = change.new;
            }
            if let Some(change) = suspended {
                live.suspended = change.new;
            }
            EnrolmentState::Live(live)
        }
        (EnrolmentState::Live(mut live), EnrolmentEvent::BookingIdChanged { instance_id, new, .. })
            if instance_id == live.instance_id =>
        {
            live.booking_id = new;
            EnrolmentState::Live(live)
        }
        (EnrolmentState::Live(live), EnrolmentEvent::Unenrolled { user_enrolment_id, reason, .. })
            if user_enrolment_id == live.user_enrolment_id =>
        {
            match reason {
                UnenrolReason::UserDeleted => EnrolmentState::Orphaned {
                    instance_id: live.instance_id,
                    course_id: live.course_id,
                    booking_id: live.booking_id,
                },
                _ => EnrolmentState::Closed,
            }
        }
        (EnrolmentState::Orphaned { instance_id: orphan, .. }, EnrolmentEvent::InstanceDeleted { instance_id, .. })
            if instance_id == orphan =>
        {
            EnrolmentState::Closed
        }
        (state, event) => return Err(impossible(&state, &event)),
    })
}

fn enrol(state: &EnrolmentState, cmd: EnrolUser) -> Result<Vec<EnrolmentEvent>, DomainError> {
    debug_assert_eq!(*state, EnrolmentState::New, "an enrol opens a new stream");
    if !cmd.plugin_enabled {
        return Err(DomainError::PluginNotEnabled);
    }
    if !cmd.course_exists {
        return Err(DomainError::CourseNotExist(cmd.course_id));
    }
    if !cmd.user_exists {
        return Err(DomainError::UserNotExist(cmd.user_id));
    }
    // Empty is the plugin's check, here; too long is its database's, after every other check.
    let booking_id = match BookingId::parse(&cmd.booking_id) {
        Err(BookingIdError::Empty) => return Err(DomainError::BookingIdEmpty),
        parsed => parsed,
    };
    if cmd.booking_id_taken {
        return Err(DomainError::BookingIdDuplicate(cmd.booking_id));
    }
    check_times(Some(cmd.timestart), Some(cmd.timeend))?;
    let period = EnrolmentPeriod { timestart: cmd.timestart, timeend: cmd.timeend };
    if cmd.overlap_rule.conflicts(period, &cmd.other_periods) {
        return Err(DomainError::BookingOverlap);
    }
    if cmd.require_recompletion {
        if !cmd.recompletion.available {
            return Err(DomainError::RecompletionNotExpectable);
        }
        cmd.recompletion.require_on_demand(cmd.course_id)?;
    }
    let booking_id = booking_id?;
    column::time(Column::UserEnrolmentsTimestart, cmd.timestart)?;
    column::time(Column::UserEnrolmentsTimeend, cmd.timeend)?;
    Ok(vec![EnrolmentEvent::Enrolled {
        instance_id: cmd.new_instance_id,
        user_enrolment_id: cmd.new_user_enrolment_id,
        user_id: cmd.user_id,
        course_id: cmd.course_id,
        booking_id,
        timestart: cmd.timestart,
        timeend: cmd.timeend,
        suspended: cmd.suspend,
        role_id: cmd.role_id,
        sortorder: cmd.sortorder,
    }])
}

fn edit(state: &EnrolmentState, cmd: EditEnrolment) -> Result<Vec<EnrolmentEvent>, DomainError> {
    let live = existing(state, cmd.plugin_enabled, cmd.requested_id, cmd.user_exists)?;
    let new_booking_id = match &cmd.booking_id {
        None => None,
        Some(raw) => {
            let parsed = match BookingId::parse(raw) {
                Err(BookingIdError::Empty) => return Err(DomainError::BookingIdEmpty),
                parsed => parsed,
            };
            // Resending the enrolment's own booking ID is a duplicate too (plugin quirk).
            if cmd.booking_id_taken {
                return Err(DomainError::BookingIdDuplicateMustChange(raw.clone()));
            }
            Some(parsed)
        }
    };
    check_times(cmd.timestart, cmd.timeend)?;
    let period = EnrolmentPeriod {
        timestart: cmd.timestart.unwrap_or(live.period.timestart),
        timeend: cmd.timeend.unwrap_or(live.period.timeend),
    };
    let times_given = cmd.timestart.is_some() || cmd.timeend.is_some();
    if times_given && cmd.overlap_rule.conflicts(period, &cmd.other_periods) {
        return Err(DomainError::BookingOverlap);
    }
    // What the database would refuse, last.
    let new_booking_id = new_booking_id.transpose()?;
    if let Some(timestart) = cmd.timestart {
        column::time(Column::UserEnrolmentsTimestart, timestart)?;
    }
    if let Some(timeend) = cmd.timeend {
        column::time(Column::UserEnrolmentsTimeend, timeend)?;
    }

    let mut events = Vec::new();
    if times_given || cmd.suspend.is_some() {
        // Plugin quirk: a missing `suspend` next to a given time means "active".
        let suspended = cmd.suspend.unwrap_or(false);
        let timestart = Change::between(live.period.timestart, period.timestart);
        let timeend = Change::between(live.period.timeend, period.timeend);
        let suspended = Change::between(live.suspended, suspended);
        if timestart.is_some() || timeend.is_some() || suspended.is_some() {
            events.push(EnrolmentEvent::EnrolmentEdited {
                user_enrolment_id: live.user_enrolment_id,
                timestart,
                timeend,
                suspended,
            });
        }
    }
    if let Some(new) = new_booking_id {
        events.push(EnrolmentEvent::BookingIdChanged {
            instance_id: live.instance_id,
            old: live.booking_id.clone(),
            new,
        });
    }
    Ok(events)
}

/// The shared preamble of unenrol and edit: plugin enabled, user enrolment found, user exists.
fn existing(
    state: &EnrolmentState,
    plugin_enabled: bool,
    requested_id: i64,
    user_exists: bool,
) -> Result<&LiveEnrolment, DomainError> {
    if !plugin_enabled {
        return Err(DomainError::PluginNotEnabled);
    }
    let live = state.live().ok_or(DomainError::EnrolNoUserInstance(requested_id))?;
    if !user_exists {
        return Err(DomainError::UserNotExist(live.user_id));
    }
    Ok(live)
}

/// timestart ≥ 0, timeend ≥ 0, and when both are set and positive, start ≤ end.
fn check_times(timestart: Option<i64>, timeend: Option<i64>) -> Result<(), DomainError> {
    if timestart.is_some_and(|t| t < 0) {
        return Err(DomainError::TimestartInvalid);
    }
    if timeend.is_some_and(|t| t < 0) {
        return Err(DomainError::TimeendInvalid);
    }
    if let (Some(start), Some(end)) = (timestart, timeend) {
        if start > 0 && end > 0 && start > end {
            return Err(DomainError::TimestartEndOrder);
        }
    }
    Ok(())
}

fn unenrolled(live: &LiveEnrolment, reason: UnenrolReason) -> EnrolmentEvent {
    EnrolmentEvent::Unenrolled {
        user_enrolment_id: live.user_enrolment_id,
        user_id: live.user_id,
        course_id: live.course_id,
        reason,
    }
}

/// Given a stream's history, when one more event is folded with the checked `transition`,
/// then this state or this `ImpossibleEvent`. (The commands' tests are in `domain/tests.rs`.)
#[cfg(test)]
mod transition_tests {
    use super::*;

    const INSTANCE: InstanceId = InstanceId(7);
    const UE: UserEnrolmentId = UserEnrolmentId(13);
    const COURSE: CourseId = CourseId(2);

    fn enrolled() -> EnrolmentEvent {
        EnrolmentEvent::Enrolled {
            instance_id: INSTANCE,
            user_enrolment_id: UE,
            user_id: UserId(42),
            course_id: COURSE,
            booking_id: BookingId::parse("B-1").unwrap(),
            timestart: 0,
            timeend: 0,
            suspended: false,
            role_id: RoleId(5),
            sortorder: 0,
        }
    }

    fn unenrolled(ue: UserEnrolmentId, reason: UnenrolReason) -> EnrolmentEvent {
        EnrolmentEvent::Unenrolled { user_enrolment_id: ue, user_id: UserId(42), course_id: COURSE, reason }
    }

    fn deleted(instance_id: InstanceId) -> EnrolmentEvent {
        EnrolmentEvent::InstanceDeleted { instance_id, course_id: COURSE, reason: UnenrolReason::OrphanCleanup }
    }

    fn given(history: Vec<EnrolmentEvent>) -> EnrolmentState {
        history.into_iter().try_fold(EnrolmentState::New, transition).expect("a possible history")
    }

    #[test]
    fn every_event_the_rules_emit_follows_its_state() {
        let orphaned = given(vec![enrolled(), unenrolled(UE, UnenrolReason::UserDeleted)]);
        assert!(matches!(orphaned, EnrolmentState::Orphaned { instance_id: INSTANCE, .. }));
        assert_eq!(transition(orphaned, deleted(INSTANCE)), Ok(EnrolmentState::Closed));
        let live = given(vec![enrolled()]);
        assert_eq!(transition(live, unenrolled(UE, UnenrolReason::Semco)), Ok(EnrolmentState::Closed));
    }

    #[test]
    fn unenrolled_cannot_open_a_stream() {
        let error = transition(given(vec![]), unenrolled(UE, UnenrolReason::Semco)).unwrap_err();
        assert_eq!(error, ImpossibleEvent { event: "Unenrolled", state: "new", expected: "Enrolled".into() });
        assert_eq!(error.to_string(), "Unenrolled cannot follow a new enrolment stream: expected Enrolled");
    }

    #[test]
    fn enrolled_cannot_follow_a_live_enrolment() {
        let error = transition(given(vec![enrolled()]), enrolled()).unwrap_err();
        assert_eq!(error.state, "live");
        assert_eq!(
            error.expected,
            "EnrolmentEdited or Unenrolled of user enrolment 13, or BookingIdChanged of instance 7"
        );
    }

    #[test]
    fn an_event_of_another_user_enrolment_cannot_follow_a_live_enrolment() {
        let error = transition(given(vec![enrolled()]), unenrolled(UserEnrolmentId(99), UnenrolReason::Semco));
        assert_eq!(error.unwrap_err().event, "Unenrolled");
    }

    #[test]
    fn instance_deleted_needs_that_orphaned_instance() {
        let error = transition(given(vec![enrolled()]), deleted(INSTANCE)).unwrap_err();
        assert_eq!((error.event, error.state), ("InstanceDeleted", "live"));
        let orphaned = given(vec![enrolled(), unenrolled(UE, UnenrolReason::UserDeleted)]);
        let error = transition(orphaned, deleted(InstanceId(8))).unwrap_err();
        assert_eq!(error.expected, "InstanceDeleted of instance 7");
    }

    #[test]
    fn nothing_follows_a_closed_stream() {
        let closed = given(vec![enrolled(), unenrolled(UE, UnenrolReason::Semco)]);
        let error = transition(closed, unenrolled(UE, UnenrolReason::Semco)).unwrap_err();
        assert_eq!(error.state, "closed");
        assert_eq!(error.expected, "no further event (the instance was removed)");
    }
}
