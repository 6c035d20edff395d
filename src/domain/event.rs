//! Every event the ledger records, grouped by the aggregate that emits it.
//!
//! Payloads hold ids and facts, never personal data. Each serialises as a JSON object tagged
//! with its type (`{"type":"Enrolled",...}`); `SCHEMA_VERSION` is stored beside it so an old
//! payload can be upcast when a definition changes. docs/EVENTS.md describes every field.

use super::column::GradeValue;
use super::ids::{BookingId, CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
use super::recompletion::RecompletionType;
use serde::{Deserialize, Serialize};

/// The schema version written with every new event.
pub const SCHEMA_VERSION: i32 = 1;

/// An old and a new value of one changed field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change<T> {
    pub old: T,
    pub new: T,
}

impl<T: PartialEq + Copy> Change<T> {
    /// `Some` only when the value really changes: Moodle writes a row only on change.
    pub fn between(old: T, new: T) -> Option<Self> {
        (old != new).then_some(Self { old, new })
    }
}

impl<T: PartialEq + Clone> Change<T> {
    /// `between` for values that are not `Copy` (texts): `Some` only when `new` is given and
    /// differs from `old`.
    pub fn of(old: &T, new: Option<&T>) -> Option<Self> {
        new.filter(|new| *new != old).map(|new| Self { old: old.clone(), new: new.clone() })
    }
}

/// Why a user enrolment or an enrolment instance went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnenrolReason {
    Semco,
    UserDeleted,
    CourseDeleted,
    OrphanCleanup,
}

impl UnenrolReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Semco => "semco",
            Self::UserDeleted => "user_deleted",
            Self::CourseDeleted => "course_deleted",
            Self::OrphanCleanup => "orphan_cleanup",
        }
    }
}

/// A course total grade as local_recompletion archives it, each value a `numeric(10,5)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    pub finalgrade: GradeValue,
    pub grademin: GradeValue,
    pub grademax: GradeValue,
    pub gradepass: GradeValue,
}

/// A user's completion of a course.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CourseCompletion {
    pub timecompleted: i64,
    pub grade: Option<Grade>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EnrolmentEvent {
    /// A booking got its own enrolment instance with one user enrolment.
    Enrolled {
        instance_id: InstanceId,
        user_enrolment_id: UserEnrolmentId,
        user_id: UserId,
        course_id: CourseId,
        booking_id: BookingId,
        timestart: i64,
        timeend: i64,
        suspended: bool,
        role_id: RoleId,
        sortorder: i64,
    },
    /// Period or status changed; only the changed fields are present.
    EnrolmentEdited {
        user_enrolment_id: UserEnrolmentId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestart: Option<Change<i64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeend: Option<Change<i64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suspended: Option<Change<bool>>,
    },
    BookingIdChanged {
        instance_id: InstanceId,
        old: BookingId,
        new: BookingId,
    },
    /// The user enrolment ended. With reason `user_deleted` the instance stays, empty, until
    /// the orphan clean-up; with any other reason the instance goes with it.
    Unenrolled {
        user_enrolment_id: UserEnrolmentId,
        user_id: UserId,
        course_id: CourseId,
        reason: UnenrolReason,
    },
    /// An empty (orphaned) instance was removed; its booking ID is free again.
    InstanceDeleted {
        instance_id: InstanceId,
        course_id: CourseId,
        reason: UnenrolReason,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CompletionEvent {
    /// The LMS reported a completion; it replaces the current one.
    CompletionRecorded { user_id: UserId, course_id: CourseId, completion: CourseCompletion },
    /// SEMCO reset the completion through a user enrolment; `archived` is what was cleared.
    CompletionReset {
        user_id: UserId,
        course_id: CourseId,
        user_enrolment_id: UserEnrolmentId,
        archived: Option<CourseCompletion>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CourseEvent {
    RecompletionTypeSet { course_id: CourseId, old: RecompletionType, new: RecompletionType },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ConfigEvent {
    ConfigChanged { name: String, old: String, new: String },
}

/// The user registry's changes (stream `user/{id}`). Personal values (username, names, e-mail,
/// ID number, profile fields) stay in the registry: an event names the personal fields a call
/// wrote (`fields`) and carries old and new values only of the non-personal ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    /// `core_user_create_users` created the user; `fields` are the personal fields it filled.
    UserRegistered { user_id: UserId, auth: String, suspended: bool, fields: Vec<String> },
    /// `core_user_update_users` changed the user; only changed non-personal fields are present.
    UserUpdated {
        user_id: UserId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fields: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<Change<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suspended: Option<Change<bool>>,
    },
    /// `core_user_delete_users` deleted the user (`deleted` 0 → 1) and erased every personal
    /// field of the registry row; the user's enrolments ended just before, in their streams.
    UserDeleted { user_id: UserId },
}

/// A course's registry record as created (course data is not personal: every value is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseRecord {
    pub fullname: String,
    pub shortname: String,
    pub categoryid: i64,
    pub idnumber: String,
    pub summary: String,
    pub visible: bool,
    pub enablecompletion: bool,
    pub startdate: i64,
    pub enddate: i64,
}

/// The course registry's changes (stream `course/{id}`, beside `RecompletionTypeSet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CourseRecordEvent {
    /// `core_course_create_courses` created the course.
    CourseCreated { course_id: CourseId, record: CourseRecord },
    /// `core_course_update_courses` changed the course; only changed fields are present, each
    /// with its old and new value. No event when nothing changed.
    CourseUpdated {
        course_id: CourseId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fullname: Option<Change<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shortname: Option<Change<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        categoryid: Option<Change<i64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idnumber: Option<Change<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<Change<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible: Option<Change<bool>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enablecompletion: Option<Change<bool>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        startdate: Option<Change<i64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enddate: Option<Change<i64>>,
    },
}

/// The first-start installer's steps (stream `install/site`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InstallEvent {
    /// One step of enrol_semco's installer done: `step` names it (`webservices`, `role`,
    /// `service_user`, `service`, `profile_fields`, `semco_token`), `detail` says what it set
    /// up in ids and names of the plugin (never a token).
    InstallStepDone { step: String, detail: String },
}

/// Any event of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LedgerEvent {
    Enrolment(EnrolmentEvent),
    Completion(CompletionEvent),
    Course(CourseEvent),
    Config(ConfigEvent),
    User(UserEvent),
    CourseRecord(CourseRecordEvent),
    Install(InstallEvent),
}

impl EnrolmentEvent {
    /// The type name stored in the log's `event_type` column (the same as the payload tag).
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Enrolled { .. } => "Enrolled",
            Self::EnrolmentEdited { .. } => "EnrolmentEdited",
            Self::BookingIdChanged { .. } => "BookingIdChanged",
            Self::Unenrolled { .. } => "Unenrolled",
            Self::InstanceDeleted { .. } => "InstanceDeleted",
        }
    }
}

impl LedgerEvent {
    /// The type name stored in the log's `event_type` column (the same as the payload tag).
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Enrolment(e) => e.event_type(),
            Self::Completion(e) => match e {
                CompletionEvent::CompletionRecorded { .. } => "CompletionRecorded",
                CompletionEvent::CompletionReset { .. } => "CompletionReset",
            },
            Self::Course(CourseEvent::RecompletionTypeSet { .. }) => "RecompletionTypeSet",
            Self::Config(ConfigEvent::ConfigChanged { .. }) => "ConfigChanged",
            Self::User(e) => match e {
                UserEvent::UserRegistered { .. } => "UserRegistered",
                UserEvent::UserUpdated { .. } => "UserUpdated",
                UserEvent::UserDeleted { .. } => "UserDeleted",
            },
            Self::CourseRecord(e) => match e {
                CourseRecordEvent::CourseCreated { .. } => "CourseCreated",
                CourseRecordEvent::CourseUpdated { .. } => "CourseUpdated",
            },
            Self::Install(InstallEvent::InstallStepDone { .. }) => "InstallStepDone",
        }
    }

    /// A short human reason for history listings, where the event carries one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Enrolment(EnrolmentEvent::Unenrolled { reason, .. })
            | Self::Enrolment(EnrolmentEvent::InstanceDeleted { reason, .. }) => Some(reason.as_str()),
            _ => None,
        }
    }
}

impl esrs::event::Upcaster for LedgerEvent {
    /// Version 1 is the only schema so far: every stored payload deserialises as it is.
    fn upcast(value: serde_json::Value, _version: Option<i32>) -> Result<Self, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn current_version() -> Option<i32> {
        Some(SCHEMA_VERSION)
    }
}

impl From<EnrolmentEvent> for LedgerEvent {
    fn from(e: EnrolmentEvent) -> Self {
        Self::Enrolment(e)
    }
}
impl From<CompletionEvent> for LedgerEvent {
    fn from(e: CompletionEvent) -> Self {
        Self::Completion(e)
    }
}
impl From<CourseEvent> for LedgerEvent {
    fn from(e: CourseEvent) -> Self {
        Self::Course(e)
    }
}
impl From<ConfigEvent> for LedgerEvent {
    fn from(e: ConfigEvent) -> Self {
        Self::Config(e)
    }
}
impl From<UserEvent> for LedgerEvent {
    fn from(e: UserEvent) -> Self {
        Self::User(e)
    }
}
impl From<CourseRecordEvent> for LedgerEvent {
    fn from(e: CourseRecordEvent) -> Self {
        Self::CourseRecord(e)
    }
}
impl From<InstallEvent> for LedgerEvent {
    fn from(e: InstallEvent) -> Self {
        Self::Install(e)
    }
}
