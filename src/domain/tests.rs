//! Given/when/then tests of the aggregates: given these events, when this command, then these
//! events or this error. No I/O.
//!
//! Each test is named after the rule it pins (MOODLE-REFERENCE.md §3, WS-CONTRACT.md §3 and §7).
//! Builders return a command in which every check passes; a test changes only the fields its
//! rule is about, so a failure points at that rule. The `*_beats_*` tests break two rules at
//! once and prove which error the plugin reports first. The overlap formula itself is tested
//! case by case in `period.rs`; here it is only exercised through the commands.

use super::column::{Column, ColumnOverflow, GradeValue, TIME_MAX};
use super::completion::{Completion, CompletionCommand, CompletionState, GradeInput, ResetTarget};
use super::config::{Config, SetConfig, Settings, DEFAULT_ROLE, SETTING_NAMES};
use super::course::{Course, CourseState, SetRecompletionType};
use super::enrolment::{EditEnrolment, EnrolUser, Enrolment, EnrolmentCommand, EnrolmentState, LiveEnrolment};
use super::event::{
    Change, CompletionEvent, ConfigEvent, CourseCompletion, CourseEvent, EnrolmentEvent, Grade, UnenrolReason,
};
use super::ids::{BookingId, CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
use super::period::{EnrolmentPeriod, OverlapRule};
use super::recompletion::{RecompletionFacts, RecompletionType};
use super::DomainError;
use esrs::Aggregate;
use std::fmt::Debug;

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

/// The state of a stream after its history, ready to receive one command.
struct Given<A: Aggregate> {
    state: A::State,
}

/// Folds `events` with `A::apply_event`, starting from `A::State::default()`.
fn given<A: Aggregate>(events: Vec<A::Event>) -> Given<A> {
    Given { state: events.into_iter().fold(A::State::default(), A::apply_event) }
}

impl<A: Aggregate> Given<A> {
    fn when(self, command: A::Command) -> Then<A> {
        let result = A::handle_command(&self.state, command);
        Then { state: self.state, result }
    }
}

/// What one command decided, with the state it decided on.
struct Then<A: Aggregate> {
    state: A::State,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: Debug + PartialEq + Clone,
    A::Error: Debug + PartialEq,
{
    /// Asserts the emitted events and returns the state after applying them, so a test can go
    /// on to check the fold.
    #[track_caller]
    fn then_events(self, expected: Vec<A::Event>) -> A::State {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "emitted events");
                events.into_iter().fold(self.state, A::apply_event)
            }
            Err(error) => panic!("expected events {expected:?}, got error {error:?}"),
        }
    }

    /// Asserts the command was refused with exactly `expected`.
    #[track_caller]
    fn then_error(self, expected: A::Error) {
        match self.result {
            Ok(events) => panic!("expected error {expected:?}, got events {events:?}"),
            Err(error) => assert_eq!(error, expected, "domain error"),
        }
    }
}

// The harness must fail loudly when the decision is not the expected kind.
#[test]
#[should_panic(expected = "got error PluginNotEnabled")]
fn harness_then_events_fails_on_an_error() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.plugin_enabled = false)).then_events(vec![]);
}

#[test]
#[should_panic(expected = "got events []")]
fn harness_then_error_fails_on_events() {
    given::<Enrolment>(vec![]).when(EnrolmentCommand::RemoveOrphan).then_error(DomainError::PluginNotEnabled);
}

#[test]
#[should_panic(expected = "emitted events")]
fn harness_then_events_fails_on_other_events() {
    given::<Enrolment>(vec![]).when(EnrolmentCommand::Enrol(enrol_cmd())).then_events(vec![]);
}

// ---------------------------------------------------------------------------------------------
// Fixtures and builders
// ---------------------------------------------------------------------------------------------

const COURSE: CourseId = CourseId(2);
const USER: UserId = UserId(42);
const INSTANCE: InstanceId = InstanceId(7);
const UE: UserEnrolmentId = UserEnrolmentId(13);
/// What SEMCO sends as `enrolid`: the user enrolment id.
const REQUESTED: i64 = 13;
const ROLE: RoleId = RoleId(5);
const SORTORDER: i64 = 3;
const BOOKING: &str = "B-1001";

fn booking(raw: &str) -> BookingId {
    BookingId::parse(raw).expect("a non-empty booking ID")
}

fn period(timestart: i64, timeend: i64) -> EnrolmentPeriod {
    EnrolmentPeriod { timestart, timeend }
}

fn recompletion(available: bool, course_type: RecompletionType) -> RecompletionFacts {
    RecompletionFacts { available, course_type }
}

/// Recompletion installed and the course set to "On demand": every recompletion check passes.
fn on_demand() -> RecompletionFacts {
    recompletion(true, RecompletionType::OnDemand)
}

/// `enrol_semco_enrol_user` in which every check passes.
fn enrol_cmd() -> EnrolUser {
    EnrolUser {
        plugin_enabled: true,
        course_id: COURSE,
        course_exists: true,
        user_id: USER,
        user_exists: true,
        booking_id: BOOKING.to_owned(),
        booking_id_taken: false,
        timestart: 0,
        timeend: 0,
        suspend: false,
        require_recompletion: false,
        recompletion: on_demand(),
        other_periods: Vec::new(),
        overlap_rule: OverlapRule::EnrolSemco,
        role_id: ROLE,
        new_instance_id: INSTANCE,
        new_user_enrolment_id: UE,
        sortorder: SORTORDER,
    }
}

fn enrol_with(change: impl FnOnce(&mut EnrolUser)) -> EnrolmentCommand {
    let mut cmd = enrol_cmd();
    change(&mut cmd);
    EnrolmentCommand::Enrol(cmd)
}

/// `enrol_semco_edit_enrolment` of enrolment `REQUESTED` with no parameter sent.
fn edit_cmd() -> EditEnrolment {
    EditEnrolment {
        plugin_enabled: true,
        requested_id: REQUESTED,
        user_exists: true,
        booking_id: None,
        booking_id_taken: false,
        timestart: None,
        timeend: None,
        suspend: None,
        other_periods: Vec::new(),
        overlap_rule: OverlapRule::EnrolSemco,
    }
}

fn edit_with(change: impl FnOnce(&mut EditEnrolment)) -> EnrolmentCommand {
    let mut cmd = edit_cmd();
    change(&mut cmd);
    EnrolmentCommand::Edit(cmd)
}

fn unenrol(plugin_enabled: bool, requested_id: i64, user_exists: bool) -> EnrolmentCommand {
    EnrolmentCommand::Unenrol { plugin_enabled, requested_id, user_exists }
}

/// `enrol_semco_unenrol_user` of enrolment `REQUESTED` in which every check passes.
fn unenrol_cmd() -> EnrolmentCommand {
    unenrol(true, REQUESTED, true)
}

/// The `Enrolled` event of `enrol_cmd()` with the given period and status.
fn enrolled(timestart: i64, timeend: i64, suspended: bool) -> EnrolmentEvent {
    EnrolmentEvent::Enrolled {
        instance_id: INSTANCE,
        user_enrolment_id: UE,
        user_id: USER,
        course_id: COURSE,
        booking_id: booking(BOOKING),
        timestart,
        timeend,
        suspended,
        role_id: ROLE,
        sortorder: SORTORDER,
    }
}

/// The stored enrolment most edit tests start from: 1000–2000, active.
fn live_history() -> Vec<EnrolmentEvent> {
    vec![enrolled(1000, 2000, false)]
}

fn suspended_history() -> Vec<EnrolmentEvent> {
    vec![enrolled(1000, 2000, true)]
}

fn edited(
    timestart: Option<Change<i64>>,
    timeend: Option<Change<i64>>,
    suspended: Option<Change<bool>>,
) -> EnrolmentEvent {
    EnrolmentEvent::EnrolmentEdited { user_enrolment_id: UE, timestart, timeend, suspended }
}

fn booking_changed(old: &str, new: &str) -> EnrolmentEvent {
    EnrolmentEvent::BookingIdChanged { instance_id: INSTANCE, old: booking(old), new: booking(new) }
}

fn change<T>(old: T, new: T) -> Option<Change<T>> {
    Some(Change { old, new })
}

fn unenrolled(reason: UnenrolReason) -> EnrolmentEvent {
    EnrolmentEvent::Unenrolled { user_enrolment_id: UE, user_id: USER, course_id: COURSE, reason }
}

fn orphaned_history() -> Vec<EnrolmentEvent> {
    vec![enrolled(1000, 2000, false), unenrolled(UnenrolReason::UserDeleted)]
}

fn closed_history() -> Vec<EnrolmentEvent> {
    vec![enrolled(1000, 2000, false), unenrolled(UnenrolReason::Semco)]
}

fn live_state(timestart: i64, timeend: i64, suspended: bool) -> EnrolmentState {
    EnrolmentState::Live(LiveEnrolment {
        instance_id: INSTANCE,
        user_enrolment_id: UE,
        user_id: USER,
        course_id: COURSE,
        booking_id: booking(BOOKING),
        period: period(timestart, timeend),
        suspended,
        role_id: ROLE,
    })
}

/// `ledger_record_course_completion` as sent; `record()` is a valid one without a grade.
#[derive(Clone)]
struct Record {
    user_exists: bool,
    course_exists: bool,
    timecompleted: i64,
    grade: GradeInput,
}

fn record() -> Record {
    Record { user_exists: true, course_exists: true, timecompleted: 1_700_003_600, grade: GradeInput::default() }
}

impl From<Record> for CompletionCommand {
    fn from(r: Record) -> Self {
        CompletionCommand::Record {
            user_id: USER,
            user_exists: r.user_exists,
            course_id: COURSE,
            course_exists: r.course_exists,
            timecompleted: r.timecompleted,
            grade: r.grade,
        }
    }
}

fn record_with(change: impl FnOnce(&mut Record)) -> CompletionCommand {
    let mut r = record();
    change(&mut r);
    r.into()
}

fn target() -> ResetTarget {
    ResetTarget {
        user_enrolment_id: UE,
        user_id: USER,
        course_id: COURSE,
        booking_id: booking(BOOKING),
        user_exists: true,
    }
}

/// `enrol_semco_reset_course_completion` as the writer hands it in; `reset()` passes every check.
#[derive(Clone)]
struct Reset {
    plugin_enabled: bool,
    requested_id: i64,
    target: Option<ResetTarget>,
    recompletion: RecompletionFacts,
}

fn reset() -> Reset {
    Reset { plugin_enabled: true, requested_id: REQUESTED, target: Some(target()), recompletion: on_demand() }
}

impl From<Reset> for CompletionCommand {
    fn from(r: Reset) -> Self {
        CompletionCommand::Reset {
            plugin_enabled: r.plugin_enabled,
            requested_id: r.requested_id,
            target: r.target,
            recompletion: r.recompletion,
        }
    }
}

fn reset_with(change: impl FnOnce(&mut Reset)) -> CompletionCommand {
    let mut r = reset();
    change(&mut r);
    r.into()
}

fn grade(finalgrade: f64, grademin: f64, grademax: f64, gradepass: f64) -> Grade {
    let value = |v| GradeValue::new(Column::GradeFinalgrade, v).expect("a numeric(10,5) grade");
    Grade {
        finalgrade: value(finalgrade),
        grademin: value(grademin),
        grademax: value(grademax),
        gradepass: value(gradepass),
    }
}

fn completion(timecompleted: i64, grade: Option<Grade>) -> CourseCompletion {
    CourseCompletion { timecompleted, grade }
}

fn recorded(completion: CourseCompletion) -> CompletionEvent {
    CompletionEvent::CompletionRecorded { user_id: USER, course_id: COURSE, completion }
}

fn completion_reset(archived: Option<CourseCompletion>) -> CompletionEvent {
    CompletionEvent::CompletionReset { user_id: USER, course_id: COURSE, user_enrolment_id: UE, archived }
}

fn set_type(recompletion_type: &str) -> SetRecompletionType {
    SetRecompletionType { course_id: COURSE, course_exists: true, recompletion_type: recompletion_type.to_owned() }
}

fn type_set(old: RecompletionType, new: RecompletionType) -> CourseEvent {
    CourseEvent::RecompletionTypeSet { course_id: COURSE, old, new }
}

/// The roles of a fresh Moodle: 1 manager … 5 student … 8 frontpage.
fn known_roles() -> Vec<RoleId> {
    (1..=8).map(RoleId).collect()
}

fn set_config(name: &str, value: &str) -> SetConfig {
    SetConfig { name: name.to_owned(), value: value.to_owned(), known_roles: known_roles() }
}

fn config_changed(name: &str, old: &str, new: &str) -> ConfigEvent {
    ConfigEvent::ConfigChanged { name: name.to_owned(), old: old.to_owned(), new: new.to_owned() }
}

fn invalid_setting(name: &str, value: &str) -> DomainError {
    DomainError::InvalidSettingValue { name: name.to_owned(), value: value.to_owned() }
}

// =============================================================================================
// Enrolment: enrol_semco_enrol_user (§3.1)
// =============================================================================================

#[test]
fn enrol_with_all_checks_passing_emits_enrolled() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1000;
            c.timeend = 2000;
        }))
        .then_events(vec![enrolled(1000, 2000, false)]);
}

#[test]
fn enrol_opens_a_live_enrolment() {
    let state = given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1000;
            c.timeend = 2000;
        }))
        .then_events(vec![enrolled(1000, 2000, false)]);
    assert_eq!(state, live_state(1000, 2000, false));
}

#[test]
fn enrol_with_suspend_creates_a_suspended_enrolment() {
    let state =
        given::<Enrolment>(vec![]).when(enrol_with(|c| c.suspend = true)).then_events(vec![enrolled(0, 0, true)]);
    assert_eq!(state, live_state(0, 0, true));
}

#[test]
fn enrol_records_the_role_ids_and_sortorder_handed_in() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.role_id = RoleId(3);
            c.new_instance_id = InstanceId(70);
            c.new_user_enrolment_id = UserEnrolmentId(130);
            c.sortorder = 0;
        }))
        .then_events(vec![EnrolmentEvent::Enrolled {
            instance_id: InstanceId(70),
            user_enrolment_id: UserEnrolmentId(130),
            user_id: USER,
            course_id: COURSE,
            booking_id: booking(BOOKING),
            timestart: 0,
            timeend: 0,
            suspended: false,
            role_id: RoleId(3),
            sortorder: 0,
        }]);
}

#[test]
#[should_panic(expected = "an enrol opens a new stream")]
fn enrol_on_a_used_stream_is_a_programming_error() {
    let _ = Enrolment::handle_command(&live_state(1000, 2000, false), EnrolmentCommand::Enrol(enrol_cmd()));
}

#[test]
fn enrol_fails_when_plugin_disabled() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.plugin_enabled = false)).then_error(DomainError::PluginNotEnabled);
}

#[test]
fn enrol_fails_when_course_does_not_exist() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| c.course_exists = false))
        .then_error(DomainError::CourseNotExist(COURSE));
}

#[test]
fn enrol_fails_when_user_does_not_exist() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.user_exists = false)).then_error(DomainError::UserNotExist(USER));
}

#[test]
fn enrol_fails_on_empty_booking_id() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| c.booking_id = String::new()))
        .then_error(DomainError::BookingIdEmpty);
}

#[test]
fn enrol_treats_booking_id_zero_as_empty() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.booking_id = "0".into())).then_error(DomainError::BookingIdEmpty);
}

#[test]
fn enrol_accepts_booking_ids_php_empty_does_not_consider_empty() {
    for raw in ["00", "0.0", " ", "false"] {
        given::<Enrolment>(vec![]).when(enrol_with(|c| c.booking_id = raw.into())).then_events(vec![
            EnrolmentEvent::Enrolled {
                instance_id: INSTANCE,
                user_enrolment_id: UE,
                user_id: USER,
                course_id: COURSE,
                booking_id: booking(raw),
                timestart: 0,
                timeend: 0,
                suspended: false,
                role_id: ROLE,
                sortorder: SORTORDER,
            },
        ]);
    }
}

#[test]
fn enrol_fails_on_taken_booking_id() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| c.booking_id_taken = true))
        .then_error(DomainError::BookingIdDuplicate(BOOKING.into()));
}

#[test]
fn enrol_fails_on_negative_timestart() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.timestart = -1)).then_error(DomainError::TimestartInvalid);
}

#[test]
fn enrol_fails_on_negative_timeend() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.timeend = -1)).then_error(DomainError::TimeendInvalid);
}

#[test]
fn enrol_fails_when_timestart_is_after_timeend() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 2001;
            c.timeend = 2000;
        }))
        .then_error(DomainError::TimestartEndOrder);
}

#[test]
fn enrol_accepts_equal_timestart_and_timeend() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 2000;
            c.timeend = 2000;
        }))
        .then_events(vec![enrolled(2000, 2000, false)]);
}

#[test]
fn enrol_order_check_ignores_an_unbounded_side() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.timestart = 5000)).then_events(vec![enrolled(5000, 0, false)]);
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.timeend = 5000)).then_events(vec![enrolled(0, 5000, false)]);
}

#[test]
fn enrol_fails_when_period_overlaps_another_enrolment() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1000;
            c.timeend = 2000;
            c.other_periods = vec![period(1500, 2500)];
        }))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn enrol_fails_when_any_of_several_other_periods_overlaps() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1000;
            c.timeend = 2000;
            c.other_periods = vec![period(3000, 4000), period(100, 200), period(1800, 0)];
        }))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn enrol_accepts_a_period_disjoint_from_the_others() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1000;
            c.timeend = 2000;
            c.other_periods = vec![period(3000, 4000), period(100, 200)];
        }))
        .then_events(vec![enrolled(1000, 2000, false)]);
}

#[test]
fn enrol_unbounded_period_conflicts_with_any_other_enrolment() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| c.other_periods = vec![period(100, 200)]))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn enrol_touching_periods_conflict_under_enrol_semco_rule() {
    // Existing ends when the new one starts, and existing starts when the new one ends.
    for other in [period(500, 1000), period(2000, 3000)] {
        given::<Enrolment>(vec![])
            .when(enrol_with(|c| {
                c.timestart = 1000;
                c.timeend = 2000;
                c.other_periods = vec![other];
                c.overlap_rule = OverlapRule::EnrolSemco;
            }))
            .then_error(DomainError::BookingOverlap);
    }
}

#[test]
fn enrol_touching_periods_do_not_conflict_under_strict_rule() {
    for other in [period(500, 1000), period(2000, 3000)] {
        given::<Enrolment>(vec![])
            .when(enrol_with(|c| {
                c.timestart = 1000;
                c.timeend = 2000;
                c.other_periods = vec![other];
                c.overlap_rule = OverlapRule::Strict;
            }))
            .then_events(vec![enrolled(1000, 2000, false)]);
    }
}

#[test]
fn enrol_strict_rule_still_rejects_a_real_overlap() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1000;
            c.timeend = 2000;
            c.other_periods = vec![period(1999, 3000)];
            c.overlap_rule = OverlapRule::Strict;
        }))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn enrol_replicates_the_enrol_semco_gap_and_strict_closes_it() {
    // Open-ended new period starting inside a bounded existing one (§3.7 known gap).
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1500;
            c.other_periods = vec![period(1000, 2000)];
        }))
        .then_events(vec![enrolled(1500, 0, false)]);
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 1500;
            c.other_periods = vec![period(1000, 2000)];
            c.overlap_rule = OverlapRule::Strict;
        }))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn enrol_requiring_recompletion_fails_when_recompletion_unavailable() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.require_recompletion = true;
            c.recompletion = recompletion(false, RecompletionType::OnDemand);
        }))
        .then_error(DomainError::RecompletionNotExpectable);
}

#[test]
fn enrol_requiring_recompletion_fails_when_course_recompletion_disabled() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.require_recompletion = true;
            c.recompletion = recompletion(true, RecompletionType::Disabled);
        }))
        .then_error(DomainError::RecompletionNotEnabled(COURSE));
}

#[test]
fn enrol_requiring_recompletion_fails_when_course_recompletion_not_on_demand() {
    for course_type in [RecompletionType::Period, RecompletionType::Schedule] {
        given::<Enrolment>(vec![])
            .when(enrol_with(|c| {
                c.require_recompletion = true;
                c.recompletion = recompletion(true, course_type);
            }))
            .then_error(DomainError::RecompletionNotOnDemand(COURSE));
    }
}

#[test]
fn enrol_requiring_recompletion_succeeds_when_course_is_on_demand() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.require_recompletion = true;
            c.recompletion = on_demand();
        }))
        .then_events(vec![enrolled(0, 0, false)]);
}

#[test]
fn enrol_without_requirerecompletion_skips_recompletion_checks() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.require_recompletion = false;
            c.recompletion = recompletion(false, RecompletionType::Disabled);
        }))
        .then_events(vec![enrolled(0, 0, false)]);
}

// ----- enrol: which error wins -----

#[test]
fn enrol_plugin_disabled_beats_course_missing() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.plugin_enabled = false;
            c.course_exists = false;
        }))
        .then_error(DomainError::PluginNotEnabled);
}

#[test]
fn enrol_course_missing_beats_user_missing() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.course_exists = false;
            c.user_exists = false;
        }))
        .then_error(DomainError::CourseNotExist(COURSE));
}

#[test]
fn enrol_user_missing_beats_empty_booking_id() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.user_exists = false;
            c.booking_id = String::new();
        }))
        .then_error(DomainError::UserNotExist(USER));
}

#[test]
fn enrol_empty_booking_id_beats_duplicate() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.booking_id = "0".into();
            c.booking_id_taken = true;
        }))
        .then_error(DomainError::BookingIdEmpty);
}

#[test]
fn enrol_duplicate_beats_negative_timestart() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.booking_id_taken = true;
            c.timestart = -1;
        }))
        .then_error(DomainError::BookingIdDuplicate(BOOKING.into()));
}

#[test]
fn enrol_negative_timestart_beats_negative_timeend() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = -1;
            c.timeend = -1;
        }))
        .then_error(DomainError::TimestartInvalid);
}

#[test]
fn enrol_negative_timeend_beats_order() {
    // The order check needs both times > 0, so a negative end can never also break it: the
    // pair reports the invalid end, never the order.
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 5000;
            c.timeend = -1;
        }))
        .then_error(DomainError::TimeendInvalid);
}

#[test]
fn enrol_order_beats_overlap() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.timestart = 3000;
            c.timeend = 2000;
            c.other_periods = vec![period(0, 0)];
        }))
        .then_error(DomainError::TimestartEndOrder);
}

#[test]
fn enrol_overlap_beats_recompletion_checks() {
    for facts in [
        recompletion(false, RecompletionType::OnDemand),
        recompletion(true, RecompletionType::Disabled),
        recompletion(true, RecompletionType::Period),
    ] {
        given::<Enrolment>(vec![])
            .when(enrol_with(|c| {
                c.other_periods = vec![period(0, 0)];
                c.require_recompletion = true;
                c.recompletion = facts;
            }))
            .then_error(DomainError::BookingOverlap);
    }
}

#[test]
fn enrol_recompletion_unavailable_beats_course_recompletion_disabled() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.require_recompletion = true;
            c.recompletion = recompletion(false, RecompletionType::Disabled);
        }))
        .then_error(DomainError::RecompletionNotExpectable);
}

/// Every rule broken at once; repairing them one at a time must reveal the errors in the
/// plugin's order (§3.1 steps 1–13).
#[test]
fn enrol_reports_errors_in_the_plugins_order() {
    let mut cmd = EnrolUser {
        plugin_enabled: false,
        course_exists: false,
        user_exists: false,
        booking_id: "0".into(),
        booking_id_taken: true,
        timestart: -1,
        timeend: -1,
        other_periods: vec![period(0, 0)],
        require_recompletion: true,
        recompletion: recompletion(false, RecompletionType::Disabled),
        ..enrol_cmd()
    };
    type Repair = fn(&mut EnrolUser);
    let ladder: Vec<(DomainError, Repair)> = vec![
        (DomainError::PluginNotEnabled, |c| c.plugin_enabled = true),
        (DomainError::CourseNotExist(COURSE), |c| c.course_exists = true),
        (DomainError::UserNotExist(USER), |c| c.user_exists = true),
        (DomainError::BookingIdEmpty, |c| c.booking_id = BOOKING.into()),
        (DomainError::BookingIdDuplicate(BOOKING.into()), |c| c.booking_id_taken = false),
        (DomainError::TimestartInvalid, |c| c.timestart = 3000),
        (DomainError::TimeendInvalid, |c| c.timeend = 2000),
        (DomainError::TimestartEndOrder, |c| c.timestart = 1000),
        (DomainError::BookingOverlap, |c| c.other_periods.clear()),
        (DomainError::RecompletionNotExpectable, |c| c.recompletion.available = true),
        (DomainError::RecompletionNotEnabled(COURSE), |c| c.recompletion.course_type = RecompletionType::Schedule),
        (DomainError::RecompletionNotOnDemand(COURSE), |c| c.recompletion.course_type = RecompletionType::OnDemand),
    ];
    for (expected, repair) in ladder {
        given::<Enrolment>(vec![]).when(EnrolmentCommand::Enrol(cmd.clone())).then_error(expected);
        repair(&mut cmd);
    }
    given::<Enrolment>(vec![]).when(EnrolmentCommand::Enrol(cmd)).then_events(vec![enrolled(1000, 2000, false)]);
}

// =============================================================================================
// Enrolment: enrol_semco_edit_enrolment (§3.3)
// =============================================================================================

#[test]
fn edit_of_both_times_emits_both_changes() {
    let state = given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(1100);
            c.timeend = Some(2100);
        }))
        .then_events(vec![edited(change(1000, 1100), change(2000, 2100), None)]);
    assert_eq!(state, live_state(1100, 2100, false));
}

#[test]
fn edit_emits_only_the_fields_that_change() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(1000);
            c.timeend = Some(2100);
        }))
        .then_events(vec![edited(None, change(2000, 2100), None)]);
}

#[test]
fn edit_of_only_timestart_keeps_the_stored_timeend() {
    let state = given::<Enrolment>(live_history())
        .when(edit_with(|c| c.timestart = Some(1500)))
        .then_events(vec![edited(change(1000, 1500), None, None)]);
    assert_eq!(state, live_state(1500, 2000, false));
}

#[test]
fn edit_of_a_time_to_zero_makes_that_side_unbounded() {
    let state = given::<Enrolment>(live_history()).when(edit_with(|c| c.timeend = Some(0))).then_events(vec![edited(
        None,
        change(2000, 0),
        None,
    )]);
    assert_eq!(state, live_state(1000, 0, false));
}

#[test]
fn edit_with_suspend_true_suspends() {
    let state = given::<Enrolment>(live_history())
        .when(edit_with(|c| c.suspend = Some(true)))
        .then_events(vec![edited(None, None, change(false, true))]);
    assert_eq!(state, live_state(1000, 2000, true));
}

#[test]
fn edit_with_suspend_false_reactivates() {
    let state = given::<Enrolment>(suspended_history())
        .when(edit_with(|c| c.suspend = Some(false)))
        .then_events(vec![edited(None, None, change(true, false))]);
    assert_eq!(state, live_state(1000, 2000, false));
}

#[test]
fn edit_of_only_dates_reactivates_a_suspended_enrolment() {
    // Plugin quirk: status = suspend ? SUSPENDED : ACTIVE, and an absent suspend is "false".
    let state = given::<Enrolment>(suspended_history())
        .when(edit_with(|c| c.timeend = Some(2500)))
        .then_events(vec![edited(None, change(2000, 2500), change(true, false))]);
    assert_eq!(state, live_state(1000, 2500, false));
}

#[test]
fn edit_resending_the_stored_dates_still_reactivates_a_suspended_enrolment() {
    given::<Enrolment>(suspended_history())
        .when(edit_with(|c| {
            c.timestart = Some(1000);
            c.timeend = Some(2000);
        }))
        .then_events(vec![edited(None, None, change(true, false))]);
}

#[test]
fn edit_of_dates_with_suspend_true_keeps_the_enrolment_suspended() {
    given::<Enrolment>(suspended_history())
        .when(edit_with(|c| {
            c.timestart = Some(1100);
            c.suspend = Some(true);
        }))
        .then_events(vec![edited(change(1000, 1100), None, None)]);
}

#[test]
fn edit_with_identical_values_emits_nothing() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(1000);
            c.timeend = Some(2000);
            c.suspend = Some(false);
        }))
        .then_events(vec![]);
    given::<Enrolment>(suspended_history()).when(edit_with(|c| c.suspend = Some(true))).then_events(vec![]);
}

#[test]
fn edit_without_any_parameter_emits_nothing() {
    given::<Enrolment>(suspended_history()).when(EnrolmentCommand::Edit(edit_cmd())).then_events(vec![]);
}

#[test]
fn edit_of_booking_id_emits_booking_id_changed() {
    let state = given::<Enrolment>(live_history())
        .when(edit_with(|c| c.booking_id = Some("B-2002".into())))
        .then_events(vec![booking_changed(BOOKING, "B-2002")]);
    let live = state.live().expect("still live");
    assert_eq!(live.booking_id, booking("B-2002"));
}

#[test]
fn edit_of_only_booking_id_leaves_a_suspended_enrolment_suspended() {
    let state = given::<Enrolment>(suspended_history())
        .when(edit_with(|c| c.booking_id = Some("B-2002".into())))
        .then_events(vec![booking_changed(BOOKING, "B-2002")]);
    assert_eq!(state.live().map(|l| l.suspended), Some(true));
}

#[test]
fn edit_of_dates_and_booking_id_emits_edit_then_booking_id_change() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.booking_id = Some("B-2002".into());
            c.timestart = Some(1100);
            c.suspend = Some(true);
        }))
        .then_events(vec![edited(change(1000, 1100), None, change(false, true)), booking_changed(BOOKING, "B-2002")]);
}

#[test]
fn edit_resending_own_booking_id_fails_with_must_change() {
    // The shell reports the ID as taken because this very instance holds it.
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.booking_id = Some(BOOKING.into());
            c.booking_id_taken = true;
        }))
        .then_error(DomainError::BookingIdDuplicateMustChange(BOOKING.into()));
}

#[test]
fn edit_to_a_booking_id_taken_elsewhere_fails_with_must_change() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.booking_id = Some("B-9999".into());
            c.booking_id_taken = true;
        }))
        .then_error(DomainError::BookingIdDuplicateMustChange("B-9999".into()));
}

#[test]
fn edit_fails_on_empty_booking_id() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| c.booking_id = Some(String::new())))
        .then_error(DomainError::BookingIdEmpty);
}

#[test]
fn edit_treats_booking_id_zero_as_empty() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| c.booking_id = Some("0".into())))
        .then_error(DomainError::BookingIdEmpty);
}

#[test]
fn edit_fails_on_negative_timestart() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| c.timestart = Some(-1)))
        .then_error(DomainError::TimestartInvalid);
}

#[test]
fn edit_fails_on_negative_timeend() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| c.timeend = Some(-1)))
        .then_error(DomainError::TimeendInvalid);
}

#[test]
fn edit_fails_when_given_timestart_is_after_given_timeend() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(3000);
            c.timeend = Some(2500);
        }))
        .then_error(DomainError::TimestartEndOrder);
}

#[test]
fn edit_accepts_equal_timestart_and_timeend() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(1500);
            c.timeend = Some(1500);
        }))
        .then_events(vec![edited(change(1000, 1500), change(2000, 1500), None)]);
}

#[test]
fn edit_of_only_timeend_does_no_order_check_against_the_stored_timestart() {
    // Stored start 1000 > new end 500: accepted, as in the plugin.
    let state = given::<Enrolment>(live_history())
        .when(edit_with(|c| c.timeend = Some(500)))
        .then_events(vec![edited(None, change(2000, 500), None)]);
    assert_eq!(state, live_state(1000, 500, false));
}

#[test]
fn edit_of_only_timestart_does_no_order_check_against_the_stored_timeend() {
    given::<Enrolment>(live_history()).when(edit_with(|c| c.timestart = Some(9000))).then_events(vec![edited(
        change(1000, 9000),
        None,
        None,
    )]);
}

#[test]
fn edit_fails_when_new_period_overlaps_another_enrolment() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(1000);
            c.timeend = Some(3500);
            c.other_periods = vec![period(3000, 4000)];
        }))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn edit_of_only_suspend_does_no_overlap_check() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.suspend = Some(true);
            c.other_periods = vec![period(0, 0), period(1000, 2000)];
        }))
        .then_events(vec![edited(None, None, change(false, true))]);
}

#[test]
fn edit_of_only_booking_id_does_no_overlap_check() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.booking_id = Some("B-2002".into());
            c.other_periods = vec![period(0, 0)];
        }))
        .then_events(vec![booking_changed(BOOKING, "B-2002")]);
}

#[test]
fn edit_overlap_check_substitutes_the_stored_timestart() {
    // Stored 1000–2000; new end 3500 → checked as 1000–3500, which contains 3000–4000's start.
    // Checked as 0–3500 (no substitution) it would pass: (e>0 ∧ e ≤ E) is 4000 ≤ 3500.
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timeend = Some(3500);
            c.other_periods = vec![period(3000, 4000)];
        }))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn edit_overlap_check_substitutes_the_stored_timestart_when_it_avoids_a_conflict() {
    // Stored start 5000; new end 6000 → checked as 5000–6000, clear of 100–200.
    // Checked as 0–6000 it would conflict (100–200 ends before 6000).
    given::<Enrolment>(vec![enrolled(5000, 5500, false)])
        .when(edit_with(|c| {
            c.timeend = Some(6000);
            c.other_periods = vec![period(100, 200)];
        }))
        .then_events(vec![edited(None, change(5500, 6000), None)]);
}

#[test]
fn edit_overlap_check_substitutes_the_stored_timeend() {
    // Stored 1000–2000; new start 1500 → checked as 1500–2000, clear of 2500–3000.
    // Checked as 1500–open it would conflict (s ≥ S).
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(1500);
            c.other_periods = vec![period(2500, 3000)];
        }))
        .then_events(vec![edited(change(1000, 1500), None, None)]);
}

#[test]
fn edit_touching_periods_conflict_under_enrol_semco_but_not_strict() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timeend = Some(2500);
            c.other_periods = vec![period(2500, 3000)];
            c.overlap_rule = OverlapRule::EnrolSemco;
        }))
        .then_error(DomainError::BookingOverlap);
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timeend = Some(2500);
            c.other_periods = vec![period(2500, 3000)];
            c.overlap_rule = OverlapRule::Strict;
        }))
        .then_events(vec![edited(None, change(2000, 2500), None)]);
}

#[test]
fn edit_fails_when_plugin_disabled() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| c.plugin_enabled = false))
        .then_error(DomainError::PluginNotEnabled);
}

#[test]
fn edit_of_an_unknown_enrolment_fails_with_the_requested_id() {
    given::<Enrolment>(vec![])
        .when(edit_with(|c| {
            c.requested_id = 99;
            c.suspend = Some(true);
        }))
        .then_error(DomainError::EnrolNoUserInstance(99));
}

#[test]
fn edit_of_an_unenrolled_enrolment_fails_with_enrolnouserinstance() {
    given::<Enrolment>(closed_history())
        .when(edit_with(|c| c.suspend = Some(true)))
        .then_error(DomainError::EnrolNoUserInstance(REQUESTED));
}

#[test]
fn edit_of_an_orphaned_instance_fails_with_enrolnouserinstance() {
    given::<Enrolment>(orphaned_history())
        .when(edit_with(|c| c.suspend = Some(true)))
        .then_error(DomainError::EnrolNoUserInstance(REQUESTED));
}

#[test]
fn edit_fails_when_user_does_not_exist() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| c.user_exists = false))
        .then_error(DomainError::UserNotExist(USER));
}

// ----- edit: which error wins -----

#[test]
fn edit_plugin_disabled_beats_enrolnouserinstance() {
    given::<Enrolment>(vec![]).when(edit_with(|c| c.plugin_enabled = false)).then_error(DomainError::PluginNotEnabled);
}

#[test]
fn edit_enrolnouserinstance_beats_user_missing() {
    given::<Enrolment>(vec![])
        .when(edit_with(|c| c.user_exists = false))
        .then_error(DomainError::EnrolNoUserInstance(REQUESTED));
}

#[test]
fn edit_user_missing_beats_empty_booking_id() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.user_exists = false;
            c.booking_id = Some(String::new());
        }))
        .then_error(DomainError::UserNotExist(USER));
}

#[test]
fn edit_empty_booking_id_beats_must_change() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.booking_id = Some("0".into());
            c.booking_id_taken = true;
        }))
        .then_error(DomainError::BookingIdEmpty);
}

#[test]
fn edit_must_change_beats_negative_timestart() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.booking_id = Some(BOOKING.into());
            c.booking_id_taken = true;
            c.timestart = Some(-1);
        }))
        .then_error(DomainError::BookingIdDuplicateMustChange(BOOKING.into()));
}

#[test]
fn edit_negative_timestart_beats_negative_timeend() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(-1);
            c.timeend = Some(-1);
        }))
        .then_error(DomainError::TimestartInvalid);
}

#[test]
fn edit_negative_timeend_beats_order() {
    // As for enrol: with a negative end the order check cannot apply.
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(5000);
            c.timeend = Some(-1);
        }))
        .then_error(DomainError::TimeendInvalid);
}

#[test]
fn edit_order_beats_overlap() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| {
            c.timestart = Some(3000);
            c.timeend = Some(2500);
            c.other_periods = vec![period(0, 0)];
        }))
        .then_error(DomainError::TimestartEndOrder);
}

/// Every rule broken at once; repairing them one at a time must reveal the errors in the
/// plugin's order (§3.3).
#[test]
fn edit_reports_errors_in_the_plugins_order() {
    let mut history: Vec<EnrolmentEvent> = vec![];
    let mut cmd = EditEnrolment {
        plugin_enabled: false,
        user_exists: false,
        booking_id: Some("0".into()),
        booking_id_taken: true,
        timestart: Some(-1),
        timeend: Some(-1),
        other_periods: vec![period(0, 0)],
        ..edit_cmd()
    };
    type Repair = fn(&mut EditEnrolment, &mut Vec<EnrolmentEvent>);
    let ladder: Vec<(DomainError, Repair)> = vec![
        (DomainError::PluginNotEnabled, |c, _| c.plugin_enabled = true),
        (DomainError::EnrolNoUserInstance(REQUESTED), |_, h| *h = live_history()),
        (DomainError::UserNotExist(USER), |c, _| c.user_exists = true),
        (DomainError::BookingIdEmpty, |c, _| c.booking_id = Some(BOOKING.into())),
        (DomainError::BookingIdDuplicateMustChange(BOOKING.into()), |c, _| {
            c.booking_id = Some("B-2002".into());
            c.booking_id_taken = false;
        }),
        (DomainError::TimestartInvalid, |c, _| c.timestart = Some(3000)),
        (DomainError::TimeendInvalid, |c, _| c.timeend = Some(2500)),
        (DomainError::TimestartEndOrder, |c, _| c.timestart = Some(1500)),
        (DomainError::BookingOverlap, |c, _| c.other_periods.clear()),
    ];
    for (expected, repair) in ladder {
        given::<Enrolment>(history.clone()).when(EnrolmentCommand::Edit(cmd.clone())).then_error(expected);
        repair(&mut cmd, &mut history);
    }
    given::<Enrolment>(history)
        .when(EnrolmentCommand::Edit(cmd))
        .then_events(vec![edited(change(1000, 1500), change(2000, 2500), None), booking_changed(BOOKING, "B-2002")]);
}

// =============================================================================================
// Enrolment: enrol_semco_unenrol_user (§3.2), user deletion and orphan clean-up (§4.2, §4.3)
// =============================================================================================

#[test]
fn unenrol_emits_unenrolled_with_reason_semco_and_closes_the_stream() {
    let state =
        given::<Enrolment>(live_history()).when(unenrol_cmd()).then_events(vec![unenrolled(UnenrolReason::Semco)]);
    assert_eq!(state, EnrolmentState::Closed);
}

#[test]
fn unenrol_of_a_suspended_enrolment_is_allowed() {
    given::<Enrolment>(suspended_history()).when(unenrol_cmd()).then_events(vec![unenrolled(UnenrolReason::Semco)]);
}

#[test]
fn second_unenrol_fails_with_enrolnouserinstance() {
    given::<Enrolment>(closed_history()).when(unenrol_cmd()).then_error(DomainError::EnrolNoUserInstance(REQUESTED));
}

#[test]
fn unenrol_of_an_unknown_enrolment_fails_with_the_requested_id() {
    given::<Enrolment>(vec![]).when(unenrol(true, 99, true)).then_error(DomainError::EnrolNoUserInstance(99));
}

#[test]
fn unenrol_of_an_orphaned_instance_fails_with_enrolnouserinstance() {
    given::<Enrolment>(orphaned_history()).when(unenrol_cmd()).then_error(DomainError::EnrolNoUserInstance(REQUESTED));
}

#[test]
fn unenrol_fails_when_plugin_disabled() {
    given::<Enrolment>(live_history()).when(unenrol(false, REQUESTED, true)).then_error(DomainError::PluginNotEnabled);
}

#[test]
fn unenrol_fails_when_user_does_not_exist_naming_the_enrolments_user() {
    given::<Enrolment>(live_history())
        .when(unenrol(true, REQUESTED, false))
        .then_error(DomainError::UserNotExist(USER));
}

#[test]
fn unenrol_plugin_disabled_beats_enrolnouserinstance() {
    given::<Enrolment>(vec![]).when(unenrol(false, REQUESTED, false)).then_error(DomainError::PluginNotEnabled);
}

#[test]
fn unenrol_enrolnouserinstance_beats_user_missing() {
    given::<Enrolment>(vec![])
        .when(unenrol(true, REQUESTED, false))
        .then_error(DomainError::EnrolNoUserInstance(REQUESTED));
}

#[test]
fn unenrol_deleted_user_emits_reason_user_deleted_and_orphans_the_instance() {
    let state = given::<Enrolment>(live_history())
        .when(EnrolmentCommand::UnenrolDeletedUser)
        .then_events(vec![unenrolled(UnenrolReason::UserDeleted)]);
    assert_eq!(
        state,
        EnrolmentState::Orphaned { instance_id: INSTANCE, course_id: COURSE, booking_id: booking(BOOKING) }
    );
}

#[test]
fn unenrol_deleted_user_on_a_closed_stream_emits_nothing() {
    given::<Enrolment>(closed_history()).when(EnrolmentCommand::UnenrolDeletedUser).then_events(vec![]);
}

#[test]
fn unenrol_deleted_user_on_an_orphaned_or_new_stream_emits_nothing() {
    given::<Enrolment>(orphaned_history()).when(EnrolmentCommand::UnenrolDeletedUser).then_events(vec![]);
    given::<Enrolment>(vec![]).when(EnrolmentCommand::UnenrolDeletedUser).then_events(vec![]);
}

#[test]
fn remove_orphan_deletes_the_instance_and_closes_the_stream() {
    let state = given::<Enrolment>(orphaned_history()).when(EnrolmentCommand::RemoveOrphan).then_events(vec![
        EnrolmentEvent::InstanceDeleted {
            instance_id: INSTANCE,
            course_id: COURSE,
            reason: UnenrolReason::OrphanCleanup,
        },
    ]);
    assert_eq!(state, EnrolmentState::Closed);
}

#[test]
fn remove_orphan_of_a_live_enrolment_emits_nothing() {
    given::<Enrolment>(live_history()).when(EnrolmentCommand::RemoveOrphan).then_events(vec![]);
}

#[test]
fn remove_orphan_of_a_new_or_closed_stream_emits_nothing() {
    given::<Enrolment>(vec![]).when(EnrolmentCommand::RemoveOrphan).then_events(vec![]);
    given::<Enrolment>(closed_history()).when(EnrolmentCommand::RemoveOrphan).then_events(vec![]);
}

// ----- enrolment: the fold -----

#[test]
fn enrolment_history_folds_into_the_current_enrolment() {
    let state = given::<Enrolment>(vec![
        enrolled(1000, 2000, false),
        edited(change(1000, 1100), None, change(false, true)),
        booking_changed(BOOKING, "B-2002"),
        edited(None, change(2000, 0), None),
    ])
    .state;
    assert_eq!(
        state,
        EnrolmentState::Live(LiveEnrolment {
            instance_id: INSTANCE,
            user_enrolment_id: UE,
            user_id: USER,
            course_id: COURSE,
            booking_id: booking("B-2002"),
            period: period(1100, 0),
            suspended: true,
            role_id: ROLE,
        })
    );
}

#[test]
fn unenrolment_for_a_deleted_course_closes_the_stream() {
    let state = given::<Enrolment>(vec![enrolled(0, 0, false), unenrolled(UnenrolReason::CourseDeleted)]).state;
    assert_eq!(state, EnrolmentState::Closed);
}

#[test]
#[should_panic(expected = "the rules decided an impossible event: Enrolled cannot follow a live enrolment stream")]
fn an_event_that_cannot_follow_the_state_is_a_corrupt_log() {
    let _ = given::<Enrolment>(vec![enrolled(0, 0, false), enrolled(0, 0, false)]);
}

// =============================================================================================
// Completion: ledger_record_course_completion (WS-CONTRACT §3.3, §7)
// =============================================================================================

#[test]
fn record_without_finalgrade_has_no_grade() {
    let state =
        given::<Completion>(vec![]).when(record().into()).then_events(vec![recorded(completion(1_700_003_600, None))]);
    assert_eq!(state.current, Some(completion(1_700_003_600, None)));
}

#[test]
fn record_with_only_finalgrade_defaults_min_0_max_100_pass_0() {
    given::<Completion>(vec![])
        .when(record_with(|r| r.grade.finalgrade = Some(30.0)))
        .then_events(vec![recorded(completion(1_700_003_600, Some(grade(30.0, 0.0, 100.0, 0.0))))]);
}

#[test]
fn record_keeps_the_grade_bounds_that_are_sent() {
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.grade =
                GradeInput { finalgrade: Some(7.5), grademin: Some(1.0), grademax: Some(10.0), gradepass: Some(5.0) }
        }))
        .then_events(vec![recorded(completion(1_700_003_600, Some(grade(7.5, 1.0, 10.0, 5.0))))]);
}

#[test]
fn record_defaults_only_the_missing_grade_bounds() {
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.grade = GradeInput { finalgrade: Some(40.0), gradepass: Some(30.0), ..GradeInput::default() }
        }))
        .then_events(vec![recorded(completion(1_700_003_600, Some(grade(40.0, 0.0, 100.0, 30.0))))]);
}

#[test]
fn record_with_grade_bounds_but_no_finalgrade_has_no_grade() {
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.grade = GradeInput { finalgrade: None, grademin: Some(0.0), grademax: Some(10.0), gradepass: Some(5.0) }
        }))
        .then_events(vec![recorded(completion(1_700_003_600, None))]);
}

#[test]
fn record_rejects_timecompleted_zero_or_negative() {
    for timecompleted in [0, -1] {
        given::<Completion>(vec![])
            .when(record_with(|r| r.timecompleted = timecompleted))
            .then_error(DomainError::TimeCompletedInvalid);
    }
}

#[test]
fn record_accepts_timecompleted_one() {
    given::<Completion>(vec![])
        .when(record_with(|r| r.timecompleted = 1))
        .then_events(vec![recorded(completion(1, None))]);
}

#[test]
fn record_fails_when_course_does_not_exist() {
    given::<Completion>(vec![])
        .when(record_with(|r| r.course_exists = false))
        .then_error(DomainError::CourseNotExist(COURSE));
}

#[test]
fn record_fails_when_user_does_not_exist() {
    given::<Completion>(vec![])
        .when(record_with(|r| r.user_exists = false))
        .then_error(DomainError::UserNotExist(USER));
}

#[test]
fn record_course_missing_beats_user_missing() {
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.course_exists = false;
            r.user_exists = false;
        }))
        .then_error(DomainError::CourseNotExist(COURSE));
}

#[test]
fn record_invalid_timecompleted_beats_user_missing() {
    // `timecompleted > 0` is parameter validation (WS-CONTRACT §3.3), which runs before the
    // course and user checks (§7).
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.user_exists = false;
            r.course_exists = false;
            r.timecompleted = 0;
        }))
        .then_error(DomainError::TimeCompletedInvalid);
}

#[test]
fn a_second_record_replaces_the_current_completion() {
    let first = completion(1000, None);
    let second = completion(2000, Some(grade(80.0, 0.0, 100.0, 0.0)));
    let state = given::<Completion>(vec![recorded(first)])
        .when(record_with(|r| {
            r.timecompleted = 2000;
            r.grade.finalgrade = Some(80.0);
        }))
        .then_events(vec![recorded(second)]);
    assert_eq!(state, CompletionState { current: Some(second) });
}

#[test]
fn record_is_accepted_after_a_reset() {
    let state =
        given::<Completion>(vec![recorded(completion(1000, None)), completion_reset(Some(completion(1000, None)))])
            .when(record_with(|r| r.timecompleted = 3000))
            .then_events(vec![recorded(completion(3000, None))]);
    assert_eq!(state.current, Some(completion(3000, None)));
}

// =============================================================================================
// Completion: enrol_semco_reset_course_completion (§3.6)
// =============================================================================================

#[test]
fn reset_archives_the_current_completion_and_clears_it() {
    let current = completion(1000, Some(grade(30.0, 0.0, 100.0, 30.0)));
    let state = given::<Completion>(vec![recorded(current)])
        .when(reset().into())
        .then_events(vec![completion_reset(Some(current))]);
    assert_eq!(state, CompletionState { current: None });
}

#[test]
fn reset_without_a_completion_archives_nothing() {
    let state = given::<Completion>(vec![]).when(reset().into()).then_events(vec![completion_reset(None)]);
    assert_eq!(state.current, None);
}

#[test]
fn reset_after_a_reset_archives_nothing() {
    given::<Completion>(vec![recorded(completion(1000, None)), completion_reset(Some(completion(1000, None)))])
        .when(reset().into())
        .then_events(vec![completion_reset(None)]);
}

#[test]
fn reset_archives_the_latest_of_several_records() {
    given::<Completion>(vec![recorded(completion(1000, None)), recorded(completion(2000, None))])
        .when(reset().into())
        .then_events(vec![completion_reset(Some(completion(2000, None)))]);
}

#[test]
fn reset_fails_when_plugin_disabled() {
    given::<Completion>(vec![])
        .when(reset_with(|r| r.plugin_enabled = false))
        .then_error(DomainError::PluginNotEnabled);
}

#[test]
fn reset_fails_when_recompletion_is_not_installed() {
    given::<Completion>(vec![])
        .when(reset_with(|r| r.recompletion.available = false))
        .then_error(DomainError::RecompletionNotInstalled);
}

#[test]
fn reset_of_an_unknown_enrolment_fails_with_the_requested_id() {
    given::<Completion>(vec![])
        .when(reset_with(|r| {
            r.requested_id = 99;
            r.target = None;
        }))
        .then_error(DomainError::EnrolNoUserInstance(99));
}

#[test]
fn reset_fails_when_user_does_not_exist() {
    given::<Completion>(vec![])
        .when(reset_with(|r| r.target = Some(ResetTarget { user_exists: false, ..target() })))
        .then_error(DomainError::UserNotExist(USER));
}

#[test]
fn reset_fails_when_course_recompletion_disabled() {
    given::<Completion>(vec![])
        .when(reset_with(|r| r.recompletion.course_type = RecompletionType::Disabled))
        .then_error(DomainError::RecompletionNotEnabled(COURSE));
}

#[test]
fn reset_fails_when_course_recompletion_not_on_demand() {
    for course_type in [RecompletionType::Period, RecompletionType::Schedule] {
        given::<Completion>(vec![])
            .when(reset_with(|r| r.recompletion.course_type = course_type))
            .then_error(DomainError::RecompletionNotOnDemand(COURSE));
    }
}

// ----- reset: which error wins -----

#[test]
fn reset_plugin_disabled_beats_recompletion_not_installed() {
    given::<Completion>(vec![])
        .when(reset_with(|r| {
            r.plugin_enabled = false;
            r.recompletion.available = false;
        }))
        .then_error(DomainError::PluginNotEnabled);
}

#[test]
fn reset_recompletion_not_installed_beats_the_enrolment_lookup() {
    given::<Completion>(vec![])
        .when(reset_with(|r| {
            r.recompletion.available = false;
            r.target = None;
        }))
        .then_error(DomainError::RecompletionNotInstalled);
}

#[test]
fn reset_enrolnouserinstance_beats_course_recompletion_checks() {
    given::<Completion>(vec![])
        .when(reset_with(|r| {
            r.target = None;
            r.recompletion.course_type = RecompletionType::Disabled;
        }))
        .then_error(DomainError::EnrolNoUserInstance(REQUESTED));
}

#[test]
fn reset_user_missing_beats_recompletion_not_enabled() {
    given::<Completion>(vec![])
        .when(reset_with(|r| {
            r.target = Some(ResetTarget { user_exists: false, ..target() });
            r.recompletion.course_type = RecompletionType::Disabled;
        }))
        .then_error(DomainError::UserNotExist(USER));
}

#[test]
fn reset_user_missing_beats_recompletion_not_on_demand() {
    given::<Completion>(vec![])
        .when(reset_with(|r| {
            r.target = Some(ResetTarget { user_exists: false, ..target() });
            r.recompletion.course_type = RecompletionType::Period;
        }))
        .then_error(DomainError::UserNotExist(USER));
}

/// Every rule broken at once, repaired one at a time (§3.6 order).
#[test]
fn reset_reports_errors_in_the_plugins_order() {
    let mut cmd = Reset {
        plugin_enabled: false,
        requested_id: REQUESTED,
        target: None,
        recompletion: recompletion(false, RecompletionType::Disabled),
    };
    type Repair = fn(&mut Reset);
    let ladder: Vec<(DomainError, Repair)> = vec![
        (DomainError::PluginNotEnabled, |r| r.plugin_enabled = true),
        (DomainError::RecompletionNotInstalled, |r| r.recompletion.available = true),
        (DomainError::EnrolNoUserInstance(REQUESTED), |r| {
            r.target = Some(ResetTarget { user_exists: false, ..target() })
        }),
        (DomainError::UserNotExist(USER), |r| r.target = Some(target())),
        (DomainError::RecompletionNotEnabled(COURSE), |r| r.recompletion.course_type = RecompletionType::Period),
        (DomainError::RecompletionNotOnDemand(COURSE), |r| r.recompletion.course_type = RecompletionType::OnDemand),
    ];
    for (expected, repair) in ladder {
        given::<Completion>(vec![]).when(cmd.clone().into()).then_error(expected);
        repair(&mut cmd);
    }
    given::<Completion>(vec![]).when(cmd.into()).then_events(vec![completion_reset(None)]);
}

// =============================================================================================
// Course: ledger_set_course_recompletion (WS-CONTRACT §3.3)
// =============================================================================================

#[test]
fn set_recompletion_type_emits_old_and_new() {
    let state = given::<Course>(vec![])
        .when(set_type("ondemand"))
        .then_events(vec![type_set(RecompletionType::Disabled, RecompletionType::OnDemand)]);
    assert_eq!(state, CourseState { recompletion_type: RecompletionType::OnDemand });
}

#[test]
fn set_recompletion_type_accepts_every_local_recompletion_type() {
    let history = vec![type_set(RecompletionType::Disabled, RecompletionType::OnDemand)];
    for (raw, new) in [
        ("", RecompletionType::Disabled),
        ("period", RecompletionType::Period),
        ("schedule", RecompletionType::Schedule),
    ] {
        given::<Course>(history.clone())
            .when(set_type(raw))
            .then_events(vec![type_set(RecompletionType::OnDemand, new)]);
    }
}

#[test]
fn set_recompletion_type_to_the_same_type_emits_nothing() {
    given::<Course>(vec![type_set(RecompletionType::Disabled, RecompletionType::Period)])
        .when(set_type("period"))
        .then_events(vec![]);
    given::<Course>(vec![]).when(set_type("")).then_events(vec![]);
}

#[test]
fn set_recompletion_type_rejects_an_unknown_type() {
    for raw in ["foo", "OnDemand", "on demand", "disabled", " period"] {
        given::<Course>(vec![]).when(set_type(raw)).then_error(invalid_setting("recompletiontype", raw));
    }
}

#[test]
fn set_recompletion_type_fails_when_course_does_not_exist() {
    given::<Course>(vec![])
        .when(SetRecompletionType { course_exists: false, ..set_type("ondemand") })
        .then_error(DomainError::CourseNotExist(COURSE));
}

#[test]
fn set_recompletion_invalid_type_beats_course_missing() {
    // The type is a parameter (WS-CONTRACT §3.3): validated before the course check (§7).
    given::<Course>(vec![])
        .when(SetRecompletionType { course_exists: false, ..set_type("foo") })
        .then_error(DomainError::InvalidSettingValue { name: "recompletiontype".into(), value: "foo".into() });
}

#[test]
fn course_history_folds_into_the_latest_type() {
    let state = given::<Course>(vec![
        type_set(RecompletionType::Disabled, RecompletionType::OnDemand),
        type_set(RecompletionType::OnDemand, RecompletionType::Schedule),
    ])
    .state;
    assert_eq!(state.recompletion_type, RecompletionType::Schedule);
}

// =============================================================================================
// Config: ledger_set_config (WS-CONTRACT §3.3)
// =============================================================================================

#[test]
fn config_defaults_are_the_fresh_install_values() {
    let settings = given::<Config>(vec![]).state;
    assert_eq!(settings, Settings::default());
    let values: Vec<_> = SETTING_NAMES.iter().map(|n| settings.get(n).unwrap()).collect();
    assert_eq!(values, ["1", "5", "1", "enrol_semco", "0"]);
    assert_eq!(settings.role, DEFAULT_ROLE);
}

#[test]
fn set_enabled_accepts_0_and_1() {
    let state =
        given::<Config>(vec![]).when(set_config("enabled", "0")).then_events(vec![config_changed("enabled", "1", "0")]);
    assert!(!state.enabled);
    let state = given::<Config>(vec![config_changed("enabled", "1", "0")])
        .when(set_config("enabled", "1"))
        .then_events(vec![config_changed("enabled", "0", "1")]);
    assert!(state.enabled);
}

#[test]
fn set_enabled_rejects_other_values() {
    for value in ["2", "true", "", " 1", "01", "-1"] {
        given::<Config>(vec![]).when(set_config("enabled", value)).then_error(invalid_setting("enabled", value));
    }
}

#[test]
fn set_role_accepts_a_known_role() {
    let state =
        given::<Config>(vec![]).when(set_config("role", "3")).then_events(vec![config_changed("role", "5", "3")]);
    assert_eq!(state.role, RoleId(3));
}

#[test]
fn set_role_rejects_a_role_that_does_not_exist() {
    for value in ["9", "0", "-5"] {
        given::<Config>(vec![]).when(set_config("role", value)).then_error(invalid_setting("role", value));
    }
}

#[test]
fn set_role_rejects_non_canonical_or_non_numeric_text() {
    for value in ["05", "+3", " 3", "3 ", "student", "", "3.0"] {
        given::<Config>(vec![]).when(set_config("role", value)).then_error(invalid_setting("role", value));
    }
}

#[test]
fn set_recompletion_accepts_0_and_rejects_others() {
    let state = given::<Config>(vec![]).when(set_config("recompletion", "0")).then_events(vec![config_changed(
        "recompletion",
        "1",
        "0",
    )]);
    assert!(!state.recompletion);
    for value in ["2", "yes", ""] {
        given::<Config>(vec![])
            .when(set_config("recompletion", value))
            .then_error(invalid_setting("recompletion", value));
    }
}

#[test]
fn set_overlap_rule_accepts_strict_and_rejects_others() {
    let state = given::<Config>(vec![]).when(set_config("overlap_rule", "strict")).then_events(vec![config_changed(
        "overlap_rule",
        "enrol_semco",
        "strict",
    )]);
    assert_eq!(state.overlap_rule, OverlapRule::Strict);
    for value in ["foo", "Strict", "", "enrol-semco"] {
        given::<Config>(vec![])
            .when(set_config("overlap_rule", value))
            .then_error(invalid_setting("overlap_rule", value));
    }
}

#[test]
fn set_allowaccountssameemail_accepts_1_and_rejects_others() {
    let state = given::<Config>(vec![])
        .when(set_config("allowaccountssameemail", "1"))
        .then_events(vec![config_changed("allowaccountssameemail", "0", "1")]);
    assert!(state.allow_accounts_same_email);
    for value in ["2", "on", ""] {
        given::<Config>(vec![])
            .when(set_config("allowaccountssameemail", value))
            .then_error(invalid_setting("allowaccountssameemail", value));
    }
}

#[test]
fn set_config_of_an_unknown_name_fails_with_unknown_setting() {
    for name in ["foo", "Enabled", "", "overlaprule"] {
        given::<Config>(vec![]).when(set_config(name, "1")).then_error(DomainError::UnknownSetting(name.to_owned()));
    }
}

#[test]
fn set_config_unknown_name_beats_invalid_value() {
    given::<Config>(vec![])
        .when(set_config("foo", "not a value"))
        .then_error(DomainError::UnknownSetting("foo".into()));
}

#[test]
fn set_config_to_the_current_value_emits_nothing() {
    for (name, value) in [
        ("enabled", "1"),
        ("role", "5"),
        ("recompletion", "1"),
        ("overlap_rule", "enrol_semco"),
        ("allowaccountssameemail", "0"),
    ] {
        given::<Config>(vec![]).when(set_config(name, value)).then_events(vec![]);
    }
    given::<Config>(vec![config_changed("role", "5", "3")]).when(set_config("role", "3")).then_events(vec![]);
}

#[test]
fn config_history_folds_into_the_settings() {
    let settings = given::<Config>(vec![
        config_changed("enabled", "1", "0"),
        config_changed("role", "5", "4"),
        config_changed("recompletion", "1", "0"),
        config_changed("overlap_rule", "enrol_semco", "strict"),
        config_changed("allowaccountssameemail", "0", "1"),
        config_changed("role", "4", "3"),
    ])
    .state;
    assert_eq!(
        settings,
        Settings {
            enabled: false,
            role: RoleId(3),
            recompletion: false,
            overlap_rule: OverlapRule::Strict,
            allow_accounts_same_email: true,
            ..Settings::default()
        }
    );
}

#[test]
fn config_change_of_a_name_unknown_to_this_version_is_ignored_by_the_fold() {
    let settings = given::<Config>(vec![config_changed("future_setting", "a", "b")]).state;
    assert_eq!(settings, Settings::default());
}

// =============================================================================================
// What Moodle's columns hold (issue 6, defects 1 and 5): refused last, as Moodle's write fails
// after every check, with `DoesNotFit` (answered as dmlwriteexception)
// =============================================================================================

fn too_long(column: Column, max: usize, got: usize) -> DomainError {
    DomainError::DoesNotFit(ColumnOverflow::TooLong { column, max, got })
}

fn out_of_range(column: Column) -> DomainError {
    DomainError::DoesNotFit(ColumnOverflow::OutOfRange { column })
}

#[test]
fn enrol_fails_on_a_booking_id_longer_than_customchar1() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.booking_id = "b".repeat(256))).then_error(too_long(
        Column::EnrolCustomchar1,
        255,
        256,
    ));
}

#[test]
fn enrol_accepts_a_booking_id_of_255_characters() {
    let long = "é".repeat(255);
    let events = Enrolment::handle_command(&EnrolmentState::New, enrol_with(|c| c.booking_id = long.clone()));
    assert!(
        matches!(&events.unwrap()[..], [EnrolmentEvent::Enrolled { booking_id, .. }] if booking_id.as_str() == long)
    );
}

#[test]
fn enrol_overlap_beats_a_too_long_booking_id() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| {
            c.booking_id = "b".repeat(10_000);
            c.other_periods = vec![period(0, 0)];
        }))
        .then_error(DomainError::BookingOverlap);
}

#[test]
fn enrol_empty_booking_id_is_still_the_plugin_error() {
    given::<Enrolment>(vec![]).when(enrol_with(|c| c.booking_id = "0".into())).then_error(DomainError::BookingIdEmpty);
}

#[test]
fn enrol_fails_on_times_beyond_int_10() {
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| c.timestart = TIME_MAX + 1))
        .then_error(out_of_range(Column::UserEnrolmentsTimestart));
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| c.timeend = TIME_MAX + 1))
        .then_error(out_of_range(Column::UserEnrolmentsTimeend));
    given::<Enrolment>(vec![])
        .when(enrol_with(|c| c.timeend = TIME_MAX))
        .then_events(vec![enrolled(0, TIME_MAX, false)]);
}

#[test]
fn edit_fails_on_a_booking_id_longer_than_customchar1() {
    given::<Enrolment>(live_history()).when(edit_with(|c| c.booking_id = Some("b".repeat(256)))).then_error(too_long(
        Column::EnrolCustomchar1,
        255,
        256,
    ));
}

#[test]
fn edit_fails_on_a_time_beyond_int_10() {
    given::<Enrolment>(live_history())
        .when(edit_with(|c| c.timeend = Some(TIME_MAX + 1)))
        .then_error(out_of_range(Column::UserEnrolmentsTimeend));
}

#[test]
fn record_fails_on_a_grade_beyond_numeric_10_5() {
    given::<Completion>(vec![])
        .when(record_with(|r| r.grade.finalgrade = Some(1e308)))
        .then_error(out_of_range(Column::GradeFinalgrade));
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.grade.finalgrade = Some(50.0);
            r.grade.grademax = Some(100_000.0);
        }))
        .then_error(out_of_range(Column::GradeGrademax));
}

#[test]
fn record_rounds_grades_to_five_decimals() {
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.grade.finalgrade = Some(99_999.999_994);
            r.grade.gradepass = Some(0.123_456);
        }))
        .then_events(vec![recorded(completion(1_700_003_600, Some(grade(99_999.999_99, 0.0, 100.0, 0.123_46))))]);
}

#[test]
fn record_fails_on_a_timecompleted_beyond_int_10() {
    given::<Completion>(vec![])
        .when(record_with(|r| r.timecompleted = TIME_MAX + 1))
        .then_error(out_of_range(Column::CourseCompletionsTimecompleted));
}

#[test]
fn record_course_check_beats_an_impossible_grade() {
    given::<Completion>(vec![])
        .when(record_with(|r| {
            r.course_exists = false;
            r.grade.finalgrade = Some(f64::INFINITY);
        }))
        .then_error(DomainError::CourseNotExist(COURSE));
}
