//! The pure fold of the log into projection rows. Deterministic: the same events give the same
//! rows, which is what makes "rebuild equals live" and "state as of position P" hold.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::config::{Settings, SETTING_NAMES};
use crate::domain::event::{
    CompletionEvent, ConfigEvent, CourseCompletion, CourseEvent, EnrolmentEvent, UnenrolReason,
};
use crate::domain::recompletion::RecompletionType;
use crate::domain::LedgerEvent;
use crate::store::log::StoredEvent;

/// `enrol` (enrol = 'semco', status = 0 always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolRow {
    pub id: i64,
    pub courseid: i64,
    pub sortorder: i64,
    pub roleid: i64,
    pub customchar1: Option<String>,
    pub timecreated: i64,
    pub timemodified: i64,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionState {
    pub enrol: BTreeMap<i64, EnrolRow>,
    pub user_enrolments: BTreeMap<i64, UserEnrolmentRow>,
    pub course_completions: BTreeMap<(i64, i64), CompletionRow>,
    pub recompletion_history: BTreeMap<i64, RecompletionRow>,
    pub course_recompletion: BTreeMap<i64, RecompletionType>,
    pub config: BTreeMap<String, String>,
}

impl Default for ProjectionState {
    fn default() -> Self {
        let defaults = Settings::default();
        Self {
            enrol: BTreeMap::new(),
            user_enrolments: BTreeMap::new(),
            course_completions: BTreeMap::new(),
            recompletion_history: BTreeMap::new(),
            course_recompletion: BTreeMap::new(),
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
            // Registry and installer events: their rows are the registry's, written with them.
            LedgerEvent::User(_) | LedgerEvent::CourseRecord(_) | LedgerEvent::Install(_) => {}
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
