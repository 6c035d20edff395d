//! Users and courses: mutable, erasable records. Names, e-mail addresses and profile fields
//! live only here, never in the event log, so erasing a person never breaks a replay.
//!
//! `RegistryIndex` is the writer's in-memory view (existence, usernames, e-mails, course flags);
//! `rules` decides what a request may change, purely, against that view; `RegistryOp` is a
//! change the writer applies inside its batch transaction.

pub mod digest;
pub mod lookup;
pub mod rules;
pub mod slots;

use hashbrown::HashTable;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub use digest::TextDigest;
pub use slots::IdSlots;

use sqlx::{Any, AnyConnection, Row};

use crate::store::{Db, StoreError};

/// The language packs installed, as on a stock Moodle.
pub const INSTALLED_LANGS: [&str; 1] = ["en"];

/// The SEMCO profile fields the installer creates (shortname, name).
pub const SEMCO_PROFILE_FIELDS: [(&str, &str); 5] = [
    ("semco_userid", "SEMCO User ID"),
    ("semco_usercompany", "SEMCO User company"),
    ("semco_userbirthday", "SEMCO User birthday"),
    ("semco_userplaceofbirth", "SEMCO User place of birth"),
    ("semco_branchtoken", "SEMCO Tenant shortname"),
];

/// A user as `core_user_create_users` gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub auth: String,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub idnumber: String,
    pub lang: String,
    /// Profile field shortname and value.
    pub profile: Vec<(String, String)>,
}

/// A course as `core_course_create_courses` gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCourse {
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

/// The fields `core_user_update_users` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub id: i64,
    pub username: Option<String>,
    pub auth: Option<String>,
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub email: Option<String>,
    pub idnumber: Option<String>,
    pub lang: Option<String>,
    pub suspended: Option<bool>,
    pub profile: Vec<(String, String)>,
}

/// The fields `core_course_update_courses` may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CourseUpdate {
    pub id: i64,
    pub fullname: Option<String>,
    pub shortname: Option<String>,
    pub categoryid: Option<i64>,
    pub idnumber: Option<String>,
    pub summary: Option<String>,
    pub visible: Option<bool>,
    pub enablecompletion: Option<bool>,
    pub startdate: Option<i64>,
    pub enddate: Option<i64>,
}

/// A user as the writer's index holds it: digests of the username and e-mail address
/// (`digest`), not the strings, so the index stays small (issue 7); the strings are in the
/// `users` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The username exactly as stored.
    pub username: TextDigest,
    /// The e-mail address exactly as stored (a change of case is a change).
    pub email: TextDigest,
    /// The e-mail address ignoring case, as uniqueness is judged; `None` when it is empty.
    email_key: Option<TextDigest>,
    pub deleted: bool,
    /// The non-personal fields whose old values a `UserUpdated` event carries.
    pub auth: Arc<str>,
    pub suspended: bool,
}

impl UserEntry {
    pub fn new(username: &str, email: &str, auth: &str, deleted: bool, suspended: bool) -> Self {
        Self {
            username: TextDigest::of(username),
            email: TextDigest::of(email),
            email_key: TextDigest::of_email_key(email),
            deleted,
            auth: Arc::from(auth),
            suspended,
        }
    }

    fn set_email(&mut self, email: &str) {
        self.email = TextDigest::of(email);
        self.email_key = TextDigest::of_email_key(email);
    }
}

/// Users read in one row by `RegistryIndex::load`.
const USERS_PER_READ: i64 = 20_000;

/// A user's row as `RegistryIndex::load` reads it: id, username, email, deleted, auth, suspended.
type UserRow = (i64, String, String, i64, String, i64);

/// A course as the registry holds it: every field, so that a `CourseUpdated` event can carry
/// old and new values (courses are few; course data is not personal).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CourseEntry {
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

impl CourseEntry {
    pub fn of(course: &NewCourse) -> Self {
        Self {
            fullname: course.fullname.clone(),
            shortname: course.shortname.clone(),
            categoryid: course.categoryid,
            idnumber: course.idnumber.clone(),
            summary: course.summary.clone(),
            visible: course.visible,
            enablecompletion: course.enablecompletion,
            startdate: course.startdate,
            enddate: course.enddate,
        }
    }

    /// The entry after an accepted update.
    pub fn updated(&self, update: &CourseUpdate) -> Self {
        let text = |new: &Option<String>, old: &String| new.clone().unwrap_or_else(|| old.clone());
        Self {
            fullname: text(&update.fullname, &self.fullname),
            shortname: text(&update.shortname, &self.shortname),
            categoryid: update.categoryid.unwrap_or(self.categoryid),
            idnumber: text(&update.idnumber, &self.idnumber),
            summary: text(&update.summary, &self.summary),
            visible: update.visible.unwrap_or(self.visible),
            enablecompletion: update.enablecompletion.unwrap_or(self.enablecompletion),
            startdate: update.startdate.unwrap_or(self.startdate),
            enddate: update.enddate.unwrap_or(self.enddate),
        }
    }
}

/// What the writer must know about users and courses to decide commands. Usernames and
/// e-mail addresses of live users are indexed, so uniqueness checks do not scan all users.
#[derive(Debug, Clone, Default)]
pub struct RegistryIndex {
    users: IdSlots<UserEntry>,
    /// The ids of live users, found by their username digest (the table holds only the id: the
    /// digest is in the user's entry, and digests are uniformly random, so 64 of their bits are
    /// the hash). One id per username.
    usernames: HashTable<i64>,
    /// The ids of live users with an e-mail address, found by its case-blind digest; several
    /// can share one while `allowaccountssameemail` is on.
    emails: HashTable<i64>,
    /// The distinct `auth` values, shared by the users' entries (a handful of plugin names).
    auths: HashSet<Arc<str>>,
    pub courses: HashMap<i64, CourseEntry>,
    pub next_user_id: i64,
    pub next_course_id: i64,
}

impl RegistryIndex {
    /// How many users the registry holds (deleted ones included).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn user(&self, id: i64) -> Option<&UserEntry> {
        self.users.get(id)
    }

    /// A user that exists and is not deleted.
    pub fn user_exists(&self, id: i64) -> bool {
        self.users.get(id).is_some_and(|u| !u.deleted)
    }

    pub fn course_exists(&self, id: i64) -> bool {
        self.courses.contains_key(&id)
    }

    pub fn username_taken(&self, username: &str) -> bool {
        self.username_holder(&TextDigest::of(username)).is_some()
    }

    /// Whether a live user other than `except` has this username.
    pub fn username_taken_by_other(&self, username: &str, except: i64) -> bool {
        self.username_holder(&TextDigest::of(username)).is_some_and(|id| id != except)
    }

    /// The live user with this username digest.
    fn username_holder(&self, name: &TextDigest) -> Option<i64> {
        let users = &self.users;
        self.usernames.find(name.hash64(), |&id| users.get(id).is_some_and(|u| u.username == *name)).copied()
    }

    pub fn email_taken(&self, email: &str) -> bool {
        self.email_taken_by_other(email, None)
    }

    /// Whether another live user (not `except`) has this e-mail address, ignoring case.
    pub fn email_taken_by_other(&self, email: &str, except: Option<i64>) -> bool {
        TextDigest::of_email_key(email).is_some_and(|key| self.email_holders(&key).any(|id| Some(id) != except))
    }

    /// The live users with this case-blind e-mail digest.
    fn email_holders<'a>(&'a self, key: &'a TextDigest) -> impl Iterator<Item = i64> + 'a {
        self.emails
            .iter_hash(key.hash64())
            .copied()
            .filter(move |&id| self.users.get(id).is_some_and(|u| u.email_key == Some(*key)))
    }

    /// Inserts or replaces a user, keeping the username and e-mail indexes in step: an id is
    /// in `usernames` (and, with an address, `emails`) exactly while its entry is live, under
    /// the hash of the entry's digest.
    fn put_user(&mut self, id: i64, mut entry: UserEntry) {
        if let Some(old) = self.users.remove(id) {
            if let Ok(found) = self.usernames.find_entry(old.username.hash64(), |&held| held == id) {
                found.remove();
            }
            if let Some(key) = old.email_key {
                if let Ok(found) = self.emails.find_entry(key.hash64(), |&held| held == id) {
                    found.remove();
                }
            }
        }
        entry.auth = self.intern_auth(&entry.auth);
        self.next_user_id = self.next_user_id.max(id + 1);
        let (live, name, email_key) = (!entry.deleted, entry.username, entry.email_key);
        self.users.insert(id, entry);
        if live {
            let users = &self.users;
            // One holder per username: a live user that had it no longer holds it here.
            if let Ok(found) =
                self.usernames.find_entry(name.hash64(), |&held| users.get(held).is_some_and(|u| u.username == name))
            {
                found.remove();
            }
            self.usernames.insert_unique(name.hash64(), id, |held| username_hash(users, *held));
            if let Some(key) = email_key {
                self.emails.insert_unique(key.hash64(), id, |held| email_hash(users, *held));
            }
        }
    }

    /// The shared copy of an `auth` value.
    fn intern_auth(&mut self, auth: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.auths.get(auth) {
            return shared.clone();
        }
        self.auths.insert(auth.clone());
        auth.clone()
    }

    /// Changes a user through `change`, keeping the indexes in step.
    fn change_user(&mut self, id: i64, change: impl FnOnce(&mut UserEntry)) {
        if let Some(mut entry) = self.users.get(id).cloned() {
            change(&mut entry);
            self.put_user(id, entry);
        }
    }

    /// A copy of the course part only, for the course rules of one call (`core_course_*`):
    /// O(courses), not O(users + courses).
    pub fn courses_only(&self) -> Self {
        Self {
            courses: self.courses.clone(),
            next_user_id: self.next_user_id,
            next_course_id: self.next_course_id,
            ..Self::default()
        }
    }

    /// The index as the registry tables hold it, each user kept as its digests (no string
    /// stays in memory). The users are read in chunks of `USERS_PER_READ`, each one row that
    /// the database builds as a JSON array: through sqlx a row costs about 10 µs of hand-over
    /// whatever its size, and at 200,000 users reading them one row each was 2.2 s of the
    /// start-up (issue 7: start-up ≤ 2 s at 1M events).
    pub async fn load(db: &Db) -> Result<Self, StoreError> {
        let mut index = Self::default();
        let chunk = match db.backend {
            crate::store::Backend::Sqlite => {
                "SELECT json_group_array(json_array(id, username, email, deleted, auth, suspended)), max(id) \
                 FROM (SELECT id, username, email, deleted, auth, suspended FROM users WHERE id > $1 \
                 ORDER BY id LIMIT $2)"
            }
            crate::store::Backend::Postgres => {
                "SELECT json_agg(json_build_array(id, username, email, deleted, auth, suspended))::text, max(id) \
                 FROM (SELECT id, username, email, deleted, auth, suspended FROM users WHERE id > $1 \
                 ORDER BY id LIMIT $2) AS chunk"
            }
        };
        let mut after = i64::MIN;
        loop {
            let (rows, last): (Option<String>, Option<i64>) =
                sqlx::query_as(chunk).bind(after).bind(USERS_PER_READ).fetch_one(&db.pool).await?;
            let (Some(rows), Some(last)) = (rows, last) else { break };
            let rows: Vec<UserRow> =
                serde_json::from_str(&rows).map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?;
            for (id, username, email, deleted, auth, suspended) in rows {
                index.put_user(id, UserEntry::new(&username, &email, &auth, deleted != 0, suspended != 0));
            }
            after = last;
        }
        index.users.shrink_to_fit();
        let users = &index.users;
        index.usernames.shrink_to(0, |held| username_hash(users, *held));
        index.emails.shrink_to(0, |held| email_hash(users, *held));
        let courses = "SELECT id, fullname, shortname, categoryid, idnumber, summary, visible, enablecompletion, \
                       startdate, enddate FROM courses";
        for row in sqlx::query(courses).fetch_all(&db.pool).await? {
            let flag = |name: &str| row.try_get::<i32, _>(name).map(|v| v != 0);
            index.courses.insert(
                row.try_get("id")?,
                CourseEntry {
                    fullname: row.try_get("fullname")?,
                    shortname: row.try_get("shortname")?,
                    categoryid: row.try_get("categoryid")?,
                    idnumber: row.try_get("idnumber")?,
                    summary: row.try_get("summary")?,
                    visible: flag("visible")?,
                    enablecompletion: flag("enablecompletion")?,
                    startdate: row.try_get("startdate")?,
                    enddate: row.try_get("enddate")?,
                },
            );
        }
        // Ids are never reused: deleted users keep their row, so max + 1 is always fresh.
        index.next_user_id = index.next_user_id.max(2);
        index.next_course_id = index.courses.keys().max().copied().unwrap_or(1) + 1;
        Ok(index)
    }
}

/// The hash a `usernames` entry is kept under: its user's username digest (what a table
/// rehashes by when it grows or shrinks).
fn username_hash(users: &IdSlots<UserEntry>, id: i64) -> u64 {
    users.get(id).map_or(0, |u| u.username.hash64())
}

/// The hash an `emails` entry is kept under: its user's case-blind e-mail digest.
fn email_hash(users: &IdSlots<UserEntry>, id: i64) -> u64 {
    users.get(id).and_then(|u| u.email_key).map_or(0, |k| k.hash64())
}

/// The user facts `rules::check_user_update` looks up: the index itself, or the index with the
/// earlier changes of the same request on top (`UserOverlay`).
pub trait UserLookup {
    fn user(&self, id: i64) -> Option<&UserEntry>;
    /// Whether a live user other than `except` has this username.
    fn username_taken_by_other(&self, username: &str, except: i64) -> bool;
    /// Whether another live user (not `except`) has this e-mail address, ignoring case.
    fn email_taken_by_other(&self, email: &str, except: Option<i64>) -> bool;
}

impl UserLookup for RegistryIndex {
    fn user(&self, id: i64) -> Option<&UserEntry> {
        RegistryIndex::user(self, id)
    }
    fn username_taken_by_other(&self, username: &str, except: i64) -> bool {
        RegistryIndex::username_taken_by_other(self, username, except)
    }
    fn email_taken_by_other(&self, email: &str, except: Option<i64>) -> bool {
        RegistryIndex::email_taken_by_other(self, email, except)
    }
}

/// The index as a request's earlier user updates left it, without copying the index: the
/// changed users are kept beside it, so a lookup costs O(log n + changes in this request).
pub struct UserOverlay<'a> {
    base: &'a RegistryIndex,
    changed: HashMap<i64, UserEntry>,
}

impl<'a> UserOverlay<'a> {
    pub fn new(base: &'a RegistryIndex) -> Self {
        Self { base, changed: HashMap::new() }
    }

    /// Applies one accepted update on top of the index.
    pub fn update(&mut self, update: &UserUpdate) {
        if let Some(mut entry) = UserLookup::user(self, update.id).cloned() {
            updated_entry(&mut entry, update);
            self.changed.insert(update.id, entry);
        }
    }
}

impl UserLookup for UserOverlay<'_> {
    fn user(&self, id: i64) -> Option<&UserEntry> {
        self.changed.get(&id).or_else(|| self.base.user(id))
    }
    fn username_taken_by_other(&self, username: &str, except: i64) -> bool {
        let name = TextDigest::of(username);
        let in_base =
            self.base.username_holder(&name).is_some_and(|id| id != except && !self.changed.contains_key(&id));
        in_base || self.changed.iter().any(|(id, u)| *id != except && !u.deleted && u.username == name)
    }
    fn email_taken_by_other(&self, email: &str, except: Option<i64>) -> bool {
        let Some(key) = TextDigest::of_email_key(email) else { return false };
        let other = |id: &i64| Some(*id) != except;
        let in_base = self.base.email_holders(&key).any(|id| other(&id) && !self.changed.contains_key(&id));
        in_base || self.changed.iter().any(|(id, u)| other(id) && !u.deleted && u.email_key == Some(key))
    }
}

/// The username, e-mail, auth and suspension an update leaves (the index's part of
/// `RegistryOp::UpdateUser`).
fn updated_entry(user: &mut UserEntry, update: &UserUpdate) {
    if let Some(username) = &update.username {
        user.username = TextDigest::of(username);
    }
    if let Some(email) = &update.email {
        user.set_email(email);
    }
    if let Some(auth) = &update.auth {
        user.auth = Arc::from(auth.as_str());
    }
    if let Some(suspended) = update.suspended {
        user.suspended = suspended;
    }
}

/// A registry change, applied in the writer's batch transaction.
#[derive(Debug, Clone)]
pub enum RegistryOp {
    UpdateCourse {
        update: CourseUpdate,
        now: i64,
    },
    UpdateUser {
        update: UserUpdate,
        now: i64,
    },
    CreateUser {
        id: i64,
        user: NewUser,
        now: i64,
    },
    CreateCourse {
        id: i64,
        course: NewCourse,
        now: i64,
    },
    /// Keeps the row (ids are never reused) but erases every personal field.
    EraseUser {
        id: i64,
        now: i64,
    },
    /// Deletes token outbox rows whose events this batch appends.
    DrainTokenOutbox {
        ids: Vec<i64>,
    },
    /// Deletes web account outbox rows whose events this batch appends.
    DrainAccountOutbox {
        ids: Vec<i64>,
    },
}

impl RegistryOp {
    pub async fn apply(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        match self {
            Self::CreateUser { id, user, now } => {
                sqlx::query::<Any>(
                    "INSERT INTO users (id, username, auth, firstname, lastname, email, idnumber, lang, \
                     suspended, deleted, timecreated, timemodified) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10)",
                )
                .bind(*id)
                .bind(user.username.clone())
                .bind(user.auth.clone())
                .bind(user.firstname.clone())
                .bind(user.lastname.clone())
                .bind(user.email.clone())
                .bind(user.idnumber.clone())
                .bind(user.lang.clone())
                .bind(*now)
                .bind(*now)
                .execute(&mut *conn)
                .await?;
                for (shortname, data) in &user.profile {
                    sqlx::query::<Any>("INSERT INTO user_profile_data (userid, shortname, data) VALUES ($1, $2, $3)")
                        .bind(*id)
                        .bind(shortname.clone())
                        .bind(data.clone())
                        .execute(&mut *conn)
                        .await?;
                }
            }
            Self::CreateCourse { id, course, now } => {
                sqlx::query::<Any>(
                    "INSERT INTO courses (id, fullname, shortname, categoryid, idnumber, summary, visible, \
                     enablecompletion, startdate, enddate, timecreated, timemodified) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(*id)
                .bind(course.fullname.clone())
                .bind(course.shortname.clone())
                .bind(course.categoryid)
                .bind(course.idnumber.clone())
                .bind(course.summary.clone())
                .bind(i32::from(course.visible))
                .bind(i32::from(course.enablecompletion))
                .bind(course.startdate)
                .bind(course.enddate)
                .bind(*now)
                .bind(*now)
                .execute(&mut *conn)
                .await?;
            }
            Self::UpdateCourse { update, now } => {
                let mut sets = vec!["timemodified = $2".to_owned()];
                let mut texts: Vec<String> = Vec::new();
                let mut ints: Vec<i64> = Vec::new();
                for (column, value) in [
                    ("fullname", &update.fullname),
                    ("shortname", &update.shortname),
                    ("idnumber", &update.idnumber),
                    ("summary", &update.summary),
                ] {
                    if let Some(value) = value {
                        texts.push(value.clone());
                        sets.push(format!("{column} = ${}", texts.len() + 2));
                    }
                }
                let flags = [("visible", update.visible), ("enablecompletion", update.enablecompletion)];
                let numbers =
                    [("categoryid", update.categoryid), ("startdate", update.startdate), ("enddate", update.enddate)]
                        .into_iter()
                        .chain(flags.into_iter().map(|(c, v)| (c, v.map(i64::from))));
                for (column, value) in numbers {
                    if let Some(value) = value {
                        ints.push(value);
                        sets.push(format!("{column} = ${}", texts.len() + ints.len() + 2));
                    }
                }
                let sql = format!("UPDATE courses SET {} WHERE id = $1", sets.join(", "));
                let mut query = sqlx::query::<Any>(&sql).bind(update.id).bind(*now);
                for value in texts {
                    query = query.bind(value);
                }
                for value in ints {
                    query = query.bind(value);
                }
                query.execute(&mut *conn).await?;
            }
            Self::UpdateUser { update, now } => {
                let text_fields = [
                    ("username", &update.username),
                    ("auth", &update.auth),
                    ("firstname", &update.firstname),
                    ("lastname", &update.lastname),
                    ("email", &update.email),
                    ("idnumber", &update.idnumber),
                    ("lang", &update.lang),
                ];
                let mut sets = vec!["timemodified = $2".to_owned()];
                let mut values: Vec<String> = Vec::new();
                for (column, value) in text_fields {
                    if let Some(value) = value {
                        values.push(value.clone());
                        sets.push(format!("{column} = ${}", values.len() + 2));
                    }
                }
                if let Some(suspended) = update.suspended {
                    sets.push(format!("suspended = {}", i32::from(suspended)));
                }
                let sql = format!("UPDATE users SET {} WHERE id = $1", sets.join(", "));
                let mut query = sqlx::query::<Any>(&sql).bind(update.id).bind(*now);
                for value in values {
                    query = query.bind(value);
                }
                query.execute(&mut *conn).await?;
                for (shortname, data) in &update.profile {
                    sqlx::query::<Any>(
                        "INSERT INTO user_profile_data (userid, shortname, data) VALUES ($1, $2, $3) \
                         ON CONFLICT (userid, shortname) DO UPDATE SET data = excluded.data",
                    )
                    .bind(update.id)
                    .bind(shortname.clone())
                    .bind(data.clone())
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Self::EraseUser { id, now } => {
                // Moodle keeps deleted users with a placeholder username; the e-mail is freed.
                sqlx::query::<Any>(
                    "UPDATE users SET deleted = 1, username = $2, firstname = '', lastname = '', email = '', \
                     idnumber = '', timemodified = $3 WHERE id = $1",
                )
                .bind(*id)
                .bind(format!("deleted-{id}"))
                .bind(*now)
                .execute(&mut *conn)
                .await?;
                sqlx::query::<Any>("DELETE FROM user_profile_data WHERE userid = $1")
                    .bind(*id)
                    .execute(&mut *conn)
                    .await?;
                // As in Moodle, a deleted user's web-service tokens go with them (each revocation
                // queued as an event in the same transaction).
                crate::api::tokens::outbox(
                    conn,
                    "revoked",
                    "userid = CAST($3 AS BIGINT)",
                    id.to_string(),
                    "writer",
                    "user deleted",
                )
                .await?;
                sqlx::query::<Any>("DELETE FROM external_tokens WHERE userid = $1")
                    .bind(*id)
                    .execute(&mut *conn)
                    .await?;
            }
            Self::DrainTokenOutbox { ids } => {
                for id in ids {
                    sqlx::query::<Any>("DELETE FROM token_outbox WHERE id = $1").bind(*id).execute(&mut *conn).await?;
                }
            }
            Self::DrainAccountOutbox { ids } => {
                for id in ids {
                    sqlx::query::<Any>("DELETE FROM account_outbox WHERE id = $1")
                        .bind(*id)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Mirrors the change in the writer's index (after it is decided, before commit).
    pub fn apply_to_index(&self, index: &mut RegistryIndex) {
        match self {
            Self::CreateUser { id, user, .. } => {
                index.put_user(*id, UserEntry::new(&user.username, &user.email, &user.auth, false, false));
            }
            Self::CreateCourse { id, course, .. } => {
                index.courses.insert(*id, CourseEntry::of(course));
                index.next_course_id = index.next_course_id.max(id + 1);
            }
            Self::UpdateCourse { update, .. } => {
                if let Some(course) = index.courses.get_mut(&update.id) {
                    *course = course.updated(update);
                }
            }
            Self::UpdateUser { update, .. } => index.change_user(update.id, |user| updated_entry(user, update)),
            Self::EraseUser { id, .. } => index.change_user(*id, |user| {
                user.deleted = true;
                user.username = TextDigest::of(&format!("deleted-{id}"));
                user.set_email("");
            }),
            Self::DrainTokenOutbox { .. } | Self::DrainAccountOutbox { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(index: &mut RegistryIndex, id: i64, username: &str, email: &str) {
        let user = NewUser { username: username.into(), email: email.into(), ..NewUser::default() };
        RegistryOp::CreateUser { id, user, now: 0 }.apply_to_index(index);
    }

    #[test]
    fn username_and_email_indexes_follow_creates_updates_and_erasures() {
        let mut index = RegistryIndex::default();
        create(&mut index, 4, "anna", "Anna@Example.org");
        create(&mut index, 5, "bert", "anna@example.org");
        assert!(index.username_taken("anna"));
        assert!(index.email_taken("ANNA@example.org"));
        assert!(index.email_taken_by_other("anna@example.org", Some(4)), "bert has it too");
        let update = UserUpdate { id: 5, email: Some("bert@example.org".into()), ..UserUpdate::default() };
        RegistryOp::UpdateUser { update, now: 0 }.apply_to_index(&mut index);
        assert!(!index.email_taken_by_other("anna@example.org", Some(4)));
        RegistryOp::EraseUser { id: 4, now: 0 }.apply_to_index(&mut index);
        assert!(!index.username_taken("anna"), "a deleted user's username is free again");
        assert!(!index.email_taken("anna@example.org"));
        assert!(!index.user_exists(4));
        assert_eq!(index.next_user_id, 6, "ids are never reused");
    }
}

/// Given users in the registry index, when they are renamed, re-addressed and deleted, then its
/// username and e-mail tables answer by the current entries.
#[cfg(test)]
mod index_tests {
    use super::*;

    fn user(name: &str, email: &str) -> UserEntry {
        UserEntry::new(name, email, "manual", false, false)
    }

    // given live users sharing an e-mail address (allowaccountssameemail) and one far id, when
    // they are renamed, re-addressed and deleted, then the index answers by the current entries.
    #[test]
    fn username_and_email_tables_follow_the_entries() {
        let mut index = RegistryIndex::default();
        let far = 1_000_000_000_000;
        index.put_user(5, user("anna", "Shared@x.org"));
        index.put_user(far, user("bert", "shared@X.org"));
        assert!(index.username_taken("anna") && index.username_taken("bert") && !index.username_taken("carl"));
        assert!(index.email_taken_by_other("SHARED@x.org", Some(5)), "bert still has it");
        index.change_user(5, |u| u.username = TextDigest::of("anna2"));
        assert!(!index.username_taken("anna") && index.username_taken_by_other("anna2", far));
        index.change_user(far, |u| u.set_email("own@x.org"));
        assert!(!index.email_taken_by_other("shared@x.org", Some(5)) && index.email_taken("shared@x.org"));
        index.change_user(5, |u| u.deleted = true);
        assert!(!index.username_taken("anna2") && !index.email_taken("shared@x.org"));
        assert!(index.user(5).is_some_and(|u| u.deleted), "a deleted user keeps its entry");
        // Enough users to make both tables grow (and so rehash from the entries' digests).
        for id in 100..5_100 {
            index.put_user(id, user(&format!("n{id}"), &format!("n{id}@x.org")));
        }
        assert!((100..5_100).all(|id| index.username_taken_by_other(&format!("n{id}"), 0)));
        assert!((100..5_100).all(|id| !index.email_taken_by_other(&format!("N{id}@x.org"), Some(id))));
        assert_eq!(index.user_count(), 5_002);
    }
}
