//! Turns a request into events and registry changes against the writer's current state.
//!
//! Pure like the domain: it looks facts up in `LedgerState`, builds the aggregate's command and
//! calls the esrs `Aggregate`; it never touches the database or the clock.

use esrs::Aggregate;

use super::command::{LedgerError, Outcome, RegistryError, Request, UserInput};
use super::state::LedgerState;
use crate::domain::column::{self, Column, ColumnOverflow};
use crate::domain::completion::{Completion, CompletionCommand, ResetTarget};
use crate::domain::config::{Config, SetConfig};
use crate::domain::course::{Course, SetRecompletionType};
use crate::domain::enrolment::{EditEnrolment, EnrolUser, Enrolment, EnrolmentCommand, EnrolmentState};
use crate::domain::ids::{CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
use crate::domain::recompletion::RecompletionFacts;
use crate::domain::LedgerEvent;
use crate::registry::{RegistryOp, INSTALLED_LANGS, SEMCO_PROFILE_FIELDS};
use crate::store::log::StreamRef;

/// Moodle's role ids on a fresh site (manager … frontpage).
pub const KNOWN_ROLES: [i64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
/// The site administrator's user id on a fresh Moodle.
pub const ADMIN_USER_ID: i64 = 2;
const AUTH_PLUGINS: [&str; 8] = ["manual", "nologin", "email", "ldap", "oauth2", "cas", "db", "shibboleth"];

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
pub fn config_stream() -> StreamRef {
    StreamRef::new(Config::NAME, "site")
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
                booking_id_taken: state.bookings.contains_key(&booking_id),
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
            let outcome =
                Outcome::Enrolled { enrolid: user_enrolment, user_id, course_id, booking_id: booking_id.clone() };
            Ok(Decision::one(enrolment_stream(instance), Some(booking_id), wrap(events), outcome))
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
                booking_id_taken: booking_id.as_ref().is_some_and(|b| state.bookings.contains_key(b)),
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
            let booking = state
                .live_by_user_course
                .get(&(user_id, course_id))
                .and_then(|set| set.last())
                .and_then(|i| state.enrolments.get(i)?.state.live().map(|l| l.booking_id.to_string()));
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
        Request::SetConfig { name, value } => {
            let command = SetConfig { name, value, known_roles: KNOWN_ROLES.iter().map(|r| RoleId(*r)).collect() };
            let events = Config::handle_command(&state.config.state, command)?;
            Ok(Decision::one(config_stream(), None, wrap(events), Outcome::Done))
        }
        Request::CreateUsers(users) => create_users(state, users, now),
        Request::UpdateUsers(updates) => update_users(state, updates, now),
        Request::DeleteUsers(ids) => delete_users(state, ids, now, actor_user_id),
        Request::CreateCourses(courses) => create_courses(state, courses, now),
        Request::UpdateCourses(updates) => update_courses(state, updates, now),
        Request::CleanupOrphans => {
            let mut streams = Vec::new();
            for instance in &state.orphans {
                let current = &state.enrolments[instance].state;
                let events = Enrolment::handle_command(current, EnrolmentCommand::RemoveOrphan)?;
                let booking = match current {
                    EnrolmentState::Orphaned { booking_id, .. } => Some(booking_id.to_string()),
                    _ => None,
                };
                streams.push(StreamEvents {
                    stream: enrolment_stream(*instance),
                    booking_id: booking,
                    events: wrap(events),
                });
            }
            let removed = streams.len() as i64;
            Ok(Decision { streams, registry: Vec::new(), outcome: Outcome::Removed(removed) })
        }
    }
}

/// The instance behind a user enrolment id and its state (`New` when there is no live one).
fn enrolment_of(state: &LedgerState, enrolid: i64) -> (i64, EnrolmentState) {
    match state.live_by_user_enrolment(enrolid) {
        Some(live) => (live.instance_id.0, EnrolmentState::Live(live.clone())),
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
    let mut created = Vec::new();
    for (offset, input) in users.into_iter().enumerate() {
        let user = &input.user;
        for (field, value) in
            [("username", &user.username), ("firstname", &user.firstname), ("lastname", &user.lastname)]
        {
            if value.trim().is_empty() {
                return Err(RegistryError::FieldBlank(field).into());
            }
        }
        if !AUTH_PLUGINS.contains(&user.auth.as_str()) {
            return Err(RegistryError::InvalidAuth(user.auth.clone()).into());
        }
        if index.username_taken(&user.username) || usernames.contains(&user.username) {
            return Err(RegistryError::UsernameExists(user.username.clone()).into());
        }
        if !INSTALLED_LANGS.contains(&user.lang.as_str()) {
            return Err(RegistryError::InvalidLang(user.lang.clone()).into());
        }
        if user.auth == "manual" && !input.password_given && !input.createpassword {
            return Err(RegistryError::PasswordRequired.into());
        }
        if !valid_email(&user.email) {
            return Err(RegistryError::EmailInvalid(user.email.clone()).into());
        }
        let email = user.email.to_lowercase();
        if !state.config.state.allow_accounts_same_email && (index.email_taken(&user.email) || emails.contains(&email))
        {
            return Err(RegistryError::EmailExists(user.email.clone()).into());
        }
        fits_user_columns(
            Some(&user.username),
            Some(&user.firstname),
            Some(&user.lastname),
            Some(&user.email),
            Some(&user.idnumber),
        )
        .map_err(RegistryError::from)?;
        usernames.insert(user.username.clone());
        emails.insert(email);
        let id = index.next_user_id + offset as i64;
        let mut user = input.user;
        // Only the known profile fields are kept, as Moodle ignores unknown shortnames.
        user.profile.retain(|(name, _)| SEMCO_PROFILE_FIELDS.iter().any(|(f, _)| f == name));
        created.push((id, user.username.clone()));
        ops.push(RegistryOp::CreateUser { id, user, now });
    }
    Ok(Decision { streams: Vec::new(), registry: ops, outcome: Outcome::UsersCreated(created) })
}

/// The guest user's id on a fresh Moodle.
pub const GUEST_USER_ID: i64 = 1;

fn update_users(
    state: &LedgerState,
    updates: Vec<crate::registry::UserUpdate>,
    now: i64,
) -> Result<Decision, LedgerError> {
    let mut index = state.registry.clone();
    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    for update in updates {
        let id = update.id;
        let mut warn = |code: &str, message: &str| warnings.push((id, code.to_owned(), message.to_owned()));
        let Some(existing) = index.user(id).cloned() else {
            warn("invaliduserid", "Invalid user ID");
            continue;
        };
        if existing.deleted {
            warn("usernotupdateddeleted", "error/usernotupdateddeleted");
            continue;
        }
        if id == ADMIN_USER_ID {
            warn("usernotupdatedadmin", "Cannot update admin accounts");
            continue;
        }
        if id == GUEST_USER_ID {
            warn("usernotupdatedguest", "error/usernotupdatedguest");
            continue;
        }
        if let Some(email) = update.email.as_deref().filter(|e| *e != existing.email) {
            if !valid_email(email) {
                warn("useremailinvalid", "error/useremailinvalid");
                continue;
            }
            if !state.config.state.allow_accounts_same_email && index.email_taken_by_other(email, Some(id)) {
                warn("useremailduplicate", "Duplicate address");
                continue;
            }
        }
        let (username, firstname, lastname) =
            (update.username.as_deref(), update.firstname.as_deref(), update.lastname.as_deref());
        if fits_user_columns(username, firstname, lastname, update.email.as_deref(), update.idnumber.as_deref())
            .is_err()
        {
            warn(DML_WRITE_CODE, DML_WRITE_MESSAGE);
            continue;
        }
        let mut update = update;
        update.profile.retain(|(name, _)| SEMCO_PROFILE_FIELDS.iter().any(|(f, _)| f == name));
        let op = RegistryOp::UpdateUser { update, now };
        op.apply_to_index(&mut index);
        ops.push(op);
    }
    Ok(Decision { streams: Vec::new(), registry: ops, outcome: Outcome::Warnings(warnings) })
}

fn delete_users(state: &LedgerState, ids: Vec<i64>, now: i64, actor: Option<i64>) -> Result<Decision, LedgerError> {
    let mut streams = Vec::new();
    let mut ops = Vec::new();
    let mut deleted = std::collections::HashSet::new();
    for id in ids {
        if !state.registry.user_exists(id) || deleted.contains(&id) {
            return Err(RegistryError::UserMissing(id).into());
        }
        if id == ADMIN_USER_ID {
            return Err(RegistryError::AdminNoDelete.into());
        }
        if Some(id) == actor {
            return Err(RegistryError::SelfDelete.into());
        }
        let instances: Vec<i64> = state
            .live_by_user_course
            .iter()
            .filter(|((user, _), _)| *user == id)
            .flat_map(|(_, set)| set.iter().copied())
            .collect();
        for instance in instances {
            let current = &state.enrolments[&instance].state;
            let events = Enrolment::handle_command(current, EnrolmentCommand::UnenrolDeletedUser)?;
            streams.push(StreamEvents {
                stream: enrolment_stream(instance),
                booking_id: current.live().map(|l| l.booking_id.to_string()),
                events: wrap(events),
            });
        }
        deleted.insert(id);
        ops.push(RegistryOp::EraseUser { id, now });
    }
    streams.sort_by_key(|s| s.stream.key.parse::<i64>().unwrap_or_default());
    Ok(Decision { streams, registry: ops, outcome: Outcome::Done })
}

fn create_courses(
    state: &LedgerState,
    courses: Vec<crate::registry::NewCourse>,
    now: i64,
) -> Result<Decision, LedgerError> {
    let mut index = state.registry.clone();
    let mut ops = Vec::new();
    let mut created = Vec::new();
    for course in courses {
        if course.categoryid != 1 {
            return Err(RegistryError::CategoryMissing(course.categoryid).into());
        }
        if index.courses.values().any(|c| c.shortname == course.shortname) {
            return Err(RegistryError::ShortnameTaken(course.shortname.clone()).into());
        }
        if !course.idnumber.is_empty() && index.courses.values().any(|c| c.idnumber == course.idnumber) {
            return Err(RegistryError::IdnumberTaken(course.idnumber.clone()).into());
        }
        fits_course_columns(
            Some(&course.fullname),
            Some(&course.shortname),
            Some(&course.idnumber),
            Some(course.startdate),
            Some(course.enddate),
        )
        .map_err(RegistryError::from)?;
        let id = index.next_course_id;
        created.push((id, course.shortname.clone()));
        let op = RegistryOp::CreateCourse { id, course, now };
        op.apply_to_index(&mut index);
        ops.push(op);
    }
    Ok(Decision { streams: Vec::new(), registry: ops, outcome: Outcome::CoursesCreated(created) })
}

fn update_courses(
    state: &LedgerState,
    updates: Vec<crate::registry::CourseUpdate>,
    now: i64,
) -> Result<Decision, LedgerError> {
    let mut index = state.registry.clone();
    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    for update in updates {
        let id = update.id;
        let refusal = course_update_refusal(&index, &update);
        match refusal {
            Some((code, message)) => warnings.push((id, code, message)),
            None => {
                let op = RegistryOp::UpdateCourse { update, now };
                op.apply_to_index(&mut index);
                ops.push(op);
            }
        }
    }
    Ok(Decision { streams: Vec::new(), registry: ops, outcome: Outcome::Warnings(warnings) })
}

/// Why `core_course_update_courses` would refuse this course: (warning code, message).
fn course_update_refusal(
    index: &crate::registry::RegistryIndex,
    update: &crate::registry::CourseUpdate,
) -> Option<(String, String)> {
    let id = update.id;
    let taken_by_other = |pick: fn(&crate::registry::CourseEntry) -> &str, value: &str| {
        index.courses.iter().any(|(other, c)| *other != id && pick(c) == value)
    };
    if !index.course_exists(id) {
        return Some(("invalidrecord".into(), "Can't find data record in database table course.".into()));
    }
    if update.categoryid.is_some_and(|c| c != 1) {
        return Some(("invalidrecord".into(), "Can't find data record in database table course_categories.".into()));
    }
    if let Some(name) = update.shortname.as_deref().filter(|n| taken_by_other(|c| &c.shortname, n)) {
        return Some(("shortnametaken".into(), format!("Short name is already used for another course ({name})")));
    }
    if let Some(idnumber) = update.idnumber.as_deref().filter(|n| !n.is_empty() && taken_by_other(|c| &c.idnumber, n)) {
        return Some((
            "courseidnumbertaken".into(),
            format!("ID number is already used for another course ({idnumber})"),
        ));
    }
    let (fullname, shortname, idnumber) =
        (update.fullname.as_deref(), update.shortname.as_deref(), update.idnumber.as_deref());
    if fits_course_columns(fullname, shortname, idnumber, update.startdate, update.enddate).is_err() {
        return Some((DML_WRITE_CODE.into(), DML_WRITE_MESSAGE.into()));
    }
    None
}

/// What `core_user_update_users` and `core_course_update_courses` report for an item Moodle's
/// database refused (they turn each item's exception into a warning).
const DML_WRITE_CODE: &str = "dmlwriteexception";
const DML_WRITE_MESSAGE: &str = "Error writing to database";

/// The `user` columns a create or update fills (`None`: not changed), as Moodle's write would
/// check them.
fn fits_user_columns(
    username: Option<&str>,
    firstname: Option<&str>,
    lastname: Option<&str>,
    email: Option<&str>,
    idnumber: Option<&str>,
) -> Result<(), ColumnOverflow> {
    let fields = [
        (Column::UserUsername, username),
        (Column::UserFirstname, firstname),
        (Column::UserLastname, lastname),
        (Column::UserEmail, email),
        (Column::UserIdnumber, idnumber),
    ];
    fields.iter().filter_map(|(c, v)| Some((*c, (*v)?))).try_for_each(|(c, v)| column::text(c, v))
}

/// The `course` columns a create or update fills (`None`: not changed).
fn fits_course_columns(
    fullname: Option<&str>,
    shortname: Option<&str>,
    idnumber: Option<&str>,
    startdate: Option<i64>,
    enddate: Option<i64>,
) -> Result<(), ColumnOverflow> {
    let texts =
        [(Column::CourseFullname, fullname), (Column::CourseShortname, shortname), (Column::CourseIdnumber, idnumber)];
    texts.iter().filter_map(|(c, v)| Some((*c, (*v)?))).try_for_each(|(c, v)| column::text(c, v))?;
    let times = [(Column::CourseStartdate, startdate), (Column::CourseEnddate, enddate)];
    times.iter().filter_map(|(c, v)| Some((*c, (*v)?))).try_for_each(|(c, v)| column::time(c, v).map(drop))
}

/// A plain address check: one `@`, a non-empty local part and a dotted domain, no spaces.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '>')
        && !domain.contains('@')
}
