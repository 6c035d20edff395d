//! The writer's authoritative in-memory view of the whole ledger: every stream's aggregate
//! state and version, the cross-stream indexes the invariants need, the projection rows, and
//! the log head. It is a pure fold of the log; `load` replays the database into it.

use std::collections::{BTreeSet, HashMap};

use esrs::Aggregate;

use crate::domain::completion::{Completion, CompletionState};
use crate::domain::config::{Config, Settings};
use crate::domain::course::{Course, CourseState};
use crate::domain::enrolment::{transition, Enrolment, EnrolmentState};
use crate::domain::event::{CompletionEvent, EnrolmentEvent};
use crate::domain::period::EnrolmentPeriod;
use crate::domain::{ImpossibleEvent, LedgerEvent};
use crate::projection::state::RowKey;
use crate::projection::ProjectionState;
use crate::registry::RegistryIndex;
use crate::store::log::{self, StoredEvent, StreamRef, GENESIS_HASH};
use crate::store::{Db, StoreError};

/// An aggregate's state with the version of its last event (0 = no event yet).
#[derive(Debug, Clone, Default)]
pub struct Versioned<S> {
    pub state: S,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct LedgerState {
    pub enrolments: HashMap<i64, Versioned<EnrolmentState>>,
    /// user enrolment id → instance id, for live user enrolments.
    pub instance_of: HashMap<i64, i64>,
    /// Booking ID → the instance holding it (live or orphaned).
    pub bookings: HashMap<String, i64>,
    /// (user, course) → instances of the user's live SEMCO enrolments there.
    pub live_by_user_course: HashMap<(i64, i64), BTreeSet<i64>>,
    /// course → (sortorder, instance) of the course's existing instances.
    pub course_instances: HashMap<i64, BTreeSet<(i64, i64)>>,
    /// Instances emptied by a user deletion, awaiting the orphan clean-up.
    pub orphans: BTreeSet<i64>,
    pub completions: HashMap<(i64, i64), Versioned<CompletionState>>,
    pub courses: HashMap<i64, Versioned<crate::domain::course::CourseState>>,
    pub config: Versioned<Settings>,
    pub next_instance_id: i64,
    pub next_user_enrolment_id: i64,
    pub head_position: i64,
    pub head_hash: String,
    /// Time of the newest event: new events never get an earlier one, so time order follows log order.
    pub head_recorded_at: i64,
    pub projection: ProjectionState,
    pub registry: RegistryIndex,
}

impl Default for LedgerState {
    fn default() -> Self {
        Self {
            enrolments: HashMap::new(),
            instance_of: HashMap::new(),
            bookings: HashMap::new(),
            live_by_user_course: HashMap::new(),
            course_instances: HashMap::new(),
            orphans: BTreeSet::new(),
            completions: HashMap::new(),
            courses: HashMap::new(),
            config: Versioned::default(),
            next_instance_id: 1,
            next_user_enrolment_id: 1,
            head_position: 0,
            head_hash: GENESIS_HASH.to_owned(),
            head_recorded_at: 0,
            projection: ProjectionState::default(),
            registry: RegistryIndex::default(),
        }
    }
}

impl LedgerState {
    /// Replays the log and loads the registries.
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        let mut state = Self { registry: RegistryIndex::load(db).await?, ..Self::default() };
        let mut conn = db.pool.acquire().await?;
        log::replay(&mut conn, None, |stored| {
            let event = stored.event()?;
            state.try_apply(&stored, &event, &mut BTreeSet::new()).map_err(|e| stored.unusable(e.into()))
        })
        .await?;
        Ok(state)
    }

    /// The stream version an event of `stream` would get next.
    pub fn next_version(&self, stream: &StreamRef) -> i64 {
        let key = stream.key.as_str();
        1 + match stream.stream_type {
            Enrolment::NAME => key.parse().ok().and_then(|id: i64| self.enrolments.get(&id)).map_or(0, |v| v.version),
            Completion::NAME => parse_pair(key).and_then(|k| self.completions.get(&k)).map_or(0, |v| v.version),
            Course::NAME => key.parse().ok().and_then(|id: i64| self.courses.get(&id)).map_or(0, |v| v.version),
            _ => self.config.version,
        }
    }

    /// Folds one event the writer has just decided into every part of the state. Such events
    /// are valid by construction, so an impossible one is a defect of the rules: it panics.
    pub fn apply(&mut self, stored: &StoredEvent, event: &LedgerEvent, touched: &mut BTreeSet<RowKey>) {
        if let Err(impossible) = self.try_apply(stored, event, touched) {
            panic!("the writer decided an impossible event at position {}: {impossible}", stored.position);
        }
    }

    /// Folds one event read from the log into every part of the state, or leaves the state
    /// untouched and says why the event cannot follow its stream.
    ///
    /// # Errors
    /// `ImpossibleEvent` when the event cannot follow its stream's state.
    pub fn try_apply(
        &mut self,
        stored: &StoredEvent,
        event: &LedgerEvent,
        touched: &mut BTreeSet<RowKey>,
    ) -> Result<(), ImpossibleEvent> {
        let version = stored.stream_version;
        match event {
            LedgerEvent::Enrolment(e) => self.apply_enrolment(&stored.stream_key, version, e)?,
            LedgerEvent::Completion(e) => {
                let key = match e {
                    CompletionEvent::CompletionRecorded { user_id, course_id, .. }
                    | CompletionEvent::CompletionReset { user_id, course_id, .. } => (user_id.0, course_id.0),
                };
                let entry = self.completions.entry(key).or_default();
                entry.state = Completion::apply_event(std::mem::take(&mut entry.state), e.clone());
                entry.version = version;
            }
            LedgerEvent::Course(e) => {
                let crate::domain::event::CourseEvent::RecompletionTypeSet { course_id, .. } = e;
                let entry = self
                    .courses
                    .entry(course_id.0)
                    .or_insert_with(|| Versioned { state: CourseState::default(), version: 0 });
                entry.state = Course::apply_event(std::mem::take(&mut entry.state), e.clone());
                entry.version = version;
            }
            LedgerEvent::Config(e) => {
                self.config.state = Config::apply_event(std::mem::take(&mut self.config.state), e.clone());
                self.config.version = version;
            }
        }
        self.projection.apply(stored, event, touched);
        self.head_position = stored.position;
        self.head_hash = stored.hash.clone();
        self.head_recorded_at = self.head_recorded_at.max(stored.recorded_at);
        Ok(())
    }

    fn apply_enrolment(
        &mut self,
        stream_key: &str,
        version: i64,
        event: &EnrolmentEvent,
    ) -> Result<(), ImpossibleEvent> {
        let parsed = stream_key.parse::<i64>().ok();
        let names_its_stream = match event {
            EnrolmentEvent::Enrolled { instance_id, .. } => parsed == Some(instance_id.0),
            _ => parsed.is_some(),
        };
        let slot = parsed.and_then(|instance| self.enrolments.get_mut(&instance));
        // Taken, not cloned, on the writer's hot path; put back if the event cannot follow it.
        let before = slot.map(|entry| std::mem::take(&mut entry.state)).unwrap_or_default();
        let checked = match parsed.filter(|_| names_its_stream) {
            Some(instance) => transition(before.clone(), event.clone()).map(|after| (instance, after)),
            None => Err(ImpossibleEvent {
                event: event.event_type(),
                state: before.name(),
                expected: format!("an event of the instance its stream is named after (stream key {stream_key:?})"),
            }),
        };
        let (instance, after) = match checked {
            Ok(checked) => checked,
            Err(impossible) => {
                if let Some(entry) = parsed.and_then(|instance| self.enrolments.get_mut(&instance)) {
                    entry.state = before;
                }
                return Err(impossible);
            }
        };
        let entry = self.enrolments.entry(instance).or_default();
        entry.state = after.clone();
        entry.version = version;
        self.reindex(instance, &before, &after, event);
        Ok(())
    }

    /// Keeps the cross-stream indexes in step with one enrolment stream's transition.
    fn reindex(&mut self, instance: i64, before: &EnrolmentState, after: &EnrolmentState, event: &EnrolmentEvent) {
        if let EnrolmentEvent::Enrolled { user_enrolment_id, course_id, sortorder, .. } = event {
            self.next_instance_id = self.next_instance_id.max(instance + 1);
            self.next_user_enrolment_id = self.next_user_enrolment_id.max(user_enrolment_id.0 + 1);
            self.course_instances.entry(course_id.0).or_default().insert((*sortorder, instance));
        }
        if let Some(live) = before.live() {
            self.instance_of.remove(&live.user_enrolment_id.0);
            self.bookings.remove(live.booking_id.as_str());
            let key = (live.user_id.0, live.course_id.0);
            if let Some(set) = self.live_by_user_course.get_mut(&key) {
                set.remove(&instance);
                if set.is_empty() {
                    self.live_by_user_course.remove(&key);
                }
            }
        }
        if let EnrolmentState::Orphaned { booking_id, .. } = before {
            self.bookings.remove(booking_id.as_str());
            self.orphans.remove(&instance);
        }
        match after {
            EnrolmentState::Live(live) => {
                self.instance_of.insert(live.user_enrolment_id.0, instance);
                self.bookings.insert(live.booking_id.as_str().to_owned(), instance);
                self.live_by_user_course.entry((live.user_id.0, live.course_id.0)).or_default().insert(instance);
            }
            EnrolmentState::Orphaned { booking_id, .. } => {
                self.bookings.insert(booking_id.as_str().to_owned(), instance);
                self.orphans.insert(instance);
            }
            EnrolmentState::Closed => {
                let course = match before {
                    EnrolmentState::Live(live) => Some(live.course_id.0),
                    EnrolmentState::Orphaned { course_id, .. } => Some(course_id.0),
                    _ => None,
                };
                if let Some(set) = course.and_then(|c| self.course_instances.get_mut(&c)) {
                    set.retain(|(_, i)| *i != instance);
                }
            }
            EnrolmentState::New => {}
        }
    }

    /// Periods of the user's live SEMCO enrolments in the course, except `ignore`.
    pub fn periods(&self, user: i64, course: i64, ignore: Option<i64>) -> Vec<EnrolmentPeriod> {
        self.live_by_user_course
            .get(&(user, course))
            .into_iter()
            .flatten()
            .filter(|i| Some(**i) != ignore)
            .filter_map(|i| self.enrolments.get(i)?.state.live().map(|l| l.period))
            .collect()
    }

    /// Moodle's sortorder for a new instance: one above the course's highest.
    pub fn next_sortorder(&self, course: i64) -> i64 {
        self.course_instances.get(&course).and_then(|s| s.last()).map_or(0, |(sortorder, _)| sortorder + 1)
    }

    /// The live enrolment behind a user enrolment id.
    pub fn live_by_user_enrolment(&self, user_enrolment_id: i64) -> Option<&crate::domain::enrolment::LiveEnrolment> {
        let instance = self.instance_of.get(&user_enrolment_id)?;
        self.enrolments.get(instance)?.state.live()
    }
}

fn parse_pair(key: &str) -> Option<(i64, i64)> {
    let (a, b) = key.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Given a state, when one stored event is folded with `try_apply`, then the new state, or an
/// `ImpossibleEvent` and the state exactly as it was.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::UnenrolReason;
    use crate::domain::ids::{BookingId, CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};

    fn stored(position: i64, stream_key: &str, event: &LedgerEvent) -> StoredEvent {
        StoredEvent {
            position,
            stream_id: String::new(),
            stream_type: Enrolment::NAME.into(),
            stream_key: stream_key.into(),
            stream_version: 1,
            event_type: event.event_type().into(),
            schema_version: 1,
            recorded_at: position,
            actor_user_id: None,
            actor_token_id: None,
            request_id: String::new(),
            booking_id: None,
            payload: String::new(),
            hash: format!("h{position}"),
        }
    }

    fn enrolled(instance: i64) -> LedgerEvent {
        LedgerEvent::Enrolment(EnrolmentEvent::Enrolled {
            instance_id: InstanceId(instance),
            user_enrolment_id: UserEnrolmentId(instance),
            user_id: UserId(42),
            course_id: CourseId(2),
            booking_id: BookingId::parse(&format!("B-{instance}")).unwrap(),
            timestart: 0,
            timeend: 0,
            suspended: false,
            role_id: RoleId(5),
            sortorder: 0,
        })
    }

    fn given_one_enrolment() -> LedgerState {
        let mut state = LedgerState::default();
        state.try_apply(&stored(1, "1", &enrolled(1)), &enrolled(1), &mut BTreeSet::new()).unwrap();
        state
    }

    /// The parts an impossible event must not touch.
    fn snapshot(state: &LedgerState) -> impl PartialEq + std::fmt::Debug {
        let mut enrolments: Vec<_> = state.enrolments.iter().map(|(i, v)| (*i, v.state.clone(), v.version)).collect();
        enrolments.sort_by_key(|(i, _, _)| *i);
        (enrolments, state.bookings.clone(), state.projection.clone(), state.head_position, state.head_hash.clone())
    }

    #[test]
    fn an_impossible_event_leaves_the_state_as_it_was() {
        let mut state = given_one_enrolment();
        let before = snapshot(&state);
        let again = enrolled(1);
        let error = state.try_apply(&stored(2, "1", &again), &again, &mut BTreeSet::new()).unwrap_err();
        assert_eq!((error.event, error.state), ("Enrolled", "live"));
        let unenrolled = LedgerEvent::Enrolment(EnrolmentEvent::Unenrolled {
            user_enrolment_id: UserEnrolmentId(9),
            user_id: UserId(42),
            course_id: CourseId(2),
            reason: UnenrolReason::Semco,
        });
        let error = state.try_apply(&stored(2, "9", &unenrolled), &unenrolled, &mut BTreeSet::new()).unwrap_err();
        assert_eq!((error.event, error.state), ("Unenrolled", "new"));
        assert_eq!(snapshot(&state), before);
        assert!(!state.enrolments.contains_key(&9), "no empty stream is left behind");
    }

    #[test]
    fn an_enrolment_must_name_the_instance_of_its_stream() {
        let mut state = LedgerState::default();
        let event = enrolled(3);
        for key in ["4", "not-a-number"] {
            let error = state.try_apply(&stored(1, key, &event), &event, &mut BTreeSet::new()).unwrap_err();
            assert!(error.expected.contains(&format!("stream key {key:?}")), "{error}");
        }
        assert!(state.enrolments.is_empty());
        assert_eq!(state.head_position, 0);
    }
}
