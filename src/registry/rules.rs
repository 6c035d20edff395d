//! The registry's rules for users and courses, in one place and pure: the facts the writer
//! looked up come in, a decision or a typed [`RegistryError`] goes out. No I/O, no clock.
//!
//! Each rule is Moodle 4.5's (MOODLE-REFERENCE.md §6), checked in Moodle's order; the Moodle
//! codes and messages of each error are chosen in `api/errors.rs` only. The wire layer's
//! `PARAM_EMAIL` and `PARAM_AUTH` use [`valid_email`] and [`AUTH_PLUGINS`] from here, so the
//! parameter cleaning and the rules cannot disagree.

use crate::domain::column::{self, Column, ColumnOverflow};

use super::{
    CourseEntry, CourseUpdate, NewCourse, NewUser, RegistryIndex, TextDigest, UserEntry, UserLookup, UserUpdate,
    INSTALLED_LANGS,
};
use crate::domain::event::{Change, CourseRecord, CourseRecordEvent, UserEvent};
use crate::domain::ids::{CourseId, UserId};

/// The guest user's id on a fresh Moodle (`$CFG->siteguest`).
pub const GUEST_USER_ID: i64 = 1;
/// The site administrator's user id on a fresh Moodle (`$CFG->siteadmins`).
pub const ADMIN_USER_ID: i64 = 2;
/// The one course category of a fresh Moodle.
pub const DEFAULT_CATEGORY_ID: i64 = 1;

/// An authentication plugin of a stock Moodle 4.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthPlugin {
    pub name: &'static str,
    /// `auth_plugin_base::is_internal()`: Moodle keeps the password, so a new user needs one.
    pub internal: bool,
    /// `core_user_create_users` removes `mnet` (it needs an mnethostid) and `webservice` from
    /// the plugins it accepts.
    pub creatable: bool,
}

const fn auth(name: &'static str, internal: bool, creatable: bool) -> AuthPlugin {
    AuthPlugin { name, internal, creatable }
}

/// Every authentication plugin of a stock Moodle 4.5 (`core_component::get_plugin_list('auth')`),
/// enabled or not; `PARAM_AUTH` accepts exactly these names (or `""`).
pub const AUTH_PLUGINS: [AuthPlugin; 12] = [
    auth("cas", false, true),
    auth("db", false, true),
    auth("email", true, true),
    auth("ldap", false, true),
    auth("lti", false, true),
    auth("manual", true, true),
    auth("mnet", false, false),
    auth("nologin", true, true),
    auth("none", true, true),
    auth("oauth2", false, true),
    auth("shibboleth", false, true),
    auth("webservice", true, false),
];

/// The installed authentication plugin called `name`.
pub fn auth_plugin(name: &str) -> Option<&'static AuthPlugin> {
    AUTH_PLUGINS.iter().find(|plugin| plugin.name == name)
}

/// Moodle's `validate_email`: PHPMailer's default validator, PHP's `FILTER_VALIDATE_EMAIL`,
/// and no `<` or `>`. Approximated as a dot-atom local part of at most 64 characters and a
/// domain of at least two host labels whose last one starts with a letter (`a@b.1c` and
/// `a@localhost` are refused); quoted local parts and address literals are not accepted.
pub fn valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    address.len() <= 254 && local.len() <= 64 && is_dot_atom(local) && is_email_domain(domain)
}

fn is_dot_atom(local: &str) -> bool {
    local.split('.').all(|atom| {
        !atom.is_empty() && atom.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
    })
}

fn is_email_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let tld_ok = labels.last().is_some_and(|tld| tld.starts_with(|c: char| c.is_ascii_alphabetic()));
    labels.len() >= 2 && tld_ok && labels.iter().all(|label| is_host_label(label))
}

/// One DNS host label: 1 to 63 letters, digits or `-`, not starting or ending with `-`.
pub(crate) fn is_host_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// A registry rule that refused a request, one variant per rule, in Moodle's words where it
/// has them. Which Moodle error or warning each becomes is decided in `api/errors.rs`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("The field {0} cannot be blank")]
    FieldBlank(&'static str),
    #[error("Invalid authentication type: {0}")]
    InvalidAuth(String),
    /// Another live user has this username (create), or would have it (update).
    #[error("Username already exists: {0}")]
    UsernameExists(String),
    #[error("Invalid language code: {0}")]
    InvalidLang(String),
    #[error("Invalid password: you must provide a password, or set createpassword.")]
    PasswordRequired,
    #[error("Email address is invalid: {0}")]
    EmailInvalid(String),
    #[error("Email address already exists: {0}")]
    EmailExists(String),
    #[error("user {0} does not exist")]
    UserMissing(i64),
    #[error("user {0} is deleted")]
    UserDeleted(i64),
    /// The site administrator is neither deleted nor changed through the API.
    #[error("administrator accounts are protected")]
    AdminProtected,
    /// The guest user is neither deleted nor changed.
    #[error("the guest account is protected")]
    GuestProtected,
    #[error("a user cannot delete itself")]
    SelfDelete,
    #[error("course {0} does not exist")]
    CourseMissing(i64),
    #[error("Short name is already used for another course ({0})")]
    ShortnameTaken(String),
    #[error("ID number is already used for another course ({0})")]
    IdnumberTaken(String),
    #[error("category {0} does not exist")]
    CategoryMissing(i64),
    /// `core_course_create_courses` in a missing category: its context cannot be validated.
    #[error("the context of category {0} cannot be validated")]
    CategoryContextInvalid(i64),
    /// Last, as in Moodle where the write comes after every check: a value its column cannot
    /// hold (Moodle's database would refuse the row).
    #[error(transparent)]
    DoesNotFit(#[from] ColumnOverflow),
}

/// What the writer looked up for one user of `core_user_create_users`. "Taken" covers the
/// live users and the users created earlier in the same request (it is all or nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NewUserFacts {
    pub username_taken: bool,
    /// By another address that differs only in case, too.
    pub email_taken: bool,
    pub allow_accounts_same_email: bool,
    pub password_given: bool,
    pub createpassword: bool,
}

/// `core_user_create_users`, for one user.
///
/// # Errors
/// The first rule the user breaks, in Moodle's order: a blank username, first or last name;
/// a taken username; an auth plugin that is not installed or not creatable; a language that
/// is not installed; no password for an internal auth plugin; an invalid or taken address.
pub fn check_new_user(user: &NewUser, facts: &NewUserFacts) -> Result<(), RegistryError> {
    for (field, value) in [("username", &user.username), ("firstname", &user.firstname), ("lastname", &user.lastname)] {
        if value.trim().is_empty() {
            return Err(RegistryError::FieldBlank(field));
        }
    }
    if facts.username_taken {
        return Err(RegistryError::UsernameExists(user.username.clone()));
    }
    let Some(plugin) = auth_plugin(&user.auth).filter(|p| p.creatable) else {
        return Err(RegistryError::InvalidAuth(user.auth.clone()));
    };
    if !INSTALLED_LANGS.contains(&user.lang.as_str()) {
        return Err(RegistryError::InvalidLang(user.lang.clone()));
    }
    if plugin.internal && !facts.password_given && !facts.createpassword {
        return Err(RegistryError::PasswordRequired);
    }
    if !valid_email(&user.email) {
        return Err(RegistryError::EmailInvalid(user.email.clone()));
    }
    if !facts.allow_accounts_same_email && facts.email_taken {
        return Err(RegistryError::EmailExists(user.email.clone()));
    }
    fits_user_columns(
        Some(&user.username),
        Some(&user.firstname),
        Some(&user.lastname),
        Some(&user.email),
        Some(&user.idnumber),
    )?;
    Ok(())
}

/// `core_user_update_users`, for one user, against the registry as the earlier users of the
/// same call left it (each user is its own transaction in Moodle).
///
/// # Errors
/// The refusal that becomes this user's warning, in Moodle's order: no such user; the
/// administrator; a deleted user; the guest; a changed address that is invalid or taken;
/// last, a username another live user has, which Moodle's unique index refuses.
pub fn check_user_update(
    index: &impl UserLookup,
    update: &UserUpdate,
    allow_accounts_same_email: bool,
) -> Result<(), RegistryError> {
    let id = update.id;
    let Some(existing) = index.user(id) else {
        return Err(RegistryError::UserMissing(id));
    };
    if id == ADMIN_USER_ID {
        return Err(RegistryError::AdminProtected);
    }
    if existing.deleted {
        return Err(RegistryError::UserDeleted(id));
    }
    if id == GUEST_USER_ID {
        return Err(RegistryError::GuestProtected);
    }
    if let Some(email) = update.email.as_deref().filter(|e| TextDigest::of(e) != existing.email) {
        if !valid_email(email) {
            return Err(RegistryError::EmailInvalid(email.to_owned()));
        }
        if !allow_accounts_same_email && index.email_taken_by_other(email, Some(id)) {
            return Err(RegistryError::EmailExists(email.to_owned()));
        }
    }
    if let Some(username) = update.username.as_deref().filter(|u| index.username_taken_by_other(u, id)) {
        return Err(RegistryError::UsernameExists(username.to_owned()));
    }
    let (username, firstname, lastname) =
        (update.username.as_deref(), update.firstname.as_deref(), update.lastname.as_deref());
    fits_user_columns(username, firstname, lastname, update.email.as_deref(), update.idnumber.as_deref())?;
    Ok(())
}

/// What `core_user_delete_users` does with one user it may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Unenrol everywhere and erase the personal data.
    Erase,
    /// Moodle's `delete_user` refuses the guest without an exception: the call goes on and the
    /// guest stays as it is, enrolments included.
    KeepGuest,
}

/// `core_user_delete_users`, for one user; `deleted_in_request` says an earlier id of the same
/// call already deleted it, `actor` is who asks.
///
/// # Errors
/// In Moodle's order: no live user with this id; the administrator; the caller itself.
pub fn check_delete_user(
    index: &RegistryIndex,
    id: i64,
    deleted_in_request: bool,
    actor: Option<i64>,
) -> Result<Deletion, RegistryError> {
    if !index.user_exists(id) || deleted_in_request {
        return Err(RegistryError::UserMissing(id));
    }
    if id == ADMIN_USER_ID {
        return Err(RegistryError::AdminProtected);
    }
    if Some(id) == actor {
        return Err(RegistryError::SelfDelete);
    }
    if id == GUEST_USER_ID {
        return Ok(Deletion::KeepGuest);
    }
    Ok(Deletion::Erase)
}

/// `core_course_create_courses`, for one course, against the registry with the earlier
/// courses of the same call.
///
/// # Errors
/// An unknown category; a short name or (non-empty) ID number another course has.
pub fn check_new_course(index: &RegistryIndex, course: &NewCourse) -> Result<(), RegistryError> {
    if course.categoryid != DEFAULT_CATEGORY_ID {
        return Err(RegistryError::CategoryContextInvalid(course.categoryid));
    }
    if index.courses.values().any(|c| c.shortname == course.shortname) {
        return Err(RegistryError::ShortnameTaken(course.shortname.clone()));
    }
    if !course.idnumber.is_empty() && index.courses.values().any(|c| c.idnumber == course.idnumber) {
        return Err(RegistryError::IdnumberTaken(course.idnumber.clone()));
    }
    fits_course_columns(
        Some(&course.fullname),
        Some(&course.shortname),
        Some(&course.idnumber),
        Some(course.startdate),
        Some(course.enddate),
    )?;
    Ok(())
}

/// `core_course_update_courses`, for one course, against the registry as the earlier courses
/// of the same call left it.
///
/// # Errors
/// The refusal that becomes this course's warning: no such course; an unknown category; a
/// short name or (non-empty) ID number another course has.
pub fn check_course_update(index: &RegistryIndex, update: &CourseUpdate) -> Result<(), RegistryError> {
    let id = update.id;
    let taken_by_other = |pick: fn(&super::CourseEntry) -> &str, value: &str| {
        index.courses.iter().any(|(other, c)| *other != id && pick(c) == value)
    };
    if !index.course_exists(id) {
        return Err(RegistryError::CourseMissing(id));
    }
    if let Some(category) = update.categoryid.filter(|c| *c != DEFAULT_CATEGORY_ID) {
        return Err(RegistryError::CategoryMissing(category));
    }
    if let Some(name) = update.shortname.as_deref().filter(|n| taken_by_other(|c| &c.shortname, n)) {
        return Err(RegistryError::ShortnameTaken(name.to_owned()));
    }
    if let Some(idnumber) = update.idnumber.as_deref().filter(|n| !n.is_empty() && taken_by_other(|c| &c.idnumber, n)) {
        return Err(RegistryError::IdnumberTaken(idnumber.to_owned()));
    }
    let (fullname, shortname, idnumber) =
        (update.fullname.as_deref(), update.shortname.as_deref(), update.idnumber.as_deref());
    fits_course_columns(fullname, shortname, idnumber, update.startdate, update.enddate)?;
    Ok(())
}

/// The event of a user `check_new_user` accepted: its non-personal fields with their values,
/// and the names of the personal fields it filled (their values stay in the registry).
pub fn user_registered(id: i64, user: &NewUser) -> UserEvent {
    let texts = [
        ("username", &user.username),
        ("firstname", &user.firstname),
        ("lastname", &user.lastname),
        ("email", &user.email),
        ("idnumber", &user.idnumber),
        ("lang", &user.lang),
    ];
    let mut fields: Vec<String> =
        texts.iter().filter(|(_, value)| !value.is_empty()).map(|(name, _)| (*name).to_owned()).collect();
    fields.extend(user.profile.iter().map(|(shortname, _)| format!("profile_field_{shortname}")));
    UserEvent::UserRegistered { user_id: UserId(id), auth: user.auth.clone(), suspended: false, fields }
}

/// The event of an update `check_user_update` accepted, against the user as it was before:
/// `auth` and `suspended` with their old and new values when they change; the personal fields
/// it wrote by name only (username and e-mail when they change: their old values are known;
/// names, ID number, language and profile fields whenever given, as Moodle's `user_updated`).
/// `None` when the update changes nothing.
pub fn user_updated(before: &UserEntry, update: &UserUpdate) -> Option<UserEvent> {
    let mut fields = Vec::new();
    if update.username.as_ref().is_some_and(|u| TextDigest::of(u) != before.username) {
        fields.push("username".to_owned());
    }
    for (name, value) in [("firstname", &update.firstname), ("lastname", &update.lastname)] {
        if value.is_some() {
            fields.push(name.to_owned());
        }
    }
    if update.email.as_ref().is_some_and(|e| TextDigest::of(e) != before.email) {
        fields.push("email".to_owned());
    }
    for (name, value) in [("idnumber", &update.idnumber), ("lang", &update.lang)] {
        if value.is_some() {
            fields.push(name.to_owned());
        }
    }
    fields.extend(update.profile.iter().map(|(shortname, _)| format!("profile_field_{shortname}")));
    let auth = Change::of(&before.auth.to_string(), update.auth.as_ref());
    let suspended = update.suspended.and_then(|new| Change::between(before.suspended, new));
    let changed = !fields.is_empty() || auth.is_some() || suspended.is_some();
    changed.then_some(UserEvent::UserUpdated { user_id: UserId(update.id), fields, auth, suspended })
}

/// The event of a deletion `check_delete_user` decided to erase.
pub fn user_deleted(id: i64) -> UserEvent {
    UserEvent::UserDeleted { user_id: UserId(id) }
}

/// The event of a course `check_new_course` accepted: every value (course data is not personal).
pub fn course_created(id: i64, course: &NewCourse) -> CourseRecordEvent {
    let CourseEntry {
        fullname,
        shortname,
        categoryid,
        idnumber,
        summary,
        visible,
        enablecompletion,
        startdate,
        enddate,
    } = CourseEntry::of(course);
    let record = CourseRecord {
        fullname,
        shortname,
        categoryid,
        idnumber,
        summary,
        visible,
        enablecompletion,
        startdate,
        enddate,
    };
    CourseRecordEvent::CourseCreated { course_id: CourseId(id), record }
}

/// The event of an update `check_course_update` accepted, against the course as it was:
/// every changed field with its old and new value; `None` when nothing changes.
pub fn course_updated(before: &CourseEntry, update: &CourseUpdate) -> Option<CourseRecordEvent> {
    let copy = |old: i64, new: Option<i64>| new.and_then(|new| Change::between(old, new));
    let flag = |old: bool, new: Option<bool>| new.and_then(|new| Change::between(old, new));
    let event = CourseRecordEvent::CourseUpdated {
        course_id: CourseId(update.id),
        fullname: Change::of(&before.fullname, update.fullname.as_ref()),
        shortname: Change::of(&before.shortname, update.shortname.as_ref()),
        categoryid: copy(before.categoryid, update.categoryid),
        idnumber: Change::of(&before.idnumber, update.idnumber.as_ref()),
        summary: Change::of(&before.summary, update.summary.as_ref()),
        visible: flag(before.visible, update.visible),
        enablecompletion: flag(before.enablecompletion, update.enablecompletion),
        startdate: copy(before.startdate, update.startdate),
        enddate: copy(before.enddate, update.enddate),
    };
    let unchanged = CourseRecordEvent::CourseUpdated {
        course_id: CourseId(update.id),
        fullname: None,
        shortname: None,
        categoryid: None,
        idnumber: None,
        summary: None,
        visible: None,
        enablecompletion: None,
        startdate: None,
        enddate: None,
    };
    (event != unchanged).then_some(event)
}

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

#[cfg(test)]
mod tests;
