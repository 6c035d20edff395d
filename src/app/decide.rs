//! Turns a request into events and registry changes against the writer's current state.
//!
//! Pure like the domain: it looks facts up in `LedgerState`, builds the aggregate's command and
//! calls the esrs `Aggregate`; it never touches the database or the clock.

use esrs::Aggregate;

use super::command::{LedgerError, Outcome, Request, UserInput};
use super::command::{ManualEnrolItem, ManualUnenrolItem};
use super::state::{LedgerState, MANUAL_INSTANCE_STREAM};
use crate::domain::completion::{Completion, CompletionCommand, ResetTarget};
use crate::domain::config::{Config, SetConfig};
use crate::domain::course::{Course, SetRecompletionType};
use crate::domain::criteria::{CompletionCriteria, SetCriteria};
use crate::domain::enrolment::{EditEnrolment, EnrolUser, Enrolment, EnrolmentCommand, EnrolmentState};
use crate::domain::event::ManualEvent;
use crate::domain::event::{CompletionEvent, UndoEvent};
use crate::domain::health::{HealthMutes, MuteCommand};
use crate::domain::ids::{CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
use crate::domain::manual::{ManualCommand, ManualEnrol, ManualEnrolment, ManualState, ManualUnenrol, DEFAULT_ROLE};
use crate::domain::recompletion::RecompletionFacts;
use crate::domain::{undo, DomainError, LedgerEvent};
use crate::registry::rules::{self, Deletion, NewUserFacts};
use crate::registry::{RegistryOp, UserLookup, UserOverlay, SEMCO_PROFILE_FIELDS};
use crate::store::log::StreamRef;

/// Moodle's role ids on a fresh site (manager … frontpage).
pub const KNOWN_ROLES: [i64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// Events for one stream, tagged with the booking ID they concern.
#[derive(Debug, Clone)]
pub struct StreamEvents {
    pub stream: StreamRef,
    pub booking_id: Option<String>,
    pub events: Vec<LedgerEvent>,
}

#[derive(Debug, Clone)]
pub struct Decision {
    pub streams: Vec<StreamEvents>,
    pub registry: Vec<RegistryOp>,
    pub outcome: Outcome,
}

impl Decision {
    fn one(stream: StreamRef, booking_id: Option<String>, events: Vec<LedgerEvent>, outcome: Outcome) -> Self {
        Self { streams: vec![StreamEvents { stream, booking_id, events }], registry: Vec::new(), outcome }
    }
}

pub fn enrolment_stream(instance: i64) -> StreamRef {
    StreamRef::new(Enrolment::NAME, instance.to_string())
}
pub fn completion_stream(user: i64, course: i64) -> StreamRef {
    StreamRef::new(Completion::NAME, format!("{user}/{course}"))
}
pub fn course_stream(course: i64) -> StreamRef {
    StreamRef::new(Course::NAME, course.to_string())
}
pub fn manual_stream(instance: i64, user: i64) -> StreamRef {
    StreamRef::new(ManualEnrolment::NAME, format!("{instance}-{user}"))
}
pub fn manual_instance_stream(course: i64) -> StreamRef {
    StreamRef::new(MANUAL_INSTANCE_STREAM, course.to_string())
}
pub fn criteria_stream(course: i64) -> StreamRef {
    StreamRef::new(CompletionCriteria::NAME, course.to_string())
}
pub fn config_stream() -> StreamRef {
    StreamRef::new(Config::NAME, "site")
}
/// The stream type of a user's registry events (`user/{id}`).
pub const USER_STREAM: &str = "user";
/// The stream type of the first-start installer's steps (`install/site`).
pub const INSTALL_STREAM: &str = "install";
pub fn user_stream(user: i64) -> StreamRef {
    StreamRef::new(USER_STREAM, user.to_string())
}
/// The stream of the muted health checks (`health/site`).
pub fn health_stream() -> StreamRef {
    StreamRef::new(HealthMutes::NAME, "site")
}
pub fn install_stream() -> StreamRef {
    StreamRef::new(INSTALL_STREAM, "site")
}

/// A stream with one registry event (no booking).
fn registry_stream(stream: StreamRef, event: impl Into<LedgerEvent>) -> StreamEvents {
    StreamEvents { stream, booking_id: None, events: vec![event.into()] }
}

fn wrap<E: Into<LedgerEvent>>(events: Vec<E>) -> Vec<LedgerEvent> {
    events.into_iter().map(Into::into).collect()
}

/// `now` is Unix seconds; `actor_user_id` is who asks (for the self-deletion rule).
pub fn decide(
    state: &LedgerState,
    request: Request,
    now: i64,
    actor_user_id: Option<i64>,
) -> Result<Decision, LedgerError> {
    let settings = &state.config.state;
    let recompletion = |course: i64| RecompletionFacts {
        available: settings.recompletion,
        course_type: state.courses.get(&course).map(|c| c.state.recompletion_type).unwrap_or_default(),
    };
    match request {
        Request::Enrol { user_id, course_id, booking_id, timestart, timeend, suspend, require_recompletion } => {
            let instance = state.next_instance_id;
            let user_enrolment = state.next_user_enrolment_id;
            let command = EnrolmentCommand::Enrol(EnrolUser {
                plugin_enabled: settings.enabled,
                course_id: CourseId(course_id),
                course_exists: state.registry.course_exists(course_id),
                user_id: UserId(user_id),
                user_exists: state.registry.user_exists(user_id),
                booking_id_taken: state.open.booking_taken(&booking_id),
                booking_id: booking_id.clone(),
                timestart,
                timeend,
                suspend,
                require_recompletion,
                recompletion: recompletion(course_id),
                other_periods: state.periods(user_id, course_id, None),
                overlap_rule: settings.overlap_rule,
                role_id: settings.role,
                new_instance_id: InstanceId(instance),
                new_user_enrolment_id: UserEnrolmentId(user_enrolment),
                sortorder: state.next_sortorder(course_id),
            });
            let events = Enrolment::handle_command(&Default::default(), command)?;
            Ok(Decision::one(
                enrolment_stream(instance),
                Some(booking_id),
                wrap(events),
                Outcome::enrolled(user_enrolment),
            ))
        }
        Request::Unenrol { enrolid } => {
            let (instance, current) = enrolment_of(state, enrolid);
            let user_exists = current.live().is_some_and(|l| state.registry.user_exists(l.user_id.0));
            let command =
                EnrolmentCommand::Unenrol { plugin_enabled: settings.enabled, requested_id: enrolid, user_exists };
            let events = Enrolment::handle_command(&current, command)?;
            let booking = current.live().map(|l| l.booking_id.to_string());
            Ok(Decision::one(enrolment_stream(instance), booking, wrap(events), Outcome::Done))
        }
        Request::Edit { enrolid, booking_id, timestart, timeend, suspend } => {
            let (instance, current) = enrolment_of(state, enrolid);
            let live = current.live();
            let command = EnrolmentCommand::Edit(EditEnrolment {
                plugin_enabled: settings.enabled,
                requested_id: enrolid,
                user_exists: live.is_some_and(|l| state.registry.user_exists(l.user_id.0)),
                booking_id_taken: booking_id.as_ref().is_some_and(|b| state.open.booking_taken(b)),
                booking_id: booking_id.clone(),
                timestart,
                timeend,
                suspend,
                other_periods: live
                    .map(|l| state.periods(l.user_id.0, l.course_id.0, Some(instance)))
                    .unwrap_or_default(),
                overlap_rule: settings.overlap_rule,
            });
            let events = Enrolment::handle_command(&current, command)?;
            let booking = booking_id.or_else(|| live.map(|l| l.booking_id.to_string()));
            Ok(Decision::one(enrolment_stream(instance), booking, wrap(events), Outcome::Done))
        }
        Request::ResetCompletion { enrolid } => {
            let target = state.live_by_user_enrolment(enrolid).map(|l| ResetTarget {
                user_enrolment_id: l.user_enrolment_id,
                user_id: l.user_id,
                course_id: l.course_id,
                booking_id: l.booking_id.clone(),
                user_exists: state.registry.user_exists(l.user_id.0),
            });
            let (user, course) = target.as_ref().map_or((0, 0), |t| (t.user_id.0, t.course_id.0));
            let booking = target.as_ref().map(|t| t.booking_id.to_string());
            let current = state.completions.get(&(user, course)).map(|c| c.state.clone()).unwrap_or_default();
            let command = CompletionCommand::Reset {
                plugin_enabled: settings.enabled,
                requested_id: enrolid,
                target,
                recompletion: recompletion(course),
            };
            let events = Completion::handle_command(&current, command)?;
            Ok(Decision::one(completion_stream(user, course), booking, wrap(events), Outcome::Done))
        }
        Request::RecordCompletion { user_id, course_id, timecompleted, grade } => {
            let current = state.completions.get(&(user_id, course_id)).map(|c| c.state.clone()).unwrap_or_default();
            let command = CompletionCommand::Record {
                user_id: UserId(user_id),
                user_exists: state.registry.user_exists(user_id),
                course_id: CourseId(course_id),
                course_exists: state.registry.course_exists(course_id),
                timecompleted,
                grade,
            };
            let events = Completion::handle_command(&current, command)?;
            // The booking it concerns: the user's newest live SEMCO enrolment in the course.
            let booking =
                state.live_in(user_id, course_id).next_back().and_then(|i| state.live_booking(i).map(str::to_owned));
            Ok(Decision::one(completion_stream(user_id, course_id), booking, wrap(events), Outcome::Done))
        }
        Request::SetRecompletion { course_id, recompletion_type } => {
            let current = state.courses.get(&course_id).map(|c| c.state.clone()).unwrap_or_default();
            let command = SetRecompletionType {
                course_id: CourseId(course_id),
                course_exists: state.registry.course_exists(course_id),
                recompletion_type,
            };
            let events = Course::handle_command(&current, command)?;
            Ok(Decision::one(course_stream(course_id), None, wrap(events), Outcome::Done))
        }
        Request::MuteCheck { check, reason, by } => {
            let known_checks = crate::domain::health::CHECK_IDS.iter().map(|c| (*c).to_owned()).collect();
            let command = MuteCommand::Mute { check, reason, by, known_checks };
            let events = HealthMutes::handle_command(&state.health.state, command)?;
            Ok(Decision::one(health_stream(), None, wrap(events), Outcome::Done))
        }
        Request::UnmuteCheck { check, by } => {
            let events = HealthMutes::handle_command(&state.health.state, MuteCommand::Unmute { check, by })?;
            Ok(Decision::one(health_stream(), None, wrap(events), Outcome::Done))
        }
        Request::SetConfig { name, value } => {
            let known_roles = KNOWN_ROLES.iter().map(|r| RoleId(*r)).collect();
            let command = SetConfig { name, value, known_roles, by: None };
            let events = Config::handle_command(&state.config.state, command)?;
            Ok(Decision::one(config_stream(), None, wrap(events), Outcome::Done))
        }
        Request::SetSettings { changes, by } => {
            // Each change sees the ones before it; any refusal refuses them all.
            let mut settings = state.config.state.clone();
            let mut events = Vec::new();
            for (name, value) in changes {
                let known_roles = KNOWN_ROLES.iter().map(|r| RoleId(*r)).collect();
                let command = SetConfig { name, value, known_roles, by: Some(by.clone()) };
                for event in Config::handle_command(&settings, command)? {
                    settings = Config::apply_event(settings, event.clone());
                    events.push(event);
                }
            }
            Ok(Decision::one(config_stream(), None, wrap(events), Outcome::Done))
        }
        Request::CreateUsers(users) => create_users(state, users, now),
        Request::UpdateUsers(updates) => update_users(state, updates, now),
        Request::DeleteUsers(ids) => delete_users(state, ids, now, actor_user_id),
        Request::CreateCourses(courses) => create_courses(state, courses, now),
        Request::UpdateCourses(updates) => update_courses(state, updates, now),
        Request::AppendTokenEvents(rows) => Ok(super::token_events::decide(rows)),
        Request::AppendAccountEvents(rows) => Ok(crate::web::accounts::decide(rows)),
        Request::ManualEnrol(items) => manual_enrol(state, items),
        Request::ManualUnenrol(items) => manual_unenrol(state, items),
        Request::SetCompletionCriteria { course_id, gradepass } => {
            let current = state.criteria.get(&course_id).map(|c| c.state).unwrap_or_default();
            let command = SetCriteria {
                course_id: CourseId(course_id),
                course_exists: state.registry.course_exists(course_id),
                gradepass,
            };
            let events = CompletionCriteria::handle_command(&current, command)?;
            Ok(Decision::one(criteria_stream(course_id), None, wrap(events), Outcome::Done))
        }
        Request::EnsureManualInstances => {
            let mut lacking: Vec<i64> =
                state.registry.courses.keys().copied().filter(|c| !state.manual_instances.contains_key(c)).collect();
            lacking.sort_unstable();
            let streams = lacking
                .iter()
                .enumerate()
                .map(|(n, course)| manual_instance_created(state, *course, state.next_instance_id + n as i64))
                .collect();
            Ok(Decision { streams, registry: Vec::new(), outcome: Outcome::Done })
        }
        Request::ReinstateEnrolment { undoes, enrolment, reason } => {
            let instance = state.next_instance_id;
            let user_enrolment = state.next_user_enrolment_id;
            let (user_id, course_id) = (enrolment.user_id.0, enrolment.course_id.0);
            let booking_id = enrolment.booking_id.to_string();
            let command = EnrolmentCommand::Enrol(EnrolUser {
                plugin_enabled: settings.enabled,
                course_id: enrolment.course_id,
                course_exists: state.registry.course_exists(course_id),
                user_id: enrolment.user_id,
                user_exists: state.registry.user_exists(user_id),
                booking_id_taken: state.open.booking_taken(&booking_id),
                booking_id: booking_id.clone(),
                timestart: enrolment.period.timestart,
                timeend: enrolment.period.timeend,
                suspend: enrolment.suspended,
                require_recompletion: false,
                recompletion: recompletion(course_id),
                other_periods: state.periods(user_id, course_id, None),
                overlap_rule: settings.overlap_rule,
                role_id: enrolment.role_id,
                new_instance_id: InstanceId(instance),
                new_user_enrolment_id: UserEnrolmentId(user_enrolment),
                sortorder: state.next_sortorder(course_id),
            });
            let events = Enrolment::handle_command(&Default::default(), command)?;
            let events = events.into_iter().map(|event| undo::reinstated(event, undoes, reason.clone())).collect();
            Ok(Decision::one(enrolment_stream(instance), Some(booking_id), events, Outcome::enrolled(user_enrolment)))
        }
        Request::RestoreCompletion { undoes, reset, reason } => {
            let CompletionEvent::CompletionReset { user_id, course_id, .. } = &reset else {
                return Err(DomainError::NotUndoable { position: undoes, why: "it is not a completion reset" }.into());
            };
            let (user, course) = (user_id.0, course_id.0);
            if !state.registry.user_exists(user) {
                return Err(DomainError::UserNotExist(*user_id).into());
            }
            if !state.registry.course_exists(course) {
                return Err(DomainError::CourseNotExist(*course_id).into());
            }
            let current = state.completions.get(&(user, course)).and_then(|c| c.state.current.as_ref());
            let restored = undo::restorable_completion(undoes, &reset, current)?;
            let event =
                UndoEvent::CompletionRestored { undoes, reason, user_id: *user_id, course_id: *course_id, restored };
            let booking =
                state.live_in(user, course).next_back().and_then(|i| state.live_booking(i).map(str::to_owned));
            Ok(Decision::one(completion_stream(user, course), booking, vec![event.into()], Outcome::Done))
        }
        Request::CleanupOrphans => {
            let mut streams = Vec::new();
            for instance in state.open.orphans() {
                let current = state.enrolment_state(instance);
                let events = Enrolment::handle_command(&current, EnrolmentCommand::RemoveOrphan)?;
                let booking = match &current {
                    EnrolmentState::Orphaned { booking_id, .. } => Some(booking_id.to_string()),
                    _ => None,
                };
                streams.push(StreamEvents {
                    stream: enrolment_stream(instance),
                    booking_id: booking,
                    events: wrap(events),
                });
            }
            let removed = streams.len() as i64;
            Ok(Decision { streams, registry: Vec::new(), outcome: Outcome::removed(removed) })
        }
    }
}

/// The instance behind a user enrolment id and its state (`New` when there is no live one).
fn enrolment_of(state: &LedgerState, enrolid: i64) -> (i64, EnrolmentState) {
    match state.live_by_user_enrolment(enrolid) {
        Some(live) => (live.instance_id.0, EnrolmentState::Live(live)),
        // No stream: the aggregate answers `enrolnouserinstance` before any event.
        None => (0, EnrolmentState::New),
    }
}

fn create_users(state: &LedgerState, users: Vec<UserInput>, now: i64) -> Result<Decision, LedgerError> {
    let index = &state.registry;
    // Names and addresses taken earlier in this same request (it is all or nothing).
    let mut usernames = std::collections::HashSet::new();
    let mut emails = std::collections::HashSet::new();
    let mut ops = Vec::new();
    let mut streams = Vec::new();
    let mut created = Vec::new();
    for (offset, input) in users.into_iter().enumerate() {
        let user = &input.user;
        let email = user.email.to_lowercase();
        let facts = NewUserFacts {
            username_taken: index.username_taken(&user.username) || usernames.contains(&user.username),
            email_taken: index.email_taken(&user.email) || emails.contains(&email),
            allow_accounts_same_email: state.config.state.allow_accounts_same_email,
            password_given: input.password_given,
            createpassword: input.createpassword,
        };
        rules::check_new_user(user, &facts)?;
        usernames.insert(user.username.clone());
        emails.insert(email);
        let id = index.next_user_id + offset as i64;
        let mut user = input.user;
        // Only the known profile fields are kept, as Moodle ignores unknown shortnames.
        user.profile.retain(|(name, _)| SEMCO_PROFILE_FIELDS.iter().any(|(f, _)| f == name));
        created.push((id, user.username.clone()));
        streams.push(registry_stream(user_stream(id), rules::user_registered(id, &user)));
        ops.push(RegistryOp::CreateUser { id, user, now });
    }
    Ok(Decision { streams, registry: ops, outcome: Outcome::created(created) })
}

fn update_users(
    state: &LedgerState,
    updates: Vec<crate::registry::UserUpdate>,
    now: i64,
) -> Result<Decision, LedgerError> {
    // Each user is its own change, as Moodle's per-user transactions: later users see earlier ones.
    // An overlay of this request's changes, not a copy of the index: O(changes) per call.
    let mut index = UserOverlay::new(&state.registry);
    let mut ops = Vec::new();
    let mut streams = Vec::new();
    let mut warnings = Vec::new();
    for mut update in updates {
        if let Err(refusal) = rules::check_user_update(&index, &update, state.config.state.allow_accounts_same_email) {
            warnings.push((update.id, refusal));
            continue;
        }
        update.profile.retain(|(name, _)| SEMCO_PROFILE_FIELDS.iter().any(|(f, _)| f == name));
        let event = index.user(update.id).and_then(|before| rules::user_updated(before, &update));
        streams.extend(event.map(|event| registry_stream(user_stream(update.id), event)));
        index.update(&update);
        ops.push(RegistryOp::UpdateUser { update, now });
    }
    Ok(Decision { streams, registry: ops, outcome: Outcome::warnings(warnings) })
}

fn delete_users(state: &LedgerState, ids: Vec<i64>, now: i64, actor: Option<i64>) -> Result<Decision, LedgerError> {
    let mut streams = Vec::new();
    let mut users = Vec::new();
    let mut ops = Vec::new();
    let mut deleted = std::collections::HashSet::new();
    for id in ids {
        match rules::check_delete_user(&state.registry, id, deleted.contains(&id), actor)? {
            Deletion::KeepGuest => continue,
            Deletion::Erase => {}
        }
        for instance in state.live_of_user(id) {
            let current = state.enrolment_state(instance);
            let events = Enrolment::handle_command(&current, EnrolmentCommand::UnenrolDeletedUser)?;
            streams.push(StreamEvents {
                stream: enrolment_stream(instance),
                booking_id: current.live().map(|l| l.booking_id.to_string()),
                events: wrap(events),
            });
        }
        for instance in state.live_manual_of_user(id) {
            let current = state.manual.get(&(id, instance)).map(|v| v.state.clone()).unwrap_or_default();
            let course = current.live.as_ref().map_or(0, |live| live.course_id.0);
            let command = ManualCommand::UnenrolDeletedUser {
                instance_id: InstanceId(instance),
                course_id: CourseId(course),
                user_id: UserId(id),
            };
            let events = ManualEnrolment::handle_command(&current, command).map_err(DomainError::from)?;
            streams.push(StreamEvents { stream: manual_stream(instance, id), booking_id: None, events: wrap(events) });
        }
        deleted.insert(id);
        ops.push(RegistryOp::EraseUser { id, now });
        users.push(registry_stream(user_stream(id), rules::user_deleted(id)));
    }
    // The enrolments end first (by stream type, in instance order), then each user's deletion
    // is recorded.
    streams.sort_by_key(|s| (s.stream.stream_type, s.stream.key.parse::<i64>().unwrap_or_default()));
    streams.extend(users);
    Ok(Decision { streams, registry: ops, outcome: Outcome::Done })
}

fn create_courses(
    state: &LedgerState,
    courses: Vec<crate::registry::NewCourse>,
    now: i64,
) -> Result<Decision, LedgerError> {
    // The course rules look at courses only; the user index is not copied.
    let mut index = state.registry.courses_only();
    let mut ops = Vec::new();
    let mut streams = Vec::new();
    let mut created = Vec::new();
    for course in courses {
        rules::check_new_course(&index, &course)?;
        let id = index.next_course_id;
        created.push((id, course.shortname.clone()));
        streams.push(registry_stream(course_stream(id), rules::course_created(id, &course)));
        let op = RegistryOp::CreateCourse { id, course, now };
        op.apply_to_index(&mut index);
        ops.push(op);
    }
    // Each new course gets its manual instance in the same request, as a new Moodle course does.
    streams.extend(
        created
            .iter()
            .enumerate()
            .map(|(n, (course, _))| manual_instance_created(state, *course, state.next_instance_id + n as i64)),
    );
    Ok(Decision { streams, registry: ops, outcome: Outcome::created(created) })
}

fn update_courses(
    state: &LedgerState,
    updates: Vec<crate::registry::CourseUpdate>,
    now: i64,
) -> Result<Decision, LedgerError> {
    // The course rules look at courses only; the user index is not copied.
    let mut index = state.registry.courses_only();
    let mut ops = Vec::new();
    let mut streams = Vec::new();
    let mut warnings = Vec::new();
    for update in updates {
        match rules::check_course_update(&index, &update) {
            Err(refusal) => warnings.push((update.id, refusal)),
            Ok(()) => {
                let event = index.courses.get(&update.id).and_then(|before| rules::course_updated(before, &update));
                streams.extend(event.map(|event| registry_stream(course_stream(update.id), event)));
                let op = RegistryOp::UpdateCourse { update, now };
                op.apply_to_index(&mut index);
                ops.push(op);
            }
        }
    }
    Ok(Decision { streams, registry: ops, outcome: Outcome::warnings(warnings) })
}

/// A course's manual instance, created with the id `instance` (the shared instance counter).
fn manual_instance_created(state: &LedgerState, course: i64, instance: i64) -> StreamEvents {
    let event = ManualEvent::ManualInstanceCreated {
        instance_id: InstanceId(instance),
        course_id: CourseId(course),
        sortorder: state.next_sortorder(course),
        role_id: RoleId(DEFAULT_ROLE),
    };
    StreamEvents { stream: manual_instance_stream(course), booking_id: None, events: vec![event.into()] }
}

/// The streams a manual request touches, each once, in first-touched order, with the state
/// each has after this request's earlier items.
#[derive(Default)]
struct ManualOverlay {
    streams: Vec<((i64, i64), ManualState, Vec<LedgerEvent>)>,
}

impl ManualOverlay {
    fn slot(&mut self, state: &LedgerState, user: i64, instance: i64) -> usize {
        if let Some(i) = self.streams.iter().position(|(k, _, _)| *k == (user, instance)) {
            return i;
        }
        let current = state.manual.get(&(user, instance)).map(|v| v.state.clone()).unwrap_or_default();
        self.streams.push(((user, instance), current, Vec::new()));
        self.streams.len() - 1
    }

    fn apply(&mut self, slot: usize, events: Vec<ManualEvent>) {
        let entry = &mut self.streams[slot];
        for event in events {
            entry.1 = ManualEnrolment::apply_event(std::mem::take(&mut entry.1), event.clone());
            entry.2.push(event.into());
        }
    }

    fn into_decision(self) -> Decision {
        let streams = self
            .streams
            .into_iter()
            .filter(|(_, _, events)| !events.is_empty())
            .map(|((user, instance), _, events)| StreamEvents {
                stream: manual_stream(instance, user),
                booking_id: None,
                events,
            })
            .collect();
        Decision { streams, registry: Vec::new(), outcome: Outcome::Done }
    }
}

fn manual_enrol(state: &LedgerState, items: Vec<ManualEnrolItem>) -> Result<Decision, LedgerError> {
    let mut overlay = ManualOverlay::default();
    let mut next_user_enrolment = state.next_user_enrolment_id;
    for item in items {
        let instance = state.manual_instances.get(&item.course_id).map(|m| m.instance_id);
        let command = ManualEnrol {
            course_id: CourseId(item.course_id),
            course_exists: state.registry.course_exists(item.course_id),
            instance_id: instance.map(InstanceId),
            user_id: UserId(item.user_id),
            user_exists: state.registry.user_exists(item.user_id),
            role_id: RoleId(item.role_id),
            timestart: item.timestart,
            timeend: item.timeend,
            suspend: item.suspend,
            new_user_enrolment_id: UserEnrolmentId(next_user_enrolment),
        };
        // The checks before the instance need no stream; a refused item ends the request.
        let slot = overlay.slot(state, item.user_id, instance.unwrap_or(0));
        let events = ManualEnrolment::handle_command(&overlay.streams[slot].1, ManualCommand::Enrol(command))
            .map_err(DomainError::from)?;
        if events.iter().any(|e| matches!(e, ManualEvent::ManualEnrolled { .. })) {
            next_user_enrolment += 1;
        }
        overlay.apply(slot, events);
    }
    Ok(overlay.into_decision())
}

fn manual_unenrol(state: &LedgerState, items: Vec<ManualUnenrolItem>) -> Result<Decision, LedgerError> {
    let mut overlay = ManualOverlay::default();
    for item in items {
        let instance = state.manual_instances.get(&item.course_id).map(|m| m.instance_id);
        let command = ManualUnenrol {
            course_id: CourseId(item.course_id),
            course_exists: state.registry.course_exists(item.course_id),
            instance_id: instance.map(InstanceId),
            user_id: UserId(item.user_id),
            user_exists: state.registry.user_exists(item.user_id),
        };
        let slot = overlay.slot(state, item.user_id, instance.unwrap_or(0));
        let events = ManualEnrolment::handle_command(&overlay.streams[slot].1, ManualCommand::Unenrol(command))
            .map_err(DomainError::from)?;
        overlay.apply(slot, events);
    }
    Ok(overlay.into_decision())
}
