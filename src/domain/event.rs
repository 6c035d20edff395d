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
    /// `by`: who changed it from a page or the CLI (absent for web-service calls, whose token
    /// and user are the event's actor, and in older logs).
    ConfigChanged {
        name: String,
        old: String,
        new: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<ChangedBy>,
    },
}

/// What a token event says about its token (stream `token-{id}`): never the token nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFacts {
    pub token_id: i64,
    pub service: String,
    pub user_id: UserId,
    /// Unix time after which the token stops working; 0: no limit.
    pub valid_until: i64,
    /// Comma-separated addresses and CIDR ranges; empty: any address.
    pub ip_restriction: String,
    /// Who made the change: `cli:<command>` or `server` (expiry), with the OS user where known.
    pub actor: String,
    pub reason: String,
}

/// Token changes, written by any process to the token outbox and appended by the writer
/// (docs/EVENTS.md). A token stream has its `TokenCreated` (version 1) and at most one of the
/// others (version 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TokenEvent {
    TokenCreated(TokenFacts),
    TokenRevoked(TokenFacts),
    /// Revoked by `token rotate`; the replacement has its own `TokenCreated`.
    TokenRotated(TokenFacts),
    /// Deleted by the first call made with it after its `valid_until`.
    TokenExpired(TokenFacts),
}

impl TokenEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::TokenCreated(_) => "TokenCreated",
            Self::TokenRevoked(_) => "TokenRevoked",
            Self::TokenRotated(_) => "TokenRotated",
            Self::TokenExpired(_) => "TokenExpired",
        }
    }

    pub fn facts(&self) -> &TokenFacts {
        match self {
            Self::TokenCreated(f) | Self::TokenRevoked(f) | Self::TokenRotated(f) | Self::TokenExpired(f) => f,
        }
    }
}

/// Why a manual user enrolment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManualUnenrolReason {
    /// `enrol_manual_unenrol_users`.
    Manual,
    UserDeleted,
}

impl ManualUnenrolReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::UserDeleted => "user_deleted",
        }
    }
}

/// Manual enrolments (`enrol_manual`): the course's one `manual` instance (stream
/// `manual_instance-{course}`) and each (instance, user) stream `manual-{instance}-{user}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ManualEvent {
    /// The course got its manual enrolment instance (with the course, or at the first start of a
    /// version that has them, for courses of older logs).
    ManualInstanceCreated { instance_id: InstanceId, course_id: CourseId, sortorder: i64, role_id: RoleId },
    ManualEnrolled {
        instance_id: InstanceId,
        user_enrolment_id: UserEnrolmentId,
        user_id: UserId,
        course_id: CourseId,
        timestart: i64,
        timeend: i64,
        suspended: bool,
        role_id: RoleId,
    },
    /// An enrol call for an enrolled user changed these fields (only the changed ones present).
    ManualEnrolmentEdited {
        instance_id: InstanceId,
        user_enrolment_id: UserEnrolmentId,
        user_id: UserId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timestart: Option<Change<i64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeend: Option<Change<i64>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        suspended: Option<Change<bool>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_id: Option<Change<RoleId>>,
    },
    ManualUnenrolled {
        instance_id: InstanceId,
        user_enrolment_id: UserEnrolmentId,
        user_id: UserId,
        course_id: CourseId,
        reason: ManualUnenrolReason,
    },
}

impl ManualEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ManualInstanceCreated { .. } => "ManualInstanceCreated",
            Self::ManualEnrolled { .. } => "ManualEnrolled",
            Self::ManualEnrolmentEdited { .. } => "ManualEnrolmentEdited",
            Self::ManualUnenrolled { .. } => "ManualUnenrolled",
        }
    }
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

/// Compensating events: each undoes an earlier event (`undoes`, its position) by a new one;
/// the undone event stays in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UndoEvent {
    /// An enrolment unenrolled by mistake is back: a new instance and user enrolment (ids are
    /// never reused, as in Moodle) with the same booking ID, user, course, period, status and
    /// role as just before the `Unenrolled` event at `undoes`. Opens its stream as `Enrolled` does.
    EnrolmentReinstated {
        undoes: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
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
    /// The completion that the `CompletionReset` at `undoes` archived is current again.
    CompletionRestored {
        undoes: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        user_id: UserId,
        course_id: CourseId,
        restored: CourseCompletion,
    },
}

impl UndoEvent {
    /// What the event does to its stream and the projections, as the event it mirrors: a
    /// reinstatement opens its stream as `Enrolled`, a restore records as `CompletionRecorded`.
    pub fn as_effect(&self) -> LedgerEvent {
        match self.clone() {
            Self::EnrolmentReinstated {
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
                ..
            } => LedgerEvent::Enrolment(EnrolmentEvent::Enrolled {
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
            }),
            Self::CompletionRestored { user_id, course_id, restored, .. } => {
                LedgerEvent::Completion(CompletionEvent::CompletionRecorded {
                    user_id,
                    course_id,
                    completion: restored,
                })
            }
        }
    }
}

/// A course's completion criteria changed (stream `criteria-{course}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CriteriaEvent {
    CompletionCriteriaSet { course_id: CourseId, old: super::criteria::Criteria, new: super::criteria::Criteria },
}

/// Who changed something from a page or the CLI (not through a web-service token): `via`
/// says where (`web`, `cli`), `account_id` and `account` name the web account (none from the
/// CLI, where `account` is the OS user where known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedBy {
    pub via: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<i64>,
    pub account: String,
}

/// A manager muted or unmuted one health check (stream `health/site`): a muted check still
/// shows its status, greyed, and does not make the overall result an error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum HealthEvent {
    CheckMuted { check: String, reason: String, by: ChangedBy },
    CheckUnmuted { check: String, by: ChangedBy },
}

impl HealthEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::CheckMuted { .. } => "CheckMuted",
            Self::CheckUnmuted { .. } => "CheckUnmuted",
        }
    }
}

/// A web sign-in account changed (stream `account/{id}`; src/web, docs/EVENTS.md). Written by
/// any process to `account_outbox` with the `web_accounts` row and appended by the writer.
/// `actor` says who made the change (`cli:account add`, or `web:<id>:<username>` for a web
/// account); sign-ins and failed sign-ins are log lines, not events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AccountEvent {
    AccountAdded {
        account_id: i64,
        username: String,
        role: String,
        actor: String,
        reason: String,
    },
    /// The account and every session of it were deleted.
    AccountRemoved {
        account_id: i64,
        username: String,
        actor: String,
        reason: String,
    },
    /// A new password hash was stored and every session of the account ended.
    AccountPasswordChanged {
        account_id: i64,
        username: String,
        actor: String,
        reason: String,
    },
}

impl AccountEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::AccountAdded { .. } => "AccountAdded",
            Self::AccountRemoved { .. } => "AccountRemoved",
            Self::AccountPasswordChanged { .. } => "AccountPasswordChanged",
        }
    }

    pub fn account_id(&self) -> i64 {
        match self {
            Self::AccountAdded { account_id, .. }
            | Self::AccountRemoved { account_id, .. }
            | Self::AccountPasswordChanged { account_id, .. } => *account_id,
        }
    }
}

impl From<AccountEvent> for LedgerEvent {
    fn from(e: AccountEvent) -> Self {
        Self::Account(e)
    }
}

/// Any event of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LedgerEvent {
    Enrolment(EnrolmentEvent),
    Completion(CompletionEvent),
    Course(CourseEvent),
    Config(ConfigEvent),
    Token(TokenEvent),
    Manual(ManualEvent),
    Criteria(CriteriaEvent),
    User(UserEvent),
    CourseRecord(CourseRecordEvent),
    Install(InstallEvent),
    Undo(UndoEvent),
    Health(HealthEvent),
    Account(AccountEvent),
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
            Self::Token(e) => e.event_type(),
            Self::Manual(e) => e.event_type(),
            Self::Criteria(CriteriaEvent::CompletionCriteriaSet { .. }) => "CompletionCriteriaSet",
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
            Self::Undo(UndoEvent::EnrolmentReinstated { .. }) => "EnrolmentReinstated",
            Self::Undo(UndoEvent::CompletionRestored { .. }) => "CompletionRestored",
            Self::Health(e) => e.event_type(),
            Self::Account(e) => e.event_type(),
        }
    }

    /// A short human reason for history listings, where the event carries one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Enrolment(EnrolmentEvent::Unenrolled { reason, .. })
            | Self::Enrolment(EnrolmentEvent::InstanceDeleted { reason, .. }) => Some(reason.as_str()),
            Self::Manual(ManualEvent::ManualUnenrolled { reason, .. }) => Some(reason.as_str()),
            _ => None,
        }
    }
}

impl LedgerEvent {
    /// Decodes a current-schema payload whose type its log row names, straight into the one
    /// family that type belongs to: a single pass over the text. The untagged `LedgerEvent`
    /// would buffer the payload and try each family in turn, which was most of the cost of
    /// reading the log (issue 7). A type this table does not name falls back to that path.
    pub fn decode_named(event_type: &str, payload: &str) -> serde_json::Result<Self> {
        use serde_json::from_str;
        Ok(match event_type {
            "Enrolled" | "EnrolmentEdited" | "BookingIdChanged" | "Unenrolled" | "InstanceDeleted" => {
                Self::Enrolment(from_str(payload)?)
            }
            "CompletionRecorded" | "CompletionReset" => Self::Completion(from_str(payload)?),
            "RecompletionTypeSet" => Self::Course(from_str(payload)?),
            "ConfigChanged" => Self::Config(from_str(payload)?),
            "TokenCreated" | "TokenRevoked" | "TokenRotated" | "TokenExpired" => Self::Token(from_str(payload)?),
            "ManualInstanceCreated" | "ManualEnrolled" | "ManualEnrolmentEdited" | "ManualUnenrolled" => {
                Self::Manual(from_str(payload)?)
            }
            "CompletionCriteriaSet" => Self::Criteria(from_str(payload)?),
            "UserRegistered" | "UserUpdated" | "UserDeleted" => Self::User(from_str(payload)?),
            "CourseCreated" | "CourseUpdated" => Self::CourseRecord(from_str(payload)?),
            "InstallStepDone" => Self::Install(from_str(payload)?),
            "EnrolmentReinstated" | "CompletionRestored" => Self::Undo(from_str(payload)?),
            "CheckMuted" | "CheckUnmuted" => Self::Health(from_str(payload)?),
            "AccountAdded" | "AccountRemoved" | "AccountPasswordChanged" => Self::Account(from_str(payload)?),
            _ => from_str(payload)?,
        })
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

impl From<TokenEvent> for LedgerEvent {
    fn from(e: TokenEvent) -> Self {
        Self::Token(e)
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
impl From<ManualEvent> for LedgerEvent {
    fn from(e: ManualEvent) -> Self {
        Self::Manual(e)
    }
}
impl From<CriteriaEvent> for LedgerEvent {
    fn from(e: CriteriaEvent) -> Self {
        Self::Criteria(e)
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
impl From<UndoEvent> for LedgerEvent {
    fn from(e: UndoEvent) -> Self {
        Self::Undo(e)
    }
}
impl From<InstallEvent> for LedgerEvent {
    fn from(e: InstallEvent) -> Self {
        Self::Install(e)
    }
}
impl From<HealthEvent> for LedgerEvent {
    fn from(e: HealthEvent) -> Self {
        Self::Health(e)
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    /// The variant names a family's enum accepts, read from serde's own "unknown variant"
    /// message, so the list cannot fall behind the enum.
    fn variants<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let error = serde_json::from_str::<T>(r#"{"type":"NoSuchEventType"}"#).unwrap_err().to_string();
        let names: Vec<String> = error.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        assert_eq!(names.first().map(String::as_str), Some("NoSuchEventType"), "{error}");
        names[1..].to_vec()
    }

    /// Regression (issue 7, item 3): every event type of every family is decoded by
    /// `decode_named` into its own family, never by the untagged fallback or a wrong family.
    #[test]
    fn decode_named_knows_every_event_type_and_its_family() {
        let families = [
            variants::<EnrolmentEvent>(),
            variants::<CompletionEvent>(),
            variants::<CourseEvent>(),
            variants::<ConfigEvent>(),
            variants::<TokenEvent>(),
            variants::<ManualEvent>(),
            variants::<CriteriaEvent>(),
            variants::<UserEvent>(),
            variants::<CourseRecordEvent>(),
            variants::<InstallEvent>(),
            variants::<UndoEvent>(),
            variants::<HealthEvent>(),
            variants::<AccountEvent>(),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for name in families.iter().flatten() {
            assert!(seen.insert(name.clone()), "{name} is in two families");
            // A bare tag lacks the variant's fields: the family's own decoder says which one is
            // missing; a wrong family says "unknown variant", the fallback "untagged enum".
            match LedgerEvent::decode_named(name, &format!(r#"{{"type":"{name}"}}"#)) {
                Ok(event) => assert_eq!(event.event_type(), name),
                Err(error) => {
                    let error = error.to_string();
                    assert!(!error.contains("unknown variant") && !error.contains("untagged"), "{name}: {error}");
                }
            }
        }
        assert!(seen.len() >= 30, "{seen:?}");
    }

    #[test]
    fn decode_named_equals_the_untagged_decode() {
        let event = LedgerEvent::Health(HealthEvent::CheckUnmuted {
            check: "writer".into(),
            by: ChangedBy { via: "cli".into(), account_id: None, account: "ops".into() },
        });
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(LedgerEvent::decode_named(event.event_type(), &text).unwrap(), event);
        assert_eq!(serde_json::from_str::<LedgerEvent>(&text).unwrap(), event);
    }
}
