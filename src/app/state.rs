//! The writer's in-memory view of the ledger: only what its decisions need. Open enrolment
//! streams (live and orphaned) with their versions, the cross-stream indexes the invariants
//! need (booking IDs, live periods per user and course, sortorders per course, orphans),
//! completions (for resets), course recompletion types, config, id counters, the log head and
//! the registry index. Closed enrolment streams are dropped: their ids are never reused, and
//! an id below `next_instance_id` with no entry is a closed stream. No projection rows are kept:
//! the writer derives each event's row writes from the event and this state
//! (`projection::writes::rows_for`).
//!
//! It is a pure fold of the log. `load` starts from the newest valid snapshot
//! (`app::snapshot`) and replays only the tail of the log.

use std::collections::{BTreeMap, HashMap};

use esrs::Aggregate;

use super::open::{Open, OpenStreams, TooLarge};
use crate::domain::completion::{Completion, CompletionState};
use crate::domain::config::{Config, Settings};
use crate::domain::course::{Course, CourseState};
use crate::domain::criteria::{CompletionCriteria, Criteria};
use crate::domain::enrolment::{transition, Enrolment, EnrolmentState, LiveEnrolment};
use crate::domain::event::{CompletionEvent, CourseRecordEvent, CriteriaEvent, EnrolmentEvent, ManualEvent, UserEvent};
use crate::domain::manual::{self, ManualEnrolment, ManualState};
use crate::domain::period::EnrolmentPeriod;
use crate::domain::{ImpossibleEvent, LedgerEvent};
use crate::registry::RegistryIndex;
use crate::store::log::{self, StoredEvent, StreamRef, GENESIS_HASH};
use crate::store::{Db, StoreError};

/// An aggregate's state with the version of its last event (0 = no event yet).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Versioned<S> {
    pub state: S,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct LedgerState {
    /// Open enrolment streams only (live or orphaned; a closed one leaves no entry), one
    /// compact record each, with the booking ID, (user, course, instance), (course, sortorder,
    /// instance), user enrolment and orphan indexes (`app::open`).
    pub open: OpenStreams,
    pub completions: HashMap<(i64, i64), Versioned<CompletionState>>,
    pub courses: HashMap<i64, Versioned<CourseState>>,
    pub config: Versioned<Settings>,
    /// The muted health checks (stream `health/site`): a handful of ids and reasons.
    pub health: Versioned<crate::domain::health::Muted>,
    /// user id → the version of the user's registry stream (`user/{id}`): only what the next
    /// event needs, no registry values; by id in a vector (user ids are handed out in order).
    pub user_versions: crate::registry::IdSlots<u32>,
    /// The version of the installer's stream (`install/site`).
    pub install_version: i64,
    pub next_instance_id: i64,
    pub next_user_enrolment_id: i64,
    pub head_position: i64,
    pub head_hash: String,
    /// Time of the newest event: new events never get an earlier one, so time order follows log order.
    pub head_recorded_at: i64,
    pub registry: RegistryIndex,
    /// Live token streams (`token-{id}` with only its `TokenCreated`) → version; a token's
    /// stream closes with its second event, so only live tokens have an entry.
    pub tokens: HashMap<i64, i64>,
    /// course → its `manual` enrolment instance (one per course, never removed).
    pub manual_instances: HashMap<i64, ManualInstance>,
    /// (user, manual instance) → that stream: live manual enrolments, and the versions of
    /// streams whose enrolment ended (a later enrolment continues the same stream). Ordered by
    /// user, so one user's are a range (user deletion).
    pub manual: BTreeMap<(i64, i64), Versioned<ManualState>>,
    /// course → its completion criteria (courses that never had any have no entry).
    pub criteria: HashMap<i64, Versioned<Criteria>>,
    /// web account id → the version of its stream (`account/{id}`); removed accounts keep
    /// theirs (a handful of rows: accounts are people who sign in to the pages).
    pub accounts: HashMap<i64, i64>,
}

/// A course's manual enrolment instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManualInstance {
    pub instance_id: i64,
    pub sortorder: i64,
}

/// The stream of a course's manual instance (one event: its creation).
pub const MANUAL_INSTANCE_STREAM: &str = "manual_instance";

/// The stream type of web account events (`account/{id}`).
pub const ACCOUNT_STREAM: &str = "account";

/// The stream type of token events (`token-{id}`).
pub const TOKEN_STREAM: &str = "token";

impl Default for LedgerState {
    fn default() -> Self {
        Self {
            open: OpenStreams::default(),
            completions: HashMap::new(),
            courses: HashMap::new(),
            config: Versioned::default(),
            health: Versioned::default(),
            user_versions: crate::registry::IdSlots::default(),
            install_version: 0,
            next_instance_id: 1,
            next_user_enrolment_id: 1,
            head_position: 0,
            head_hash: GENESIS_HASH.to_owned(),
            head_recorded_at: 0,
            registry: RegistryIndex::default(),
            tokens: HashMap::new(),
            manual_instances: HashMap::new(),
            manual: BTreeMap::new(),
            criteria: HashMap::new(),
            accounts: HashMap::new(),
        }
    }
}

/// Hands the heap freed by a load (the snapshot's text and its decode buffers, the log pages
/// of the tail) back to the operating system: glibc keeps freed memory in its arenas, which
/// counted as resident at rest after a restart (issue 7).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's own heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How a `load` went: where it started and how many events of the log it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The position of the snapshot it started from; `None` when it replayed the whole log.
    pub snapshot_position: Option<i64>,
    /// Events read from the log after the snapshot (the tail), or all of them.
    pub replayed_events: u64,
}

impl LedgerState {
    /// The registries, the newest valid snapshot and the tail of the log after it.
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        Ok(Self::load_reporting(db).await?.0)
    }

    /// `load`, saying whether a snapshot was used and how many events were replayed.
    pub async fn load_reporting(db: &Db) -> Result<(Self, LoadReport), StoreError> {
        let registry = RegistryIndex::load(db).await?;
        let mut conn = db.pool.acquire().await?;
        let start = super::snapshot::load_newest(&mut conn).await?;
        let snapshot_position = start.as_ref().map(|s| s.head_position);
        let mut state = start.unwrap_or_default();
        state.registry = registry;
        let replayed_events = state.replay_tail(&mut conn).await?;
        drop(conn);
        state.shrink_to_fit();
        release_freed_memory();
        Ok((state, LoadReport { snapshot_position, replayed_events }))
    }

    /// Gives the maps' spare capacity back after a load (they grow by doubling while filled).
    fn shrink_to_fit(&mut self) {
        self.completions.shrink_to_fit();
        self.courses.shrink_to_fit();
    }

    /// Replays the whole log, ignoring snapshots: what a snapshot must equal.
    pub async fn load_from_log(db: &Db) -> Result<Self, StoreError> {
        let mut state = Self { registry: RegistryIndex::load(db).await?, ..Self::default() };
        let mut conn = db.pool.acquire().await?;
        state.replay_tail(&mut conn).await?;
        Ok(state)
    }

    /// Folds every event after the head into the state; returns how many.
    async fn replay_tail(&mut self, conn: &mut sqlx::AnyConnection) -> Result<u64, StoreError> {
        let mut count = 0;
        log::replay_after(conn, self.head_position, |stored| {
            count += 1;
            let event = stored.event()?;
            self.try_apply(&stored, &event).map_err(|e| stored.unusable(e.into()))
        })
        .await?;
        Ok(count)
    }

    /// The stream version an event of `stream` would get next. A closed enrolment stream has
    /// no entry; nothing is ever decided for it (its user enrolment is no longer live).
    pub fn next_version(&self, stream: &StreamRef) -> i64 {
        let key = stream.key.as_str();
        1 + match stream.stream_type {
            Enrolment::NAME => {
                key.parse().ok().and_then(|id: i64| self.open.get(id)).map_or(0, |o| i64::from(o.version))
            }
            Completion::NAME => parse_pair(key).and_then(|k| self.completions.get(&k)).map_or(0, |v| v.version),
            Course::NAME => key.parse().ok().and_then(|id: i64| self.courses.get(&id)).map_or(0, |v| v.version),
            // A token stream closes with its second event: a token without an entry is new.
            TOKEN_STREAM => key.parse().ok().and_then(|id: i64| self.tokens.get(&id)).copied().unwrap_or(0),
            ManualEnrolment::NAME => parse_manual_key(key).and_then(|k| self.manual.get(&k)).map_or(0, |v| v.version),
            MANUAL_INSTANCE_STREAM => {
                key.parse().ok().map_or(0, |course: i64| i64::from(self.manual_instances.contains_key(&course)))
            }
            CompletionCriteria::NAME => {
                key.parse().ok().and_then(|id: i64| self.criteria.get(&id)).map_or(0, |v| v.version)
            }
            super::decide::USER_STREAM => {
                key.parse().ok().and_then(|id: i64| self.user_versions.get(id)).map_or(0, |v| i64::from(*v))
            }
            super::decide::INSTALL_STREAM => self.install_version,
            crate::domain::health::HealthMutes::NAME => self.health.version,
            ACCOUNT_STREAM => key.parse().ok().and_then(|id: i64| self.accounts.get(&id)).copied().unwrap_or(0),
            _ => self.config.version,
        }
    }

    /// Folds one event the writer has just decided into the state. Such events are valid by
    /// construction, so an impossible one is a defect of the rules: it panics.
    pub fn apply(&mut self, stored: &StoredEvent, event: &LedgerEvent) {
        if let Err(impossible) = self.try_apply(stored, event) {
            panic!("the writer decided an impossible event at position {}: {impossible}", stored.position);
        }
    }

    /// Folds one event read from the log into the state, or leaves the state untouched and
    /// says why the event cannot follow its stream.
    ///
    /// # Errors
    /// `ImpossibleEvent` when the event cannot follow its stream's state.
    pub fn try_apply(&mut self, stored: &StoredEvent, event: &LedgerEvent) -> Result<(), ImpossibleEvent> {
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
                let entry = self.courses.entry(course_id.0).or_default();
                entry.state = Course::apply_event(std::mem::take(&mut entry.state), e.clone());
                entry.version = version;
            }
            LedgerEvent::Config(e) => {
                self.config.state = Config::apply_event(std::mem::take(&mut self.config.state), e.clone());
                self.config.version = version;
            }
            LedgerEvent::Token(e) => {
                let id = e.facts().token_id;
                match (e, self.tokens.contains_key(&id)) {
                    (crate::domain::event::TokenEvent::TokenCreated(_), false) => {
                        self.tokens.insert(id, version);
                    }
                    (crate::domain::event::TokenEvent::TokenCreated(_), true) => {
                        return Err(ImpossibleEvent {
                            event: e.event_type(),
                            state: "live",
                            expected: "TokenRevoked, TokenRotated or TokenExpired".into(),
                        });
                    }
                    (_, true) => {
                        self.tokens.remove(&id);
                    }
                    (_, false) => {
                        return Err(ImpossibleEvent {
                            event: e.event_type(),
                            state: "new or closed",
                            expected: "TokenCreated (a token stream has two events at most)".into(),
                        })
                    }
                }
            }
            LedgerEvent::Manual(e) => self.apply_manual(&stored.stream_key, version, e)?,
            LedgerEvent::Criteria(e) => {
                let CriteriaEvent::CompletionCriteriaSet { course_id, .. } = e;
                let entry = self.criteria.entry(course_id.0).or_default();
                entry.state = CompletionCriteria::apply_event(std::mem::take(&mut entry.state), e.clone());
                entry.version = version;
            }
            LedgerEvent::User(e) => {
                let (UserEvent::UserRegistered { user_id, .. }
                | UserEvent::UserUpdated { user_id, .. }
                | UserEvent::UserDeleted { user_id }) = e;
                let version = u32::try_from(version).map_err(|_| ImpossibleEvent {
                    event: event.event_type(),
                    state: "user",
                    expected: "a stream version below 2^32".into(),
                })?;
                self.user_versions.insert(user_id.0, version);
            }
            LedgerEvent::CourseRecord(e) => {
                let (CourseRecordEvent::CourseCreated { course_id, .. }
                | CourseRecordEvent::CourseUpdated { course_id, .. }) = e;
                self.courses.entry(course_id.0).or_default().version = version;
            }
            LedgerEvent::Install(_) => self.install_version = version,
            LedgerEvent::Health(e) => {
                use esrs::Aggregate;
                self.health.state =
                    crate::domain::health::HealthMutes::apply_event(std::mem::take(&mut self.health.state), e.clone());
                self.health.version = version;
            }
            LedgerEvent::Account(e) => {
                self.accounts.insert(e.account_id(), version);
            }
            // A compensating event changes its stream as the event it mirrors.
            LedgerEvent::Undo(e) => {
                let effect = e.as_effect();
                let mirrored = StoredEvent { event_type: effect.event_type().to_owned(), ..stored.clone() };
                return self.try_apply(&mirrored, &effect).map(|()| {
                    self.head_hash = stored.hash.clone();
                });
            }
        }
        self.head_position = stored.position;
        self.head_hash = stored.hash.clone();
        self.head_recorded_at = self.head_recorded_at.max(stored.recorded_at);
        Ok(())
    }

    /// Folds one manual event: the instance's creation, or one (instance, user) stream's step.
    fn apply_manual(&mut self, stream_key: &str, version: i64, event: &ManualEvent) -> Result<(), ImpossibleEvent> {
        if let ManualEvent::ManualInstanceCreated { instance_id, course_id, sortorder, .. } = event {
            if self.manual_instances.contains_key(&course_id.0) || stream_key != course_id.0.to_string() {
                return Err(ImpossibleEvent {
                    event: event.event_type(),
                    state: "live",
                    expected: format!("one manual instance per course, in stream {}", course_id.0),
                });
            }
            self.manual_instances
                .insert(course_id.0, ManualInstance { instance_id: instance_id.0, sortorder: *sortorder });
            self.next_instance_id = self.next_instance_id.max(instance_id.0 + 1);
            return Ok(());
        }
        let (instance, user, user_enrolment) = match event {
            ManualEvent::ManualEnrolled { instance_id, user_id, user_enrolment_id, .. }
            | ManualEvent::ManualEnrolmentEdited { instance_id, user_id, user_enrolment_id, .. }
            | ManualEvent::ManualUnenrolled { instance_id, user_id, user_enrolment_id, .. } => {
                (instance_id.0, user_id.0, user_enrolment_id.0)
            }
            ManualEvent::ManualInstanceCreated { .. } => unreachable!("handled above"),
        };
        if parse_manual_key(stream_key) != Some((user, instance)) {
            return Err(ImpossibleEvent {
                event: event.event_type(),
                state: "new",
                expected: format!("an event of the stream {instance}-{user} (stream key {stream_key:?})"),
            });
        }
        let before = self.manual.get(&(user, instance)).map(|v| v.state.clone()).unwrap_or_default();
        let after = manual::transition(before, event.clone())?;
        if let ManualEvent::ManualEnrolled { .. } = event {
            self.next_user_enrolment_id = self.next_user_enrolment_id.max(user_enrolment + 1);
        }
        let entry = self.manual.entry((user, instance)).or_default();
        entry.state = after;
        entry.version = version;
        Ok(())
    }

    /// The live manual enrolment of a user in a course, with its instance.
    pub fn manual_of(&self, user: i64, course: i64) -> (Option<i64>, ManualState) {
        let instance = self.manual_instances.get(&course).map(|m| m.instance_id);
        let state = instance.and_then(|i| self.manual.get(&(user, i))).map(|v| v.state.clone()).unwrap_or_default();
        (instance, state)
    }

    /// (instance, its course) of one user's live manual enrolments: a range of the ordered map.
    pub fn live_manual_of_user(&self, user: i64) -> impl Iterator<Item = i64> + '_ {
        self.manual
            .range((user, i64::MIN)..=(user, i64::MAX))
            .filter(|(_, v)| v.state.live.is_some())
            .map(|((_, instance), _)| *instance)
    }

    /// The state of an enrolment stream: its record, or `Closed` for an id already handed out
    /// (ids are assigned in order and never reused), or `New`.
    pub fn enrolment_state(&self, instance: i64) -> EnrolmentState {
        match self.open.get(instance) {
            Some(open) => open.state(instance),
            None if instance < self.next_instance_id => EnrolmentState::Closed,
            None => EnrolmentState::New,
        }
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
        let before = parsed.map_or(EnrolmentState::New, |instance| self.enrolment_state(instance));
        let Some(instance) = parsed.filter(|_| names_its_stream) else {
            return Err(ImpossibleEvent {
                event: event.event_type(),
                state: before.name(),
                expected: format!("an event of the instance its stream is named after (stream key {stream_key:?})"),
            });
        };
        let sortorder = match event {
            EnrolmentEvent::Enrolled { sortorder, .. } => *sortorder,
            _ => self.open.get(instance).map_or(0, |open| i64::from(open.sortorder)),
        };
        let after = transition(before.clone(), event.clone())?;
        let too_large = |TooLarge| ImpossibleEvent {
            event: event.event_type(),
            state: before.name(),
            expected: "a stream version, a sortorder and ids below 2^32".into(),
        };
        let record = Open::of(&after, version, sortorder).map_err(too_large)?;
        match record {
            Some(open) => self.open.put(instance, open).map_err(too_large)?,
            None => {
                self.open.remove(instance);
            }
        }
        if let EnrolmentEvent::Enrolled { user_enrolment_id, .. } = event {
            self.next_instance_id = self.next_instance_id.max(instance + 1);
            self.next_user_enrolment_id = self.next_user_enrolment_id.max(user_enrolment_id.0 + 1);
        }
        Ok(())
    }

    /// Periods of the user's live SEMCO enrolments in the course, except `ignore`.
    pub fn periods(&self, user: i64, course: i64, ignore: Option<i64>) -> Vec<EnrolmentPeriod> {
        self.open
            .live_in(user, course)
            .filter(|i| Some(*i) != ignore)
            .filter_map(|i| self.open.get(i).map(Open::period))
            .collect()
    }

    /// Instances of the user's live SEMCO enrolments in the course, oldest first.
    pub fn live_in(&self, user: i64, course: i64) -> impl DoubleEndedIterator<Item = i64> + '_ {
        self.open.live_in(user, course)
    }

    /// Instances of one user's live SEMCO enrolments, in every course: a range of the
    /// ordered index, O(log n + the user's enrolments).
    pub fn live_of_user(&self, user: i64) -> impl Iterator<Item = i64> + '_ {
        self.open.live_of_user(user)
    }

    /// Moodle's sortorder for a new instance: one above the course's highest.
    pub fn next_sortorder(&self, course: i64) -> i64 {
        let semco = self.open.highest_sortorder(course).map_or(0, |sortorder| i64::from(sortorder) + 1);
        let manual = self.manual_instances.get(&course).map_or(0, |m| m.sortorder + 1);
        semco.max(manual)
    }

    /// The live enrolment behind a user enrolment id.
    pub fn live_by_user_enrolment(&self, user_enrolment_id: i64) -> Option<LiveEnrolment> {
        let instance = self.open.instance_of(user_enrolment_id)?;
        self.open.get(instance)?.live_enrolment(instance)
    }

    /// The booking ID of a live enrolment.
    pub fn live_booking(&self, instance: i64) -> Option<&str> {
        self.open.get(instance).filter(|open| open.live).map(|open| open.booking.as_str())
    }
}

/// A manual stream key `{instance}-{user}` as (user, instance).
pub fn parse_manual_key(key: &str) -> Option<(i64, i64)> {
    let (instance, user) = key.split_once('-')?;
    Some((user.parse().ok()?, instance.parse().ok()?))
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

    fn enrolled_in(instance: i64, user: i64, course: i64, sortorder: i64) -> LedgerEvent {
        LedgerEvent::Enrolment(EnrolmentEvent::Enrolled {
            instance_id: InstanceId(instance),
            user_enrolment_id: UserEnrolmentId(instance),
            user_id: UserId(user),
            course_id: CourseId(course),
            booking_id: BookingId::parse(&format!("B-{instance}")).unwrap(),
            timestart: 0,
            timeend: 0,
            suspended: false,
            role_id: RoleId(5),
            sortorder,
        })
    }

    fn enrolled(instance: i64) -> LedgerEvent {
        enrolled_in(instance, 42, 2, 0)
    }

    fn unenrolled(instance: i64, user: i64, course: i64, reason: UnenrolReason) -> LedgerEvent {
        LedgerEvent::Enrolment(EnrolmentEvent::Unenrolled {
            user_enrolment_id: UserEnrolmentId(instance),
            user_id: UserId(user),
            course_id: CourseId(course),
            reason,
        })
    }

    fn given(events: &[(i64, LedgerEvent)]) -> LedgerState {
        let mut state = LedgerState::default();
        for (n, (instance, event)) in events.iter().enumerate() {
            state.try_apply(&stored(n as i64 + 1, &instance.to_string(), event), event).unwrap();
        }
        state
    }

    fn given_one_enrolment() -> LedgerState {
        given(&[(1, enrolled(1))])
    }

    /// The parts an impossible event must not touch.
    fn snapshot(state: &LedgerState) -> impl PartialEq + std::fmt::Debug {
        let enrolments: Vec<_> = state.open.iter().map(|(i, o)| (i, o.clone())).collect();
        (enrolments, state.open.index_dump(), state.head_position, state.head_hash.clone())
    }

    #[test]
    fn an_impossible_event_leaves_the_state_as_it_was() {
        let mut state = given_one_enrolment();
        let before = snapshot(&state);
        let again = enrolled(1);
        let error = state.try_apply(&stored(2, "1", &again), &again).unwrap_err();
        assert_eq!((error.event, error.state), ("Enrolled", "live"));
        let unenrolled = unenrolled(9, 42, 2, UnenrolReason::Semco);
        let error = state.try_apply(&stored(2, "9", &unenrolled), &unenrolled).unwrap_err();
        assert_eq!((error.event, error.state), ("Unenrolled", "new"));
        assert_eq!(snapshot(&state), before);
        assert!(!state.open.contains(9), "no empty stream is left behind");
    }

    #[test]
    fn an_enrolment_must_name_the_instance_of_its_stream() {
        let mut state = LedgerState::default();
        let event = enrolled(3);
        for key in ["4", "not-a-number"] {
            let error = state.try_apply(&stored(1, key, &event), &event).unwrap_err();
            assert!(error.expected.contains(&format!("stream key {key:?}")), "{error}");
        }
        assert!(state.open.is_empty());
        assert_eq!(state.head_position, 0);
    }

    // given a live enrolment, when it is unenrolled, then nothing of its stream stays in
    // memory: no stream entry, no sortorder, no index entry.
    #[test]
    fn closed_streams_leave_no_entry_in_memory() {
        let state = given(&[(1, enrolled(1)), (1, unenrolled(1, 42, 2, UnenrolReason::Semco))]);
        assert!(state.open.is_empty(), "{:?}", state.open);
        assert_eq!(state.open.index_dump(), OpenStreams::default().index_dump(), "no index entry either");
        assert_eq!(state.next_instance_id, 2, "the id stays used");
        assert_eq!(state.enrolment_state(1), EnrolmentState::Closed);
    }

    // given an orphaned instance, when the clean-up removes it, then it leaves no entry either.
    #[test]
    fn a_removed_orphan_leaves_no_entry_in_memory() {
        let deleted = LedgerEvent::Enrolment(EnrolmentEvent::InstanceDeleted {
            instance_id: InstanceId(1),
            course_id: CourseId(2),
            reason: UnenrolReason::OrphanCleanup,
        });
        let orphaned = given(&[(1, enrolled(1)), (1, unenrolled(1, 42, 2, UnenrolReason::UserDeleted))]);
        assert_eq!(orphaned.open.orphans().collect::<Vec<_>>(), vec![1]);
        assert_eq!(orphaned.open.holding("B-1"), Some(1), "an orphan keeps its booking ID");
        let mut state = orphaned;
        state.try_apply(&stored(3, "1", &deleted), &deleted).unwrap();
        assert!(state.open.is_empty());
        assert_eq!(state.open.index_dump(), OpenStreams::default().index_dump());
    }

    // given a closed stream, when an event of it is read from the log, then it is refused as
    // following a closed stream, although the stream has no entry.
    #[test]
    fn an_event_after_a_closed_stream_is_still_impossible() {
        let mut state = given(&[(1, enrolled(1)), (1, unenrolled(1, 42, 2, UnenrolReason::Semco))]);
        let again = enrolled(1);
        let error = state.try_apply(&stored(3, "1", &again), &again).unwrap_err();
        assert_eq!((error.event, error.state), ("Enrolled", "closed"));
        assert!(state.open.is_empty());
    }

    // given three instances in a course, when the middle one closes, then the course index
    // keeps the others (removal by (sortorder, instance), no scan) and the next sortorder
    // is still one above the highest.
    #[test]
    fn closing_an_instance_removes_exactly_it_from_its_course() {
        let state = given(&[
            (1, enrolled_in(1, 1, 2, 0)),
            (2, enrolled_in(2, 2, 2, 1)),
            (3, enrolled_in(3, 3, 2, 2)),
            (2, unenrolled(2, 2, 2, UnenrolReason::Semco)),
        ]);
        assert_eq!(state.open.iter().map(|(i, o)| (o.sortorder, i)).collect::<Vec<_>>(), vec![(0, 1), (2, 3)]);
        assert_eq!(state.open.highest_sortorder(2), Some(2));
        assert_eq!(state.next_sortorder(2), 3);
        assert_eq!(state.next_sortorder(9), 0, "a course without instances starts at 0");
    }

    // given a user with live enrolments in two courses and another user, when their live
    // enrolments are asked for, then exactly theirs come back (a range of the ordered index).
    #[test]
    fn live_of_user_is_exactly_the_users_live_enrolments() {
        let state = given(&[
            (1, enrolled_in(1, 7, 2, 0)),
            (2, enrolled_in(2, 7, 3, 0)),
            (3, enrolled_in(3, 8, 2, 1)),
            (4, enrolled_in(4, 6, 2, 2)),
            (2, unenrolled(2, 7, 3, UnenrolReason::Semco)),
            (5, enrolled_in(5, 7, 4, 0)),
        ]);
        assert_eq!(state.live_of_user(7).collect::<Vec<_>>(), vec![1, 5]);
        assert_eq!(state.live_of_user(8).collect::<Vec<_>>(), vec![3]);
        assert_eq!(state.live_of_user(9).count(), 0);
    }

    // given a course's manual instance and a live and an ended manual enrolment, when the
    // state is written as a snapshot payload and read back, then it is the same, and the next
    // SEMCO instance's sortorder is above the manual one.
    #[test]
    fn manual_streams_survive_a_snapshot() {
        use crate::domain::event::{ManualEvent, ManualUnenrolReason};
        let created = LedgerEvent::Manual(ManualEvent::ManualInstanceCreated {
            instance_id: InstanceId(1),
            course_id: CourseId(2),
            sortorder: 0,
            role_id: RoleId(5),
        });
        let enrolled = |user: i64, ue: i64| {
            LedgerEvent::Manual(ManualEvent::ManualEnrolled {
                instance_id: InstanceId(1),
                user_enrolment_id: UserEnrolmentId(ue),
                user_id: UserId(user),
                course_id: CourseId(2),
                timestart: 0,
                timeend: 0,
                suspended: false,
                role_id: RoleId(5),
            })
        };
        let unenrolled = LedgerEvent::Manual(ManualEvent::ManualUnenrolled {
            instance_id: InstanceId(1),
            user_enrolment_id: UserEnrolmentId(11),
            user_id: UserId(8),
            course_id: CourseId(2),
            reason: ManualUnenrolReason::Manual,
        });
        let mut state = LedgerState::default();
        for (n, (key, event)) in
            [("2", created), ("1-7", enrolled(7, 10)), ("1-8", enrolled(8, 11)), ("1-8", unenrolled)].iter().enumerate()
        {
            state.try_apply(&stored(n as i64 + 1, key, event), event).unwrap();
        }
        assert_eq!(state.live_manual_of_user(7).collect::<Vec<_>>(), vec![1]);
        assert_eq!(state.live_manual_of_user(8).count(), 0);
        assert_eq!((state.next_instance_id, state.next_user_enrolment_id, state.next_sortorder(2)), (2, 12, 1));
        let again = enrolled(7, 12);
        assert!(state.try_apply(&stored(5, "1-7", &again), &again).is_err(), "already live");
        let (payload, _) = super::super::snapshot::encode(&state);
        let back = super::super::snapshot::decode_for_tests(&payload);
        assert_eq!(super::super::snapshot::canonical_dump(&back), super::super::snapshot::canonical_dump(&state));
        assert_eq!(back.manual_instances, state.manual_instances);
    }

    // given a state, when it is written as a snapshot payload and read back, then the state
    // (indexes derived again) equals the original.
    #[test]
    fn a_snapshot_payload_gives_the_same_state_back() {
        let state = given(&[
            (1, enrolled_in(1, 7, 2, 0)),
            (2, enrolled_in(2, 8, 2, 1)),
            (2, unenrolled(2, 8, 2, UnenrolReason::UserDeleted)),
            (3, enrolled_in(3, 9, 2, 2)),
            (1, unenrolled(1, 7, 2, UnenrolReason::Semco)),
        ]);
        let (payload, _) = super::super::snapshot::encode(&state);
        let back = super::super::snapshot::decode_for_tests(&payload);
        assert_eq!(super::super::snapshot::canonical_dump(&back), super::super::snapshot::canonical_dump(&state));
    }
}
