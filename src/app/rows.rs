//! The projection rows an event writes, from the event and the writer's state after it: the
//! writer's incremental projection path, without a copy of the rows in memory. It must give
//! the same rows as the fold (`projection::state`): the rebuild property test
//! (tests/it/rebuild_property.rs) and `verify` compare the tables it writes with a fresh fold.

use super::state::LedgerState;
use crate::domain::criteria::TYPE_GRADE;
use crate::domain::event::{CompletionEvent, ConfigEvent, CourseEvent, CriteriaEvent, EnrolmentEvent, UnenrolReason};
use crate::domain::LedgerEvent;
use crate::projection::state::{
    criteria_row, enrolled_rows, manual_rows, seconds, CompletionRow, ManualRow, RecompletionRow, RowKey,
};
use crate::projection::writes::{Patch, Row, RowWrite};
use crate::store::log::StoredEvent;

/// What `event` (stored as `stored`) does to the projection rows, given the writer's state
/// `after` it was applied.
pub fn rows_for(stored: &StoredEvent, event: &LedgerEvent, after: &LedgerState) -> Vec<RowWrite> {
    let now = seconds(stored.recorded_at);
    let modifier = stored.actor_user_id.unwrap_or(0);
    match event {
        // Tokens live in `external_tokens`, not in a projection.
        LedgerEvent::Token(_) => Vec::new(),
        // Web accounts live in `web_accounts`, not in a projection.
        LedgerEvent::Account(_) => Vec::new(),
        LedgerEvent::Enrolment(e) => enrolment_rows(stored, e, after, now, modifier),
        LedgerEvent::Completion(CompletionEvent::CompletionRecorded { user_id, course_id, completion }) => {
            vec![RowWrite::Put(Row::Completion(CompletionRow {
                userid: user_id.0,
                course: course_id.0,
                completion: *completion,
            }))]
        }
        LedgerEvent::Completion(CompletionEvent::CompletionReset {
            user_id,
            course_id,
            user_enrolment_id,
            archived,
        }) => {
            // A reset does not change the enrolment: its booking is the live one's.
            let booking =
                after.open.instance_of(user_enrolment_id.0).and_then(|i| after.live_booking(i)).map(str::to_owned);
            vec![
                RowWrite::Delete(RowKey::Completion(user_id.0, course_id.0)),
                RowWrite::Put(Row::Recompletion(RecompletionRow {
                    id: stored.position,
                    userid: user_id.0,
                    course: course_id.0,
                    enrolid: user_enrolment_id.0,
                    semcobookingid: booking,
                    archived: *archived,
                    timereset: now,
                })),
            ]
        }
        LedgerEvent::Course(CourseEvent::RecompletionTypeSet { course_id, new, .. }) => {
            vec![RowWrite::Put(Row::CourseRecompletion { course: course_id.0, kind: *new })]
        }
        LedgerEvent::Config(ConfigEvent::ConfigChanged { name, new, .. }) => {
            vec![RowWrite::Put(Row::Config { name: name.clone(), value: new.clone() })]
        }
        LedgerEvent::Manual(e) => manual_rows(e, now, modifier)
            .into_iter()
            .map(|row| match row {
                ManualRow::Enrol(r) => RowWrite::Put(Row::Enrol(r)),
                ManualRow::UserEnrolment(r) => RowWrite::Put(Row::UserEnrolment(r)),
                ManualRow::Patch { id, timestart, timeend, status } => RowWrite::Patch(Patch::UserEnrolment {
                    id,
                    timestart,
                    timeend,
                    status,
                    modifierid: modifier,
                    timemodified: now,
                }),
                ManualRow::Delete(id) => RowWrite::Delete(RowKey::UserEnrolment(id)),
            })
            .collect(),
        LedgerEvent::Criteria(CriteriaEvent::CompletionCriteriaSet { course_id, new, .. }) => {
            vec![match criteria_row(course_id.0, new) {
                Some(row) => RowWrite::Put(Row::Criteria(row)),
                None => RowWrite::Delete(RowKey::Criteria(course_id.0, TYPE_GRADE)),
            }]
        }
        // Registry and installer events: their rows are the registry's, written with them.
        LedgerEvent::User(_) | LedgerEvent::CourseRecord(_) | LedgerEvent::Install(_) => Vec::new(),
        // Muted health checks are small state of the health check (`app::health`), not a projection.
        LedgerEvent::Health(_) => Vec::new(),
        // A compensating event writes the rows of the event it mirrors.
        LedgerEvent::Undo(e) => rows_for(stored, &e.as_effect(), after),
    }
}

fn enrolment_rows(
    stored: &StoredEvent,
    event: &EnrolmentEvent,
    after: &LedgerState,
    now: i64,
    modifier: i64,
) -> Vec<RowWrite> {
    match event {
        EnrolmentEvent::Enrolled { .. } => enrolled_rows(event, now, modifier)
            .map(|(enrol, user_enrolment)| {
                vec![RowWrite::Put(Row::Enrol(enrol)), RowWrite::Put(Row::UserEnrolment(user_enrolment))]
            })
            .unwrap_or_default(),
        EnrolmentEvent::EnrolmentEdited { user_enrolment_id, timestart, timeend, suspended } => {
            if after.live_by_user_enrolment(user_enrolment_id.0).is_none() {
                return Vec::new();
            }
            vec![RowWrite::Patch(Patch::UserEnrolment {
                id: user_enrolment_id.0,
                timestart: timestart.map(|c| c.new),
                timeend: timeend.map(|c| c.new),
                status: suspended.map(|c| i64::from(c.new)),
                modifierid: modifier,
                timemodified: now,
            })]
        }
        EnrolmentEvent::BookingIdChanged { instance_id, new, .. } => {
            if !after.open.contains(instance_id.0) {
                return Vec::new();
            }
            vec![RowWrite::Patch(Patch::EnrolBooking { id: instance_id.0, customchar1: new.as_str().to_owned() })]
        }
        EnrolmentEvent::Unenrolled { user_enrolment_id, reason, .. } => {
            // Only a live enrolment can be unenrolled; its instance is its stream.
            let mut writes = vec![RowWrite::Delete(RowKey::UserEnrolment(user_enrolment_id.0))];
            if *reason != UnenrolReason::UserDeleted {
                if let Ok(instance) = stored.stream_key.parse::<i64>() {
                    writes.push(RowWrite::Delete(RowKey::Enrol(instance)));
                }
            }
            writes
        }
        EnrolmentEvent::InstanceDeleted { instance_id, .. } => vec![RowWrite::Delete(RowKey::Enrol(instance_id.0))],
    }
}

/// Given a history of events, when each event's row writes are derived from the writer's
/// state after it (one event per batch, or all in one batch), then the rows equal the fold's.
#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::domain::column::GradeValue;
    use crate::domain::criteria::Criteria;
    use crate::domain::event::{Change, CourseCompletion, Grade, ManualEvent, ManualUnenrolReason};
    use crate::domain::ids::{BookingId, CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
    use crate::domain::recompletion::RecompletionType;
    use crate::projection::writes::PendingWrites;
    use crate::projection::ProjectionState;

    fn enrolled(instance: i64, user: i64, course: i64, booking: &str) -> LedgerEvent {
        LedgerEvent::Enrolment(EnrolmentEvent::Enrolled {
            instance_id: InstanceId(instance),
            user_enrolment_id: UserEnrolmentId(instance + 100),
            user_id: UserId(user),
            course_id: CourseId(course),
            booking_id: BookingId::parse(booking).unwrap(),
            timestart: 10,
            timeend: 0,
            suspended: false,
            role_id: RoleId(5),
            sortorder: instance,
        })
    }

    fn manual(event: ManualEvent) -> LedgerEvent {
        LedgerEvent::Manual(event)
    }

    fn manual_enrolled(user_enrolment: i64) -> LedgerEvent {
        manual(ManualEvent::ManualEnrolled {
            instance_id: InstanceId(50),
            user_enrolment_id: UserEnrolmentId(user_enrolment),
            user_id: UserId(7),
            course_id: CourseId(2),
            timestart: 0,
            timeend: 0,
            suspended: false,
            role_id: RoleId(5),
        })
    }

    fn criteria(pass: Option<f64>) -> LedgerEvent {
        let grade = pass.map(GradeValue::unchecked);
        LedgerEvent::Criteria(CriteriaEvent::CompletionCriteriaSet {
            course_id: CourseId(if pass == Some(50.0) { 2 } else { 3 }),
            old: Criteria::default(),
            new: Criteria { grade },
        })
    }

    fn completion(time: i64) -> CourseCompletion {
        let g = GradeValue::unchecked(1.5);
        CourseCompletion {
            timecompleted: time,
            grade: Some(Grade { finalgrade: g, grademin: g, grademax: g, gradepass: g }),
        }
    }

    /// (stream key, event) pairs covering every event type and every row write.
    fn history() -> Vec<(String, LedgerEvent)> {
        let unenrolled = |instance: i64, user: i64, course: i64, reason| {
            LedgerEvent::Enrolment(EnrolmentEvent::Unenrolled {
                user_enrolment_id: UserEnrolmentId(instance + 100),
                user_id: UserId(user),
                course_id: CourseId(course),
                reason,
            })
        };
        let e = |instance: i64, event: LedgerEvent| (instance.to_string(), event);
        let c = |event: LedgerEvent| ("7/2".to_owned(), event);
        vec![
            e(1, enrolled(1, 7, 2, "A")),
            e(2, enrolled(2, 8, 2, "B")),
            e(
                1,
                LedgerEvent::Enrolment(EnrolmentEvent::EnrolmentEdited {
                    user_enrolment_id: UserEnrolmentId(101),
                    timestart: Some(Change { old: 10, new: 11 }),
                    timeend: None,
                    suspended: Some(Change { old: false, new: true }),
                }),
            ),
            e(
                1,
                LedgerEvent::Enrolment(EnrolmentEvent::EnrolmentEdited {
                    user_enrolment_id: UserEnrolmentId(101),
                    timestart: None,
                    timeend: Some(Change { old: 0, new: 99 }),
                    suspended: None,
                }),
            ),
            e(
                1,
                LedgerEvent::Enrolment(EnrolmentEvent::BookingIdChanged {
                    instance_id: InstanceId(1),
                    old: BookingId::parse("A").unwrap(),
                    new: BookingId::parse("A2").unwrap(),
                }),
            ),
            c(LedgerEvent::Completion(CompletionEvent::CompletionRecorded {
                user_id: UserId(7),
                course_id: CourseId(2),
                completion: completion(50),
            })),
            c(LedgerEvent::Completion(CompletionEvent::CompletionReset {
                user_id: UserId(7),
                course_id: CourseId(2),
                user_enrolment_id: UserEnrolmentId(101),
                archived: Some(completion(50)),
            })),
            e(2, unenrolled(2, 8, 2, UnenrolReason::UserDeleted)),
            e(
                2,
                LedgerEvent::Enrolment(EnrolmentEvent::InstanceDeleted {
                    instance_id: InstanceId(2),
                    course_id: CourseId(2),
                    reason: UnenrolReason::OrphanCleanup,
                }),
            ),
            e(1, unenrolled(1, 7, 2, UnenrolReason::Semco)),
            e(3, enrolled(3, 7, 2, "A")),
            (
                "2".to_owned(),
                LedgerEvent::Course(CourseEvent::RecompletionTypeSet {
                    course_id: CourseId(2),
                    old: RecompletionType::Disabled,
                    new: RecompletionType::Period,
                }),
            ),
            (
                "2".to_owned(),
                manual(ManualEvent::ManualInstanceCreated {
                    instance_id: InstanceId(50),
                    course_id: CourseId(2),
                    sortorder: 4,
                    role_id: RoleId(5),
                }),
            ),
            ("50-7".to_owned(), manual_enrolled(150)),
            (
                "50-7".to_owned(),
                manual(ManualEvent::ManualEnrolmentEdited {
                    instance_id: InstanceId(50),
                    user_enrolment_id: UserEnrolmentId(150),
                    user_id: UserId(7),
                    timestart: Some(Change { old: 0, new: 5 }),
                    timeend: None,
                    suspended: Some(Change { old: false, new: true }),
                    role_id: Some(Change { old: RoleId(5), new: RoleId(3) }),
                }),
            ),
            (
                "50-7".to_owned(),
                manual(ManualEvent::ManualUnenrolled {
                    instance_id: InstanceId(50),
                    user_enrolment_id: UserEnrolmentId(150),
                    user_id: UserId(7),
                    course_id: CourseId(2),
                    reason: ManualUnenrolReason::Manual,
                }),
            ),
            ("50-7".to_owned(), manual_enrolled(151)),
            ("2".to_owned(), criteria(Some(50.0))),
            ("3".to_owned(), criteria(Some(10.0))),
            ("3".to_owned(), criteria(None)),
            (
                "site".to_owned(),
                LedgerEvent::Config(ConfigEvent::ConfigChanged {
                    name: "overlap_rule".into(),
                    old: "enrol_semco".into(),
                    new: "strict".into(),
                    by: None,
                }),
            ),
        ]
    }

    fn stored(position: i64, stream_key: &str, event: &LedgerEvent) -> StoredEvent {
        StoredEvent {
            position,
            stream_id: String::new(),
            stream_type: String::new(),
            stream_key: stream_key.into(),
            stream_version: position,
            event_type: event.event_type().into(),
            schema_version: 1,
            recorded_at: position * 1_000_000 + 5,
            actor_user_id: Some(position % 3),
            actor_token_id: None,
            request_id: String::new(),
            booking_id: None,
            payload: String::new(),
            hash: format!("h{position}"),
        }
    }

    fn fold_rows(state: &ProjectionState) -> BTreeMap<RowKey, Row> {
        let mut rows = BTreeMap::new();
        for r in state.enrol.values() {
            rows.insert(RowKey::Enrol(r.id), Row::Enrol(r.clone()));
        }
        for r in state.user_enrolments.values() {
            rows.insert(RowKey::UserEnrolment(r.id), Row::UserEnrolment(r.clone()));
        }
        for r in state.course_completions.values() {
            rows.insert(RowKey::Completion(r.userid, r.course), Row::Completion(r.clone()));
        }
        for r in state.recompletion_history.values() {
            rows.insert(RowKey::Recompletion(r.id), Row::Recompletion(r.clone()));
        }
        for (course, kind) in &state.course_recompletion {
            rows.insert(RowKey::CourseRecompletion(*course), Row::CourseRecompletion { course: *course, kind: *kind });
        }
        for r in state.criteria.values() {
            rows.insert(RowKey::Criteria(r.course, r.criteriatype), Row::Criteria(r.clone()));
        }
        for (name, value) in &state.config {
            rows.insert(RowKey::Config(name.clone()), Row::Config { name: name.clone(), value: value.clone() });
        }
        rows
    }

    /// Folds the history both ways, cutting it into batches of `batch` events.
    fn both_ways(batch: usize) -> (BTreeMap<RowKey, Row>, BTreeMap<RowKey, Row>) {
        let mut fold = ProjectionState::default();
        let mut writer = LedgerState::default();
        let mut tables = fold_rows(&fold);
        let mut pending = PendingWrites::default();
        for (n, (key, event)) in history().iter().enumerate() {
            let stored = stored(n as i64 + 1, key, event);
            fold.apply(&stored, event, &mut BTreeSet::new());
            writer.apply(&stored, event);
            pending.extend(rows_for(&stored, event, &writer));
            if (n + 1) % batch == 0 {
                std::mem::take(&mut pending).apply_to(&mut tables);
            }
        }
        pending.apply_to(&mut tables);
        (tables, fold_rows(&fold))
    }

    #[test]
    fn one_event_per_batch_writes_the_rows_of_the_fold() {
        let (written, folded) = both_ways(1);
        assert_eq!(written, folded);
        assert!(folded.contains_key(&RowKey::Recompletion(7)), "the reset is in the history");
    }

    #[test]
    fn merged_batches_write_the_rows_of_the_fold() {
        for batch in [2, 3, 5, 100] {
            let (written, folded) = both_ways(batch);
            assert_eq!(written, folded, "batches of {batch}");
        }
    }

    // given a live enrolment, when its completion is reset, then the archived row names the
    // enrolment's current booking ID (the writer's state, not a copy of the enrol row).
    #[test]
    fn a_reset_archives_under_the_live_booking_id() {
        let mut writer = LedgerState::default();
        let events = history();
        for (n, (key, event)) in events.iter().take(6).enumerate() {
            writer.apply(&stored(n as i64 + 1, key, event), event);
        }
        let (key, reset) = &events[6];
        let stored = stored(7, key, reset);
        writer.apply(&stored, reset);
        let writes = rows_for(&stored, reset, &writer);
        let Some(RowWrite::Put(Row::Recompletion(row))) = writes.get(1) else { panic!("{writes:?}") };
        assert_eq!(row.semcobookingid.as_deref(), Some("A2"));
        assert_eq!(writes[0], RowWrite::Delete(RowKey::Completion(7, 2)));
    }
}
