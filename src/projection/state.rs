//! The pure fold of the log into projection rows. Deterministic: the same events give the same
//! rows, which is what makes "rebuild equals live" and "state as of position P" hold.

use std::collections::{BTreeMap, BTreeSet};

use super::rowmap::RowMap;
use crate::domain::column::GradeValue;
use crate::domain::config::{Settings, SETTING_NAMES};
use crate::domain::criteria::{Criteria, TYPE_GRADE};
use crate::domain::event::{
    CompletionEvent, ConfigEvent, CourseCompletion, CourseEvent, CriteriaEvent, EnrolmentEvent, ManualEvent,
    UnenrolReason,
};
use crate::domain::recompletion::RecompletionType;
use crate::domain::LedgerEvent;
use crate::store::log::StoredEvent;

/// `enrol` (status = 0 always): a SEMCO booking's instance or a course's manual instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolRow {
    pub id: i64,
    /// The plugin: `semco` or `manual`.
    pub enrol: &'static str,
    pub courseid: i64,
    pub sortorder: i64,
    pub roleid: i64,
    pub customchar1: Option<String>,
    pub timecreated: i64,
    pub timemodified: i64,
}

/// `course_completion_criteria`: one criterion of a course.
#[derive(Debug, Clone, PartialEq)]
pub struct CriteriaRow {
    pub course: i64,
    pub criteriatype: i64,
    pub gradepass: GradeValue,
}

/// `user_enrolments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEnrolmentRow {
    pub id: i64,
    pub status: i64,
    pub enrolid: i64,
    pub userid: i64,
    pub timestart: i64,
    pub timeend: i64,
    pub modifierid: i64,
    pub timecreated: i64,
    pub timemodified: i64,
}

/// `course_completions`, with the course total grade beside it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRow {
    pub userid: i64,
    pub course: i64,
    pub completion: CourseCompletion,
}

/// `recompletion_history`: one row per reset.
#[derive(Debug, Clone, PartialEq)]
pub struct RecompletionRow {
    pub id: i64,
    pub userid: i64,
    pub course: i64,
    pub enrolid: i64,
    pub semcobookingid: Option<String>,
    pub archived: Option<CourseCompletion>,
    pub timereset: i64,
}

/// A projection row that an event touched, so the writer rewrites only those.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RowKey {
    Enrol(i64),
    UserEnrolment(i64),
    Completion(i64, i64),
    Recompletion(i64),
    CourseRecompletion(i64),
    Config(String),
    /// (course, criteria type).
    Criteria(i64, i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionState {
    pub enrol: RowMap<EnrolRow>,
    pub user_enrolments: RowMap<UserEnrolmentRow>,
    pub course_completions: BTreeMap<(i64, i64), CompletionRow>,
    pub recompletion_history: BTreeMap<i64, RecompletionRow>,
    pub course_recompletion: BTreeMap<i64, RecompletionType>,
    pub config: BTreeMap<String, String>,
    pub criteria: BTreeMap<(i64, i64), CriteriaRow>,
}

impl Default for ProjectionState {
    fn default() -> Self {
        let defaults = Settings::default();
        Self {
            enrol: RowMap::default(),
            user_enrolments: RowMap::default(),
            course_completions: BTreeMap::new(),
            recompletion_history: BTreeMap::new(),
            course_recompletion: BTreeMap::new(),
            criteria: BTreeMap::new(),
            config: SETTING_NAMES
                .iter()
                .map(|name| ((*name).to_owned(), defaults.get(name).unwrap_or_default()))
                .collect(),
        }
    }
}

/// An event's `recorded_at` (microseconds) as the Unix seconds of Moodle's time columns.
pub fn seconds(micros: i64) -> i64 {
    micros.div_euclid(1_000_000)
}

impl ProjectionState {
    /// Folds one stored event in, recording which rows it touched.
    pub fn apply(&mut self, stored: &StoredEvent, event: &LedgerEvent, touched: &mut BTreeSet<RowKey>) {
        let now = seconds(stored.recorded_at);
        let modifier = stored.actor_user_id.unwrap_or(0);
        match event {
            LedgerEvent::Enrolment(e) => self.apply_enrolment(e, now, modifier, touched),
            LedgerEvent::Completion(CompletionEvent::CompletionRecorded { user_id, course_id, completion }) => {
                let key = (user_id.0, course_id.0);
                self.course_completions
                    .insert(key, CompletionRow { userid: key.0, course: key.1, completion: *completion });
                touched.insert(RowKey::Completion(key.0, key.1));
            }
            LedgerEvent::Completion(CompletionEvent::CompletionReset {
                user_id,
                course_id,
                user_enrolment_id,
                archived,
            }) => {
                let key = (user_id.0, course_id.0);
                self.course_completions.remove(&key);
                touched.insert(RowKey::Completion(key.0, key.1));
                let booking = self
                    .user_enrolments
                    .get(&user_enrolment_id.0)
                    .and_then(|ue| self.enrol.get(&ue.enrolid))
                    .and_then(|e| e.customchar1.clone());
                self.recompletion_history.insert(
                    stored.position,
                    RecompletionRow {
                        id: stored.position,
                        userid: key.0,
                        course: key.1,
                        enrolid: user_enrolment_id.0,
                        semcobookingid: booking,
                        archived: *archived,
                        timereset: now,
                    },
                );
                touched.insert(RowKey::Recompletion(stored.position));
            }
            LedgerEvent::Course(CourseEvent::RecompletionTypeSet { course_id, new, .. }) => {
                self.course_recompletion.insert(course_id.0, *new);
                touched.insert(RowKey::CourseRecompletion(course_id.0));
            }
            LedgerEvent::Config(ConfigEvent::ConfigChanged { name, new, .. }) => {
                self.config.insert(name.clone(), new.clone());
                touched.insert(RowKey::Config(name.clone()));
            }
            // Tokens live in `external_tokens`, not in a projection.
            LedgerEvent::Token(_) => {}
            // Web accounts live in `web_accounts`, not in a projection.
            LedgerEvent::Account(_) => {}
            LedgerEvent::Manual(e) => {
                for write in manual_rows(e, now, modifier) {
                    match write {
                        ManualRow::Enrol(row) => {
                            touched.insert(RowKey::Enrol(row.id));
                            self.enrol.insert(row.id, row);
                        }
                        ManualRow::UserEnrolment(row) => {
                            touched.insert(RowKey::UserEnrolment(row.id));
                            self.user_enrolments.insert(row.id, row);
                        }
                        ManualRow::Patch { id, timestart, timeend, status } => {
                            if let Some(row) = self.user_enrolments.get_mut(&id) {
                                row.timestart = timestart.unwrap_or(row.timestart);
                                row.timeend = timeend.unwrap_or(row.timeend);
                                row.status = status.unwrap_or(row.status);
                                row.modifierid = modifier;
                                row.timemodified = now;
                                touched.insert(RowKey::UserEnrolment(id));
                            }
                        }
                        ManualRow::Delete(id) => {
                            self.user_enrolments.remove(&id);
                            touched.insert(RowKey::UserEnrolment(id));
                        }
                    }
                }
            }
            LedgerEvent::Criteria(CriteriaEvent::CompletionCriteriaSet { course_id, new, .. }) => {
                let key = (course_id.0, TYPE_GRADE);
                touched.insert(RowKey::Criteria(key.0, key.1));
                match criteria_row(course_id.0, new) {
                    Some(row) => self.criteria.insert(key, row),
                    None => self.criteria.remove(&key),
                };
            }
            // Registry and installer events: their rows are the registry's, written with them.
            LedgerEvent::User(_) | LedgerEvent::CourseRecord(_) | LedgerEvent::Install(_) | LedgerEvent::Health(_) => {}
            // A compensating event writes the rows of the event it mirrors.
            LedgerEvent::Undo(e) => self.apply(stored, &e.as_effect(), touched),
        }
    }

    fn apply_enrolment(&mut self, event: &EnrolmentEvent, now: i64, modifier: i64, touched: &mut BTreeSet<RowKey>) {
        match event {
            EnrolmentEvent::Enrolled { .. } => {
                if let Some((enrol, user_enrolment)) = enrolled_rows(event, now, modifier) {
                    touched.insert(RowKey::Enrol(enrol.id));
                    touched.insert(RowKey::UserEnrolment(user_enrolment.id));
                    self.enrol.insert(enrol.id, enrol);
                    self.user_enrolments.insert(user_enrolment.id, user_enrolment);
                }
            }
            EnrolmentEvent::EnrolmentEdited { user_enrolment_id, timestart, timeend, suspended } => {
                if let Some(row) = self.user_enrolments.get_mut(&user_enrolment_id.0) {
                    if let Some(c) = timestart {
                        row.timestart = c.new;
                    }
                    if let Some(c) = timeend {
                        row.timeend = c.new;
                    }
                    if let Some(c) = suspended {
                        row.status = i64::from(c.new);
                    }
                    row.modifierid = modifier;
                    row.timemodified = now;
                    touched.insert(RowKey::UserEnrolment(user_enrolment_id.0));
                }
            }
            EnrolmentEvent::BookingIdChanged { instance_id, new, .. } => {
                // Like the plugin, only customchar1 changes; timemodified stays.
                if let Some(row) = self.enrol.get_mut(&instance_id.0) {
                    row.customchar1 = Some(new.as_str().to_owned());
                    touched.insert(RowKey::Enrol(row.id));
                }
            }
            EnrolmentEvent::Unenrolled { user_enrolment_id, reason, .. } => {
                if let Some(ue) = self.user_enrolments.remove(&user_enrolment_id.0) {
                    touched.insert(RowKey::UserEnrolment(ue.id));
                    if *reason != UnenrolReason::UserDeleted {
                        self.enrol.remove(&ue.enrolid);
                        touched.insert(RowKey::Enrol(ue.enrolid));
                    }
                }
            }
            EnrolmentEvent::InstanceDeleted { instance_id, .. } => {
                self.enrol.remove(&instance_id.0);
                touched.insert(RowKey::Enrol(instance_id.0));
            }
        }
    }
}

/// What a manual event does to `enrol` / `user_enrolments`: shared by the fold and the
/// writer's row writes (`app::rows`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualRow {
    Enrol(EnrolRow),
    UserEnrolment(UserEnrolmentRow),
    /// Only the changed columns of a user enrolment (plus modifier and time).
    Patch {
        id: i64,
        timestart: Option<i64>,
        timeend: Option<i64>,
        status: Option<i64>,
    },
    Delete(i64),
}

pub fn manual_rows(event: &ManualEvent, now: i64, modifier: i64) -> Vec<ManualRow> {
    match event {
        ManualEvent::ManualInstanceCreated { instance_id, course_id, sortorder, role_id } => {
            vec![ManualRow::Enrol(EnrolRow {
                id: instance_id.0,
                enrol: "manual",
                courseid: course_id.0,
                sortorder: *sortorder,
                roleid: role_id.0,
                customchar1: None,
                timecreated: now,
                timemodified: now,
            })]
        }
        ManualEvent::ManualEnrolled {
            instance_id, user_enrolment_id, user_id, timestart, timeend, suspended, ..
        } => vec![ManualRow::UserEnrolment(UserEnrolmentRow {
            id: user_enrolment_id.0,
            status: i64::from(*suspended),
            enrolid: instance_id.0,
            userid: user_id.0,
            timestart: *timestart,
            timeend: *timeend,
            modifierid: modifier,
            timecreated: now,
            timemodified: now,
        })],
        ManualEvent::ManualEnrolmentEdited { user_enrolment_id, timestart, timeend, suspended, .. } => {
            vec![ManualRow::Patch {
                id: user_enrolment_id.0,
                timestart: timestart.map(|c| c.new),
                timeend: timeend.map(|c| c.new),
                status: suspended.map(|c| i64::from(c.new)),
            }]
        }
        ManualEvent::ManualUnenrolled { user_enrolment_id, .. } => vec![ManualRow::Delete(user_enrolment_id.0)],
    }
}

/// The `course_completion_criteria` row of a course's grade criterion, if it has one.
pub fn criteria_row(course: i64, criteria: &Criteria) -> Option<CriteriaRow> {
    criteria.grade.map(|gradepass| CriteriaRow { course, criteriatype: TYPE_GRADE, gradepass })
}

/// The `enrol` and `user_enrolments` rows an `Enrolled` event creates (`None` for any other
/// event): the fold and the writer's row writes (`app::rows`) share it.
pub fn enrolled_rows(event: &EnrolmentEvent, now: i64, modifier: i64) -> Option<(EnrolRow, UserEnrolmentRow)> {
    let EnrolmentEvent::Enrolled {
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
    } = event
    else {
        return None;
    };
    let enrol = EnrolRow {
        id: instance_id.0,
        enrol: "semco",
        courseid: course_id.0,
        sortorder: *sortorder,
        roleid: role_id.0,
        customchar1: Some(booking_id.as_str().to_owned()),
        timecreated: now,
        timemodified: now,
    };
    let user_enrolment = UserEnrolmentRow {
        id: user_enrolment_id.0,
        status: i64::from(*suspended),
        enrolid: instance_id.0,
        userid: user_id.0,
        timestart: *timestart,
        timeend: *timeend,
        modifierid: modifier,
        timecreated: now,
        timemodified: now,
    };
    Some((enrol, user_enrolment))
}
