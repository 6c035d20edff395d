//! The SEMCO enrolment report (issue 11 item 2; MOODLE-REFERENCE §4.4 and the plugin's 2026
//! line): every user enrolment of a SEMCO instance whose user is not deleted, with the
//! plugin's columns, its completion and profile-field columns, filters, any column as sort key
//! and keyset (seek) paging.
//!
//! Two sources answer the same [`ReportQuery`]:
//! - the present (`KnownAt::Now`): SQL over the projections and the registry
//!   ([`crate::projection::queries::REPORT_FROM`]); each page is one `LIMIT` read that seeks
//!   past the cursor's `(sort key, enrolid)`, so a page of a 1,000,000-row report never
//!   reads the rows before it (indexes: projection schema and migration 15);
//! - the past ("as known at" a time or a log position): `app::asof` folds the log as it
//!   stood then, the rows are joined with today's registry (personal data is not in the log)
//!   and today's deletions, and filtered, sorted and paged in memory with the same rules.
//!
//! Pure parts (parameter parsing and validation, cursors, CSV cell neutralising) are tested
//! here; the SQL on both backends in `tests/it/report.rs`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::app::asof::{self, KnownAt};
use crate::app::audit;
use crate::projection::queries;
use crate::store::{Backend, Db, StoreError};

/// Rows a page shows unless `page_size` says otherwise (the plugin's 50).
pub const PAGE_SIZE_DEFAULT: i64 = 50;
/// The largest page a caller may ask for.
pub const PAGE_SIZE_MAX: i64 = 500;
/// Rows read per batch of a download.
pub const DOWNLOAD_BATCH: i64 = 1000;
/// The downloads' file name without its extension (the plugin's).
pub const FILE_NAME: &str = "semco-enrolreport";
/// The plugin's empty state.
pub const EMPTY_STATE: &str = "There are not any SEMCO enrolments yet in this Moodle instance.";
/// Shown instead when filters are given and nothing matches them.
pub const NO_MATCH: &str = "No SEMCO enrolments match these filters.";

/// How a column's sort key is compared (and bound in a cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
}

macro_rules! columns {
    ($($variant:ident => $name:literal, $header:literal, $kind:ident, $sql:literal;)*) => {
        /// Every column of the report, in the plugin's order, then the 2026 line's.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Column { $($variant),* }

        impl Column {
            pub const ALL: &'static [Column] = &[$(Column::$variant),*];

            /// The plugin's column name (also the query parameter value and the JSON key).
            pub fn as_str(self) -> &'static str {
                match self { $(Column::$variant => $name),* }
            }

            /// The column header (the plugin's wording).
            pub fn header(self) -> &'static str {
                match self { $(Column::$variant => $header),* }
            }

            fn kind(self) -> Kind {
                match self { $(Column::$variant => Kind::$kind),* }
            }

            /// The SQL sort key: never NULL, so a keyset comparison is total.
            fn sort_sql(self) -> &'static str {
                match self { $(Column::$variant => $sql),* }
            }
        }
    };
}

columns! {
    MoodleUserId => "moodleuserid", "Moodle User ID", Int, "u.id";
    SemcoUserId => "semcouserid", "SEMCO User ID", Text, "COALESCE(psu.data, '')";
    Username => "username", "Moodle Username", Text, "u.username";
    Lastname => "lastname", "Last name", Text, "u.lastname";
    Firstname => "firstname", "First name", Text, "u.firstname";
    Fullname => "fullname", "Full name", Text, "(u.firstname || ' ' || u.lastname)";
    Email => "email", "Email address", Text, "u.email";
    Suspended => "suspended", "Moodle User status", Int, "u.suspended";
    EnrolId => "enrolid", "Enrolment ID", Int, "ue.id";
    CourseId => "courseid", "Course ID", Int, "e.courseid";
    Course => "course", "Course name", Text, "c.fullname";
    SemcoBookingId => "semcobookingid", "SEMCO booking ID", Text, "COALESCE(e.customchar1, '')";
    EnrolStart => "enrolstart", "Enrolment start", Int, "ue.timestart";
    EnrolEnd => "enrolend", "Enrolment end", Int, "ue.timeend";
    EnrolStatus => "enrolstatus", "Enrolment status", Int, "ue.status";
    CompletionStatus => "completionstatus", "Course completion status", Int,
        "(CASE WHEN cc.timecompleted IS NULL THEN 0 ELSE 1 END)";
    TimeCompleted => "timecompleted", "Course completion date", Int, "COALESCE(cc.timecompleted, 0)";
    Grade => "grade", "Course grade", Real, "COALESCE(cc.finalgrade, -1000000000.0)";
    Company => "company", "SEMCO User company", Text, "COALESCE(pco.data, '')";
    Birthday => "birthday", "SEMCO User birthday", Text, "COALESCE(pbd.data, '')";
    PlaceOfBirth => "placeofbirth", "SEMCO User place of birth", Text, "COALESCE(ppb.data, '')";
    Tenant => "tenant", "SEMCO Tenant shortname", Text, "COALESCE(ptn.data, '')";
}

/// The grade sort key of a row without a grade (below every `numeric(10,5)` value).
const NO_GRADE: f64 = -1_000_000_000.0;

impl Column {
    pub fn parse(name: &str) -> Option<Column> {
        Column::ALL.iter().copied().find(|c| c.as_str() == name)
    }

    /// Columns whose values are dates (unix seconds; 0 = none).
    pub fn is_date(self) -> bool {
        matches!(self, Column::EnrolStart | Column::EnrolEnd | Column::TimeCompleted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Asc,
    Desc,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Asc => "asc",
            Direction::Desc => "desc",
        }
    }

    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "asc" => Some(Direction::Asc),
            "desc" => Some(Direction::Desc),
            _ => None,
        }
    }

    pub fn flip(self) -> Direction {
        match self {
            Direction::Asc => Direction::Desc,
            Direction::Desc => Direction::Asc,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrolStatus {
    Active,
    Suspended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompletionStatus {
    Completed,
    NotCompleted,
}

/// What the report is narrowed to. Text filters are exact except `email` (contains, case
/// insensitive); `None` = no filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filters {
    pub email: Option<String>,
    pub semcouserid: Option<String>,
    pub bookingid: Option<String>,
    pub course: Option<i64>,
    pub user: Option<i64>,
    pub enrolstatus: Option<EnrolStatus>,
    pub completionstatus: Option<CompletionStatus>,
    /// The first letter of the first name (the initials bar), upper case A–Z.
    pub firstinitial: Option<char>,
    /// The first letter of the last name.
    pub lastinitial: Option<char>,
    /// Unix seconds: only enrolments enrolled and active then (MOODLE-REFERENCE §7.2, `app::asof`).
    pub active_on: Option<i64>,
    /// Unix seconds: only enrolments whose period `[start, end)` (0 = open) overlaps `[from, to]`.
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// What the ledger knew: now (the projections) or a past time or log position.
    #[serde(skip)]
    pub known: KnownAt,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            email: None,
            semcouserid: None,
            bookingid: None,
            course: None,
            user: None,
            enrolstatus: None,
            completionstatus: None,
            firstinitial: None,
            lastinitial: None,
            active_on: None,
            from: None,
            to: None,
            known: KnownAt::Now,
        }
    }
}

impl Filters {
    /// Whether any filter narrows the report (for the empty-state text).
    pub fn any(&self) -> bool {
        let Filters {
            email,
            semcouserid,
            bookingid,
            course,
            user,
            enrolstatus,
            completionstatus,
            firstinitial,
            lastinitial,
            active_on,
            from,
            to,
            known: _,
        } = self;
        email.is_some()
            || semcouserid.is_some()
            || bookingid.is_some()
            || course.is_some()
            || user.is_some()
            || enrolstatus.is_some()
            || completionstatus.is_some()
            || firstinitial.is_some()
            || lastinitial.is_some()
            || active_on.is_some()
            || from.is_some()
            || to.is_some()
    }

    /// The filters as SQL conditions over `REPORT_FROM` (the present) with their binds, the
    /// first numbered `$first`.
    fn sql(&self, first: usize, binds: &mut Vec<Bind>) -> Vec<String> {
        let mut conditions = Vec::new();
        let mut push = |condition: &dyn Fn(usize) -> String, bind: Bind| {
            binds.push(bind);
            conditions.push(condition(first + binds.len() - 1));
        };
        if let Some(email) = &self.email {
            push(&|n| format!("LOWER(u.email) LIKE ${n} ESCAPE '\\'"), Bind::Text(like_pattern(email)));
        }
        if let Some(id) = &self.semcouserid {
            push(&|n| format!("psu.data = ${n}"), Bind::Text(id.clone()));
        }
        if let Some(id) = &self.bookingid {
            push(&|n| format!("e.customchar1 = ${n}"), Bind::Text(id.clone()));
        }
        if let Some(course) = self.course {
            push(&|n| format!("e.courseid = ${n}"), Bind::Int(course));
        }
        if let Some(user) = self.user {
            push(&|n| format!("ue.userid = ${n}"), Bind::Int(user));
        }
        if let Some(initial) = self.firstinitial {
            push(&|n| format!("UPPER(SUBSTR(u.firstname, 1, 1)) = ${n}"), Bind::Text(initial.to_string()));
        }
        if let Some(initial) = self.lastinitial {
            push(&|n| format!("UPPER(SUBSTR(u.lastname, 1, 1)) = ${n}"), Bind::Text(initial.to_string()));
        }
        if let Some(t) = self.active_on {
            // Moodle's "enrolled and active" (as `asof::active_at`): the enrolment and its
            // instance enabled, begun (`timestart <= t`), not ended (`timeend` exclusive), the
            // user not suspended (deleted users are never in the report).
            push(
                &|n| {
                    format!(
                        "ue.status = 0 AND e.status = 0 AND u.suspended = 0 AND ue.timestart <= ${n} \
                         AND (ue.timeend = 0 OR ue.timeend > ${n})"
                    )
                },
                Bind::Int(t),
            );
        }
        if let Some(to) = self.to {
            push(&|n| format!("(ue.timestart = 0 OR ue.timestart <= ${n})"), Bind::Int(to));
        }
        if let Some(from) = self.from {
            push(&|n| format!("(ue.timeend = 0 OR ue.timeend > ${n})"), Bind::Int(from));
        }
        match self.enrolstatus {
            Some(EnrolStatus::Active) => conditions.push("ue.status = 0".into()),
            Some(EnrolStatus::Suspended) => conditions.push("ue.status = 1".into()),
            None => {}
        }
        match self.completionstatus {
            Some(CompletionStatus::Completed) => conditions.push("cc.timecompleted IS NOT NULL".into()),
            Some(CompletionStatus::NotCompleted) => conditions.push("cc.timecompleted IS NULL".into()),
            None => {}
        }
        conditions
    }

    /// The same filters over a row of the past (the fold); `active_on` is applied by
    /// `app::asof` (it folds the log as it stood then) and not here.
    fn matches_past(&self, row: &ReportRow) -> bool {
        let initial = |name: &str| name.chars().next().map(|c| c.to_ascii_uppercase());
        self.email.as_ref().is_none_or(|e| row.email.to_lowercase().contains(&e.to_lowercase()))
            && self.semcouserid.as_ref().is_none_or(|s| row.semcouserid.as_deref() == Some(s.as_str()))
            && self.bookingid.as_ref().is_none_or(|b| row.semcobookingid.as_deref() == Some(b.as_str()))
            && self.course.is_none_or(|c| row.courseid == c)
            && self.user.is_none_or(|u| row.moodleuserid == u)
            && self.firstinitial.is_none_or(|c| initial(&row.firstname) == Some(c))
            && self.lastinitial.is_none_or(|c| initial(&row.lastname) == Some(c))
            && self.to.is_none_or(|to| row.enrolstart == 0 || row.enrolstart <= to)
            && self.from.is_none_or(|from| row.enrolend == 0 || row.enrolend > from)
            && self.enrolstatus.is_none_or(|s| (s == EnrolStatus::Suspended) == row.enrol_suspended)
            && self.completionstatus.is_none_or(|s| (s == CompletionStatus::Completed) == row.timecompleted.is_some())
    }
}

/// `%` and `_` in a user's text match themselves.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[derive(Debug, Clone, PartialEq)]
enum Bind {
    Int(i64),
    Real(f64),
    Text(String),
}

/// One column's value as a sort key (in a cursor: JSON number or string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SortValue {
    Int(i64),
    Real(f64),
    Text(String),
}

impl SortValue {
    fn cmp(&self, other: &SortValue) -> Ordering {
        match (self, other) {
            (SortValue::Int(a), SortValue::Int(b)) => a.cmp(b),
            (SortValue::Real(a), SortValue::Real(b)) => a.total_cmp(b),
            (SortValue::Text(a), SortValue::Text(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }

    fn bind(&self) -> Bind {
        match self {
            SortValue::Int(v) => Bind::Int(*v),
            SortValue::Real(v) => Bind::Real(*v),
            SortValue::Text(v) => Bind::Text(v.clone()),
        }
    }
}

/// Where a page starts: after (or, for "previous", before) the row with this sort key and
/// enrolid, in the sort it was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "c")]
    pub column: String,
    #[serde(rename = "d")]
    pub direction: String,
    #[serde(rename = "k")]
    pub key: SortValue,
    #[serde(rename = "i")]
    pub enrolid: i64,
    /// The page before this row (a "previous" link), not after it.
    #[serde(rename = "b", default, skip_serializing_if = "std::ops::Not::not")]
    pub before: bool,
}

impl Cursor {
    /// URL-safe text (hex of compact JSON).
    pub fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = hex::decode(text).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// One report row. Personal data comes from the registry at read time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportRow {
    pub enrolid: i64,
    pub moodleuserid: i64,
    pub semcouserid: Option<String>,
    pub username: String,
    pub lastname: String,
    pub firstname: String,
    pub email: String,
    /// The user account is suspended.
    pub user_suspended: bool,
    pub courseid: i64,
    pub course: String,
    pub semcobookingid: Option<String>,
    pub enrolstart: i64,
    pub enrolend: i64,
    /// The user enrolment's status is 1 (suspended).
    pub enrol_suspended: bool,
    pub timecompleted: Option<i64>,
    pub grade: Option<f64>,
    pub company: Option<String>,
    pub birthday: Option<String>,
    pub placeofbirth: Option<String>,
    pub tenant: Option<String>,
}

/// One cell as the downloads write it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Int(i64),
    Real(f64),
    Text(String),
    Empty,
}

impl ReportRow {
    pub fn fullname(&self) -> String {
        format!("{} {}", self.firstname, self.lastname)
    }

    /// The sort key of `column`, as the SQL's `sort_sql` computes it.
    pub fn sort_key(&self, column: Column) -> SortValue {
        let text = |v: &Option<String>| SortValue::Text(v.clone().unwrap_or_default());
        match column {
            Column::MoodleUserId => SortValue::Int(self.moodleuserid),
            Column::SemcoUserId => text(&self.semcouserid),
            Column::Username => SortValue::Text(self.username.clone()),
            Column::Lastname => SortValue::Text(self.lastname.clone()),
            Column::Firstname => SortValue::Text(self.firstname.clone()),
            Column::Fullname => SortValue::Text(self.fullname()),
            Column::Email => SortValue::Text(self.email.clone()),
            Column::Suspended => SortValue::Int(self.user_suspended as i64),
            Column::EnrolId => SortValue::Int(self.enrolid),
            Column::CourseId => SortValue::Int(self.courseid),
            Column::Course => SortValue::Text(self.course.clone()),
            Column::SemcoBookingId => text(&self.semcobookingid),
            Column::EnrolStart => SortValue::Int(self.enrolstart),
            Column::EnrolEnd => SortValue::Int(self.enrolend),
            Column::EnrolStatus => SortValue::Int(self.enrol_suspended as i64),
            Column::CompletionStatus => SortValue::Int(self.timecompleted.is_some() as i64),
            Column::TimeCompleted => SortValue::Int(self.timecompleted.unwrap_or(0)),
            Column::Grade => SortValue::Real(self.grade.unwrap_or(NO_GRADE)),
            Column::Company => text(&self.company),
            Column::Birthday => text(&self.birthday),
            Column::PlaceOfBirth => text(&self.placeofbirth),
            Column::Tenant => text(&self.tenant),
        }
    }

    /// The value as the page, the CSV and the XLSX show it (dates as the plugin formats
    /// them, in UTC; an unset date is empty).
    pub fn display(&self, column: Column) -> String {
        match self.cell(column) {
            Cell::Int(v) if column.is_date() => format_date(v),
            Cell::Int(v) => v.to_string(),
            Cell::Real(v) => format_grade(v),
            Cell::Text(v) => v,
            Cell::Empty => String::new(),
        }
    }

    /// The typed value of `column` for the downloads.
    pub fn cell(&self, column: Column) -> Cell {
        let text = |v: &Option<String>| v.clone().map_or(Cell::Empty, Cell::Text);
        let date = |v: i64| if v == 0 { Cell::Empty } else { Cell::Int(v) };
        let status = |suspended: bool| Cell::Text(if suspended { "Suspended" } else { "Active" }.into());
        match column {
            Column::MoodleUserId => Cell::Int(self.moodleuserid),
            Column::SemcoUserId => text(&self.semcouserid),
            Column::Username => Cell::Text(self.username.clone()),
            Column::Lastname => Cell::Text(self.lastname.clone()),
            Column::Firstname => Cell::Text(self.firstname.clone()),
            Column::Fullname => Cell::Text(self.fullname()),
            Column::Email => Cell::Text(self.email.clone()),
            Column::Suspended => status(self.user_suspended),
            Column::EnrolId => Cell::Int(self.enrolid),
            Column::CourseId => Cell::Int(self.courseid),
            Column::Course => Cell::Text(self.course.clone()),
            Column::SemcoBookingId => text(&self.semcobookingid),
            Column::EnrolStart => date(self.enrolstart),
            Column::EnrolEnd => date(self.enrolend),
            Column::EnrolStatus => status(self.enrol_suspended),
            Column::CompletionStatus => {
                Cell::Text(if self.timecompleted.is_some() { "Completed" } else { "Not completed" }.into())
            }
            Column::TimeCompleted => self.timecompleted.map_or(Cell::Empty, date),
            Column::Grade => self.grade.map_or(Cell::Empty, Cell::Real),
            Column::Company => text(&self.company),
            Column::Birthday => text(&self.birthday),
            Column::PlaceOfBirth => text(&self.placeofbirth),
            Column::Tenant => text(&self.tenant),
        }
    }

    /// The row as JSON (the API and `/report.json`): the columns' names as keys, typed values
    /// (dates as unix seconds with 0 for none, statuses as `active`/`suspended`,
    /// `completed`/`notcompleted`, null where there is no value).
    pub fn json(&self, columns: &[Column]) -> serde_json::Value {
        let status = |suspended: bool| if suspended { "suspended" } else { "active" };
        let map: serde_json::Map<String, serde_json::Value> = columns
            .iter()
            .map(|&column| {
                let value = match column {
                    Column::MoodleUserId => self.moodleuserid.into(),
                    Column::SemcoUserId => self.semcouserid.clone().into(),
                    Column::Username => self.username.clone().into(),
                    Column::Lastname => self.lastname.clone().into(),
                    Column::Firstname => self.firstname.clone().into(),
                    Column::Fullname => self.fullname().into(),
                    Column::Email => self.email.clone().into(),
                    Column::Suspended => status(self.user_suspended).into(),
                    Column::EnrolId => self.enrolid.into(),
                    Column::CourseId => self.courseid.into(),
                    Column::Course => self.course.clone().into(),
                    Column::SemcoBookingId => self.semcobookingid.clone().into(),
                    Column::EnrolStart => self.enrolstart.into(),
                    Column::EnrolEnd => self.enrolend.into(),
                    Column::EnrolStatus => status(self.enrol_suspended).into(),
                    Column::CompletionStatus => {
                        if self.timecompleted.is_some() { "completed" } else { "notcompleted" }.into()
                    }
                    Column::TimeCompleted => self.timecompleted.into(),
                    Column::Grade => self.grade.into(),
                    Column::Company => self.company.clone().into(),
                    Column::Birthday => self.birthday.clone().into(),
                    Column::PlaceOfBirth => self.placeofbirth.clone().into(),
                    Column::Tenant => self.tenant.clone().into(),
                };
                (column.as_str().to_owned(), value)
            })
            .collect();
        serde_json::Value::Object(map)
    }

    fn from_sql(row: &AnyRow) -> Result<ReportRow, sqlx::Error> {
        Ok(ReportRow {
            enrolid: row.try_get(0)?,
            moodleuserid: row.try_get(1)?,
            semcouserid: row.try_get(2)?,
            username: row.try_get(3)?,
            lastname: row.try_get(4)?,
            firstname: row.try_get(5)?,
            email: row.try_get(6)?,
            user_suspended: row.try_get::<i64, _>(7)? != 0,
            courseid: row.try_get(8)?,
            course: row.try_get(9)?,
            semcobookingid: row.try_get(10)?,
            enrolstart: row.try_get(11)?,
            enrolend: row.try_get(12)?,
            enrol_suspended: row.try_get::<i64, _>(13)? != 0,
            timecompleted: row.try_get(14)?,
            grade: row.try_get(15)?,
            company: row.try_get(16)?,
            birthday: row.try_get(17)?,
            placeofbirth: row.try_get(18)?,
            tenant: row.try_get(19)?,
        })
    }
}

/// The plugin's date format ("%d %B %Y, %I:%M %p"), in UTC; 0 is no date.
pub fn format_date(seconds: i64) -> String {
    if seconds == 0 {
        return String::new();
    }
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%d %B %Y, %I:%M %p").to_string())
        .unwrap_or_else(|| seconds.to_string())
}

/// A grade with Moodle's five decimals, trailing zeros dropped.
pub fn format_grade(grade: f64) -> String {
    let text = format!("{grade:.5}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// A CSV cell that a spreadsheet could read as a formula (`= + - @`, TAB, CR first) gets a
/// leading `'` (OWASP's advice), so it shows as text.
pub fn csv_cell(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

/// A whole report question.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuery {
    pub filters: Filters,
    pub sort: (Column, Direction),
    pub cursor: Option<Cursor>,
    pub page_size: i64,
}

/// The page's, the downloads' and the API's parameters as they arrive (text; empty = absent).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct ReportParams {
    pub email: Option<String>,
    pub semcouserid: Option<String>,
    pub bookingid: Option<String>,
    pub course: Option<String>,
    pub user: Option<String>,
    pub enrolstatus: Option<String>,
    pub completionstatus: Option<String>,
    /// Moodle's initials bar parameters.
    pub tifirst: Option<String>,
    pub tilast: Option<String>,
    /// A date (`YYYY-MM-DD`, 00:00 UTC) or an RFC 3339 time.
    pub active_on: Option<String>,
    /// Dates (`from` at 00:00, `to` at 23:59:59 UTC) or RFC 3339 times.
    pub from: Option<String>,
    pub to: Option<String>,
    /// RFC 3339 or `YYYY-MM-DDTHH:MM` (UTC): what the ledger knew then.
    pub known_at: Option<String>,
    /// A log position: what the ledger knew after it.
    pub position: Option<String>,
    pub sort: Option<String>,
    pub dir: Option<String>,
    pub cursor: Option<String>,
    pub page_size: Option<String>,
}

/// A parameter the report cannot use, with a sentence for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamError(pub String);

fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn bad(message: impl Into<String>) -> ParamError {
    ParamError(message.into())
}

/// `YYYY-MM-DD` (at `end_of_day` or 00:00 UTC), `YYYY-MM-DDTHH:MM[:SS]` (UTC) or RFC 3339.
pub fn parse_time(name: &str, text: &str, end_of_day: bool) -> Result<i64, ParamError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc().timestamp());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let t = if end_of_day { d.and_hms_opt(23, 59, 59) } else { d.and_hms_opt(0, 0, 0) };
        if let Some(t) = t {
            return Ok(t.and_utc().timestamp());
        }
    }
    Err(bad(format!("{name} must be a date (2026-03-01) or an RFC 3339 time (2026-03-01T00:00:00Z)")))
}

fn parse_id(name: &str, text: &str) -> Result<i64, ParamError> {
    text.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| bad(format!("{name} must be a positive integer")))
}

fn parse_initial(name: &str, text: &str) -> Result<char, ParamError> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Ok(c.to_ascii_uppercase()),
        _ => Err(bad(format!("{name} must be one letter A-Z"))),
    }
}

impl ReportParams {
    /// Validates every parameter; `initial_sort` applies when none is given.
    pub fn parse(&self, initial_sort: (Column, Direction)) -> Result<ReportQuery, ParamError> {
        let known = match (given(&self.known_at), given(&self.position)) {
            (Some(_), Some(_)) => return Err(bad("give known_at or position, not both")),
            (Some(t), None) => {
                KnownAt::Time(parse_time("known_at", t, false)?.saturating_mul(1_000_000).saturating_add(999_999))
            }
            (None, Some(p)) => KnownAt::Position(
                p.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| bad("position must be an integer >= 0"))?,
            ),
            (None, None) => KnownAt::Now,
        };
        let filters = Filters {
            email: given(&self.email).map(str::to_owned),
            semcouserid: given(&self.semcouserid).map(str::to_owned),
            bookingid: given(&self.bookingid).map(str::to_owned),
            course: given(&self.course).map(|v| parse_id("course", v)).transpose()?,
            user: given(&self.user).map(|v| parse_id("user", v)).transpose()?,
            enrolstatus: given(&self.enrolstatus)
                .map(|v| match v {
                    "active" => Ok(EnrolStatus::Active),
                    "suspended" => Ok(EnrolStatus::Suspended),
                    _ => Err(bad("enrolstatus must be active or suspended")),
                })
                .transpose()?,
            completionstatus: given(&self.completionstatus)
                .map(|v| match v {
                    "completed" => Ok(CompletionStatus::Completed),
                    "notcompleted" => Ok(CompletionStatus::NotCompleted),
                    _ => Err(bad("completionstatus must be completed or notcompleted")),
                })
                .transpose()?,
            firstinitial: given(&self.tifirst).map(|v| parse_initial("tifirst", v)).transpose()?,
            lastinitial: given(&self.tilast).map(|v| parse_initial("tilast", v)).transpose()?,
            active_on: given(&self.active_on).map(|v| parse_time("active_on", v, false)).transpose()?,
            from: given(&self.from).map(|v| parse_time("from", v, false)).transpose()?,
            to: given(&self.to).map(|v| parse_time("to", v, true)).transpose()?,
            known,
        };
        if let (Some(from), Some(to)) = (filters.from, filters.to) {
            if from > to {
                return Err(bad("from must not be after to"));
            }
        }
        let column = match given(&self.sort) {
            Some(name) => Column::parse(name).ok_or_else(|| bad(format!("sort must be a column name, not {name}")))?,
            None => initial_sort.0,
        };
        let direction = match given(&self.dir) {
            Some(dir) => Direction::parse(dir).ok_or_else(|| bad("dir must be asc or desc"))?,
            None if given(&self.sort).is_some() => Direction::Asc,
            None => initial_sort.1,
        };
        let cursor = given(&self.cursor)
            .map(|text| {
                let cursor = Cursor::decode(text).ok_or_else(|| bad("cursor is not a cursor of this report"))?;
                let kind_fits = matches!(
                    (&cursor.key, column.kind()),
                    (SortValue::Int(_), Kind::Int)
                        | (SortValue::Real(_), Kind::Real)
                        | (SortValue::Text(_), Kind::Text)
                ) || matches!((&cursor.key, column.kind()), (SortValue::Int(_), Kind::Real));
                if cursor.column != column.as_str() || cursor.direction != direction.as_str() || !kind_fits {
                    return Err(bad("cursor belongs to another sort: start again from the first page"));
                }
                Ok(cursor)
            })
            .transpose()?;
        let page_size = match given(&self.page_size) {
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=PAGE_SIZE_MAX).contains(n))
                .ok_or_else(|| bad(format!("page_size must be an integer from 1 to {PAGE_SIZE_MAX}")))?,
            None => PAGE_SIZE_DEFAULT,
        };
        Ok(ReportQuery { filters, sort: (column, direction), cursor, page_size })
    }

    /// The parameters as a query string (empty ones left out), for links that keep them.
    pub fn query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("email", &self.email),
            ("semcouserid", &self.semcouserid),
            ("bookingid", &self.bookingid),
            ("course", &self.course),
            ("user", &self.user),
            ("enrolstatus", &self.enrolstatus),
            ("completionstatus", &self.completionstatus),
            ("tifirst", &self.tifirst),
            ("tilast", &self.tilast),
            ("active_on", &self.active_on),
            ("from", &self.from),
            ("to", &self.to),
            ("known_at", &self.known_at),
            ("position", &self.position),
            ("sort", &self.sort),
            ("dir", &self.dir),
            ("cursor", &self.cursor),
            ("page_size", &self.page_size),
        ];
        for (name, value) in pairs {
            if let Some(value) = given(value) {
                out.append_pair(name, value);
            }
        }
        out.finish()
    }
}

/// Which columns the page shows and its initial sort (settings `report_columns`,
/// `report_sort`; engineer `health` adds them to the settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplaySettings {
    pub columns: Vec<Column>,
    pub sort: (Column, Direction),
}

impl Default for DisplaySettings {
    /// Every column (the plugin's, then the 2026 line's), sorted by enrolid ascending (the
    /// plugin's `id` ASC).
    fn default() -> Self {
        Self { columns: Column::ALL.to_vec(), sort: (Column::EnrolId, Direction::Asc) }
    }
}

impl DisplaySettings {
    /// From the settings as `/settings` stores them (`domain::config`): `report_columns` the
    /// optional columns shown, by their setting ids (`config::OPTIONAL_REPORT_COLUMNS`,
    /// comma-separated, empty for none; the plugin's columns always show), `report_sort`
    /// `COLUMN asc|desc`. Unknown names are ignored; nothing set means the default.
    pub fn from_text(columns: Option<&str>, sort: Option<&str>) -> Self {
        let default = Self::default();
        let columns = match columns {
            None => default.columns,
            Some(text) => {
                let shown: Vec<Column> = text.split(',').filter_map(|id| setting_column(id.trim())).collect();
                Column::ALL.iter().copied().filter(|c| optional_setting_id(*c).is_none() || shown.contains(c)).collect()
            }
        };
        let sort = sort
            .and_then(|text| {
                let text = text.trim();
                let (name, dir) = text.split_once([' ', ':']).unwrap_or((text, "asc"));
                Some((setting_column(name.trim())?, Direction::parse(dir.trim())?))
            })
            .unwrap_or(default.sort);
        Self { columns, sort }
    }
}

/// The setting id (`config::OPTIONAL_REPORT_COLUMNS`) of an optional column; `None` for the
/// plugin's columns, which always show.
fn optional_setting_id(column: Column) -> Option<&'static str> {
    Some(match column {
        Column::Fullname => "fullname",
        Column::CompletionStatus => "completionstatus",
        Column::TimeCompleted => "timecompleted",
        Column::Grade => "grade",
        Column::Company => "semcousercompany",
        Column::Birthday => "semcouserbirthday",
        Column::PlaceOfBirth => "semcouserplaceofbirth",
        Column::Tenant => "semcobranchtoken",
        _ => return None,
    })
}

/// A column by its setting id or its report name.
fn setting_column(name: &str) -> Option<Column> {
    Column::ALL.iter().copied().find(|c| optional_setting_id(*c) == Some(name)).or_else(|| Column::parse(name))
}

/// The display settings from the ledger's settings (`report_columns`, `report_sort`).
pub fn display_settings(settings: &crate::domain::config::Settings) -> DisplaySettings {
    DisplaySettings::from_text(Some(&settings.report_columns.join(",")), Some(&settings.report_sort.as_text()))
}

/// The display settings as stored in `ledger_config` (`report_columns`, `report_sort`), the
/// default where they are not set.
pub async fn display_settings_of(db: &Db) -> Result<DisplaySettings, StoreError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM ledger_config WHERE name IN ('report_columns', 'report_sort')")
            .fetch_all(&db.pool)
            .await?;
    let get = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    Ok(DisplaySettings::from_text(get("report_columns"), get("report_sort")))
}

/// One page of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub rows: Vec<ReportRow>,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
    /// The cursor of the previous page, if this is not the first.
    pub prev: Option<String>,
    /// With "as known at": the last log position the answer read.
    pub known_position: Option<i64>,
}

fn cursor_of(query: &ReportQuery, row: &ReportRow, before: bool) -> String {
    let (column, direction) = query.sort;
    Cursor {
        column: column.as_str().into(),
        direction: direction.as_str().into(),
        key: row.sort_key(column),
        enrolid: row.enrolid,
        before,
    }
    .encode()
}

/// The rows of the present after (or before) the cursor in the query's sort: one read of at
/// most `limit` rows.
async fn present_rows(
    conn: &mut AnyConnection,
    filters: &Filters,
    sort: (Column, Direction),
    cursor: Option<&Cursor>,
    limit: i64,
) -> Result<Vec<ReportRow>, StoreError> {
    let backend = if conn.backend_name().eq_ignore_ascii_case("sqlite") { Backend::Sqlite } else { Backend::Postgres };
    let (sql, binds) = present_sql(backend, filters, sort, cursor, limit);
    let mut query = sqlx::query(&sql);
    for bind in binds {
        query = match bind {
            Bind::Int(v) => query.bind(v),
            Bind::Real(v) => query.bind(v),
            Bind::Text(v) => query.bind(v),
        };
    }
    let rows = query.fetch_all(conn).await?;
    Ok(rows.iter().map(ReportRow::from_sql).collect::<Result<_, _>>()?)
}

/// The SQL of one present page (public for the plan checks in `tests/it/query_plans.rs`):
/// the filters, the seek past the cursor and the sort, with its binds rendered as literals
/// when `literal` (EXPLAIN) is wanted.
pub fn present_sql_literal(
    backend: Backend,
    filters: &Filters,
    sort: (Column, Direction),
    cursor: Option<&Cursor>,
    limit: i64,
) -> String {
    let (mut sql, binds) = present_sql(backend, filters, sort, cursor, limit);
    for (i, bind) in binds.iter().enumerate().rev() {
        let literal = match bind {
            Bind::Int(v) => v.to_string(),
            Bind::Real(v) => format!("{v:?}"),
            Bind::Text(v) => format!("'{}'", v.replace('\'', "''")),
        };
        sql = sql.replace(&format!("${}", i + 1), &literal);
    }
    sql
}

fn present_sql(
    backend: Backend,
    filters: &Filters,
    sort: (Column, Direction),
    cursor: Option<&Cursor>,
    limit: i64,
) -> (String, Vec<Bind>) {
    let (column, direction) = sort;
    let mut binds = Vec::new();
    let mut conditions = filters.sql(1, &mut binds);
    // Walk forwards in the sort, or backwards for "previous" (then the page is reversed).
    let walk = match cursor {
        Some(c) if c.before => direction.flip(),
        _ => direction,
    };
    let (cmp, order) = match walk {
        Direction::Asc => (">", "ASC"),
        Direction::Desc => ("<", "DESC"),
    };
    let key = column.sort_sql();
    if let Some(cursor) = cursor {
        binds.push(cursor.key.bind());
        let k = binds.len();
        binds.push(Bind::Int(cursor.enrolid));
        let i = binds.len();
        if column == Column::EnrolId {
            conditions.push(format!("ue.id {cmp} ${i}"));
        } else {
            // A row-value comparison: both backends seek an index on (key, id) with it.
            conditions.push(format!("({key}, ue.id) {cmp} (${k}, ${i})"));
        }
    }
    let where_clause =
        if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    let order_by =
        if column == Column::EnrolId { format!("ue.id {order}") } else { format!("{key} {order}, ue.id {order}") };
    // SQLite's planner, given a LIMIT, may drive the join from the instances and sort every
    // row; a sort on a user enrolment column without a narrowing filter walks
    // `user_enrolments` in the sort's order instead (SQLite keeps the left side of each CROSS
    // JOIN in the outer loop; PostgreSQL plans it as the same inner join).
    let ue_sort = matches!(column, Column::EnrolId | Column::EnrolStart | Column::EnrolEnd);
    let narrowed = filters.course.is_some()
        || filters.user.is_some()
        || filters.bookingid.is_some()
        || filters.semcouserid.is_some();
    let from = if backend == Backend::Sqlite && ue_sort && !narrowed {
        ["enrol e", "users u", "courses c"].iter().fold(queries::REPORT_FROM.to_owned(), |from, t| {
            from.replacen(&format!("JOIN {t}"), &format!("CROSS JOIN {t}"), 1)
        })
    } else {
        queries::REPORT_FROM.to_owned()
    };
    let sql = format!("{} {from}{where_clause} ORDER BY {order_by} LIMIT {limit}", queries::REPORT_SELECT);
    (sql, binds)
}

/// Reads one page in one consistent snapshot.
pub async fn page(db: &Db, query: &ReportQuery) -> Result<Page, StoreError> {
    let mut tx = db.pool.begin().await?;
    if db.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    let page = match query.filters.known {
        KnownAt::Now => present_page(&mut tx, query).await?,
        _ => {
            let (rows, known_position) = past_rows(&mut tx, &query.filters, query.sort).await?;
            page_of_sorted(query, &rows, Some(known_position))
        }
    };
    tx.commit().await?;
    Ok(page)
}

async fn present_page(conn: &mut AnyConnection, query: &ReportQuery) -> Result<Page, StoreError> {
    let mut rows = present_rows(conn, &query.filters, query.sort, query.cursor.as_ref(), query.page_size + 1).await?;
    let more = rows.len() as i64 > query.page_size;
    rows.truncate(query.page_size as usize);
    let backwards = query.cursor.as_ref().is_some_and(|c| c.before);
    if backwards {
        rows.reverse();
    }
    // Forwards: a next page when more rows came; a previous one when we came from a cursor.
    // Backwards: a previous page when more rows came; a next one always (we came from it).
    let (has_next, has_prev) = if backwards { (true, more) } else { (more, query.cursor.is_some()) };
    Ok(Page {
        next: rows.last().filter(|_| has_next).map(|r| cursor_of(query, r, false)),
        prev: rows.first().filter(|_| has_prev).map(|r| cursor_of(query, r, true)),
        rows,
        known_position: None,
    })
}

/// The comparison of the report's sort (ties broken by enrolid in the same direction).
fn compare(sort: (Column, Direction), a: &ReportRow, b: &ReportRow) -> Ordering {
    let ordering = a.sort_key(sort.0).cmp(&b.sort_key(sort.0)).then(a.enrolid.cmp(&b.enrolid));
    match sort.1 {
        Direction::Asc => ordering,
        Direction::Desc => ordering.reverse(),
    }
}

/// Where the cursor's row sits in the sort relative to `row`.
fn compare_to_cursor(sort: (Column, Direction), row: &ReportRow, cursor: &Cursor) -> Ordering {
    let ordering = row.sort_key(sort.0).cmp(&cursor.key).then(row.enrolid.cmp(&cursor.enrolid));
    match sort.1 {
        Direction::Asc => ordering,
        Direction::Desc => ordering.reverse(),
    }
}

/// A page of rows already filtered and sorted (the past).
fn page_of_sorted(query: &ReportQuery, rows: &[ReportRow], known_position: Option<i64>) -> Page {
    let size = query.page_size as usize;
    let (start, end) = match &query.cursor {
        None => (0, size.min(rows.len())),
        Some(c) if c.before => {
            let end = rows.partition_point(|r| compare_to_cursor(query.sort, r, c) == Ordering::Less);
            (end.saturating_sub(size), end)
        }
        Some(c) => {
            let start = rows.partition_point(|r| compare_to_cursor(query.sort, r, c) != Ordering::Greater);
            (start, (start + size).min(rows.len()))
        }
    };
    let slice = rows[start..end].to_vec();
    Page {
        next: slice.last().filter(|_| end < rows.len()).map(|r| cursor_of(query, r, false)),
        prev: slice.first().filter(|_| start > 0).map(|r| cursor_of(query, r, true)),
        rows: slice,
        known_position,
    }
}

/// The rows of the past, filtered and sorted: the enrolments `app::asof` knew at `known`
/// (with `active_on`, only those active then by its rule), their completions from the fold of
/// the same log prefix, personal data from today's registry (users deleted since are left
/// out, as the plugin leaves deleted users out).
async fn past_rows(
    conn: &mut AnyConnection,
    filters: &Filters,
    sort: (Column, Direction),
) -> Result<(Vec<ReportRow>, i64), StoreError> {
    let scope = match (filters.course, filters.user) {
        (Some(course), _) => asof::Scope::Course(course),
        (None, Some(user)) => asof::Scope::User(user),
        (None, None) => asof::Scope::All,
    };
    let question = asof::Question { known: filters.known, active_on: filters.active_on, scope };
    let answer = asof::as_of_on(conn, &question).await?;
    let (state, _) = audit::fold(conn, Some(answer.folded_position)).await?;
    let users: BTreeSet<i64> = answer.enrolments.iter().map(|e| e.userid).collect();
    let courses: BTreeSet<i64> = answer.enrolments.iter().map(|e| e.courseid).collect();
    let people = registry_users(conn, &users).await?;
    let course_names = registry_courses(conn, &courses).await?;
    let mut rows: Vec<ReportRow> = answer
        .enrolments
        .iter()
        .filter_map(|e| {
            let person = people.get(&e.userid)?;
            let completion = state.course_completions.get(&(e.userid, e.courseid));
            Some(ReportRow {
                enrolid: e.enrolid,
                moodleuserid: e.userid,
                semcouserid: person.profile.get("semco_userid").cloned(),
                username: person.username.clone(),
                lastname: person.lastname.clone(),
                firstname: person.firstname.clone(),
                email: person.email.clone(),
                user_suspended: person.suspended,
                courseid: e.courseid,
                course: course_names.get(&e.courseid).cloned().unwrap_or_default(),
                semcobookingid: e.semcobookingid.clone(),
                enrolstart: e.timestart,
                enrolend: e.timeend,
                enrol_suspended: e.suspended,
                timecompleted: completion.map(|c| c.completion.timecompleted),
                grade: completion.and_then(|c| c.completion.grade).map(|g| g.finalgrade.get()),
                company: person.profile.get("semco_usercompany").cloned(),
                birthday: person.profile.get("semco_userbirthday").cloned(),
                placeofbirth: person.profile.get("semco_userplaceofbirth").cloned(),
                tenant: person.profile.get("semco_branchtoken").cloned(),
            })
        })
        .filter(|row| filters.matches_past(row))
        .collect();
    rows.sort_by(|a, b| compare(sort, a, b));
    Ok((rows, answer.known_position))
}

struct Person {
    username: String,
    firstname: String,
    lastname: String,
    email: String,
    suspended: bool,
    profile: BTreeMap<String, String>,
}

/// Today's registry rows of `users` that are not deleted, with their SEMCO profile fields
/// (read in chunks of ids).
async fn registry_users(conn: &mut AnyConnection, users: &BTreeSet<i64>) -> Result<BTreeMap<i64, Person>, StoreError> {
    let mut people = BTreeMap::new();
    let ids: Vec<i64> = users.iter().copied().collect();
    for chunk in ids.chunks(500) {
        let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let rows: Vec<(i64, String, String, String, String, i64)> = sqlx::query_as(&format!(
            "SELECT id, username, firstname, lastname, email, CAST(suspended AS BIGINT) FROM users \
             WHERE deleted = 0 AND id IN ({list})"
        ))
        .fetch_all(&mut *conn)
        .await?;
        for (id, username, firstname, lastname, email, suspended) in rows {
            people.insert(
                id,
                Person { username, firstname, lastname, email, suspended: suspended != 0, profile: BTreeMap::new() },
            );
        }
        let fields: Vec<(i64, String, String)> =
            sqlx::query_as(&format!("SELECT userid, shortname, data FROM user_profile_data WHERE userid IN ({list})"))
                .fetch_all(&mut *conn)
                .await?;
        for (id, shortname, data) in fields {
            if let Some(person) = people.get_mut(&id) {
                person.profile.insert(shortname, data);
            }
        }
    }
    Ok(people)
}

async fn registry_courses(
    conn: &mut AnyConnection,
    courses: &BTreeSet<i64>,
) -> Result<BTreeMap<i64, String>, StoreError> {
    let mut names = BTreeMap::new();
    let ids: Vec<i64> = courses.iter().copied().collect();
    for chunk in ids.chunks(500) {
        let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let rows: Vec<(i64, String)> =
            sqlx::query_as(&format!("SELECT id, fullname FROM courses WHERE id IN ({list})"))
                .fetch_all(&mut *conn)
                .await?;
        names.extend(rows);
    }
    Ok(names)
}

/// Every row of the filtered report in its sort, in batches: the present is read one keyset
/// page of `DOWNLOAD_BATCH` rows at a time (never all rows at once); the past is folded once
/// and handed out in batches.
pub struct Batches {
    db: Db,
    filters: Filters,
    sort: (Column, Direction),
    state: BatchState,
}

enum BatchState {
    Present { after: Option<Cursor>, done: bool },
    Past { rows: std::vec::IntoIter<ReportRow> },
}

impl Batches {
    pub async fn new(db: &Db, filters: Filters, sort: (Column, Direction)) -> Result<Batches, StoreError> {
        let state = match filters.known {
            KnownAt::Now => BatchState::Present { after: None, done: false },
            _ => {
                let mut tx = db.pool.begin().await?;
                if db.backend == Backend::Postgres {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
                }
                let (rows, _) = past_rows(&mut tx, &filters, sort).await?;
                tx.commit().await?;
                BatchState::Past { rows: rows.into_iter() }
            }
        };
        Ok(Batches { db: db.clone(), filters, sort, state })
    }

    /// The next batch; `None` after the last row.
    pub async fn next(&mut self) -> Result<Option<Vec<ReportRow>>, StoreError> {
        match &mut self.state {
            BatchState::Past { rows } => {
                let batch: Vec<ReportRow> = rows.by_ref().take(DOWNLOAD_BATCH as usize).collect();
                Ok(Some(batch).filter(|b| !b.is_empty()))
            }
            BatchState::Present { done: true, .. } => Ok(None),
            BatchState::Present { after, done } => {
                let mut conn = self.db.pool.acquire().await?;
                let rows = present_rows(&mut conn, &self.filters, self.sort, after.as_ref(), DOWNLOAD_BATCH).await?;
                if (rows.len() as i64) < DOWNLOAD_BATCH {
                    *done = true;
                }
                *after = rows.last().map(|row| Cursor {
                    column: self.sort.0.as_str().into(),
                    direction: self.sort.1.as_str().into(),
                    key: row.sort_key(self.sort.0),
                    enrolid: row.enrolid,
                    before: false,
                });
                Ok(Some(rows).filter(|b| !b.is_empty()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ReportParams {
        let query = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let map: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        serde_json::from_value(serde_json::to_value(map).unwrap()).unwrap()
    }

    const DEFAULT_SORT: (Column, Direction) = (Column::EnrolId, Direction::Asc);

    #[test]
    fn every_column_parses_back_from_its_name() {
        for &column in Column::ALL {
            assert_eq!(Column::parse(column.as_str()), Some(column));
        }
        assert_eq!(Column::ALL.len(), 22);
        assert_eq!(Column::parse("actions"), None);
    }

    #[test]
    fn empty_parameters_are_no_filters_and_the_default_sort() {
        let query = params(&[("email", ""), ("course", " "), ("sort", "")]).parse(DEFAULT_SORT).unwrap();
        assert_eq!(query.filters, Filters::default());
        assert_eq!(query.sort, DEFAULT_SORT);
        assert_eq!(query.page_size, PAGE_SIZE_DEFAULT);
        assert!(!query.filters.any());
    }

    #[test]
    fn filters_are_typed_and_bad_ones_named() {
        let query = params(&[
            ("email", "Ann@"),
            ("course", "7"),
            ("user", "9"),
            ("enrolstatus", "suspended"),
            ("completionstatus", "notcompleted"),
            ("tifirst", "a"),
            ("tilast", "Z"),
            ("active_on", "2026-03-01"),
            ("from", "2026-01-01"),
            ("to", "2026-01-31"),
            ("sort", "lastname"),
            ("dir", "desc"),
            ("page_size", "500"),
        ])
        .parse(DEFAULT_SORT)
        .unwrap();
        let f = &query.filters;
        assert_eq!((f.course, f.user), (Some(7), Some(9)));
        assert_eq!(f.enrolstatus, Some(EnrolStatus::Suspended));
        assert_eq!(f.completionstatus, Some(CompletionStatus::NotCompleted));
        assert_eq!((f.firstinitial, f.lastinitial), (Some('A'), Some('Z')));
        assert_eq!(f.active_on, Some(1_772_323_200));
        assert_eq!(f.from, Some(1_767_225_600));
        assert_eq!(f.to, Some(1_769_903_999));
        assert_eq!(query.sort, (Column::Lastname, Direction::Desc));
        assert_eq!(query.page_size, 500);
        for (name, value, says) in [
            ("course", "abc", "course must be a positive integer"),
            ("user", "0", "user must be a positive integer"),
            ("enrolstatus", "x", "enrolstatus must be active or suspended"),
            ("completionstatus", "done", "completionstatus must be completed or notcompleted"),
            ("tifirst", "ab", "tifirst must be one letter A-Z"),
            ("active_on", "yesterday", "active_on must be a date"),
            ("sort", "actions", "sort must be a column name"),
            ("dir", "up", "dir must be asc or desc"),
            ("page_size", "501", "page_size must be an integer from 1 to 500"),
            ("page_size", "0", "page_size must be an integer from 1 to 500"),
            ("cursor", "zz", "cursor is not a cursor"),
            ("position", "-1", "position must be an integer >= 0"),
        ] {
            let error = params(&[(name, value)]).parse(DEFAULT_SORT).unwrap_err();
            assert!(error.0.starts_with(says), "{name}={value}: {error}");
        }
        let error = params(&[("from", "2026-02-01"), ("to", "2026-01-01")]).parse(DEFAULT_SORT).unwrap_err();
        assert_eq!(error.0, "from must not be after to");
        let error = params(&[("known_at", "2026-01-01"), ("position", "3")]).parse(DEFAULT_SORT).unwrap_err();
        assert_eq!(error.0, "give known_at or position, not both");
    }

    #[test]
    fn known_at_counts_every_event_of_its_second() {
        let query = params(&[("known_at", "2026-01-01T10:00:00Z")]).parse(DEFAULT_SORT).unwrap();
        assert_eq!(query.filters.known, KnownAt::Time(1_767_261_600_999_999));
        let query = params(&[("position", "12")]).parse(DEFAULT_SORT).unwrap();
        assert_eq!(query.filters.known, KnownAt::Position(12));
    }

    #[test]
    fn a_cursor_round_trips_and_belongs_to_its_sort() {
        let cursor = Cursor {
            column: "lastname".into(),
            direction: "asc".into(),
            key: SortValue::Text("O'Brien & \"Sons\"".into()),
            enrolid: 42,
            before: true,
        };
        let text = cursor.encode();
        assert!(text.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(Cursor::decode(&text), Some(cursor));
        let query = params(&[("sort", "lastname"), ("cursor", &text)]).parse(DEFAULT_SORT).unwrap();
        assert_eq!(query.cursor.unwrap().enrolid, 42);
        let error = params(&[("sort", "email"), ("cursor", &text)]).parse(DEFAULT_SORT).unwrap_err();
        assert!(error.0.starts_with("cursor belongs to another sort"));
        let error =
            params(&[("sort", "lastname"), ("dir", "desc"), ("cursor", &text)]).parse(DEFAULT_SORT).unwrap_err();
        assert!(error.0.starts_with("cursor belongs to another sort"));
        // A text key on an integer column is refused, not bound as the wrong type.
        let forged = Cursor { column: "enrolid".into(), ..Cursor::decode(&text).unwrap() };
        let error = params(&[("cursor", &forged.encode())]).parse(DEFAULT_SORT).unwrap_err();
        assert!(error.0.starts_with("cursor belongs to another sort"));
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_get_a_quote() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_cell(formula), format!("'{formula}"));
        }
        for plain in ["", "Ann", "1-2", "a=b", "'quoted"] {
            assert_eq!(csv_cell(plain), plain);
        }
    }

    #[test]
    fn like_patterns_match_wildcards_literally() {
        assert_eq!(like_pattern("A_b%"), "%a\\_b\\%%");
        assert_eq!(like_pattern("x\\y"), "%x\\\\y%");
    }

    #[test]
    fn display_settings_come_from_text_with_defaults() {
        assert_eq!(DisplaySettings::from_text(None, None), DisplaySettings::default());
        let settings = DisplaySettings::from_text(Some("grade, semcobranchtoken,nonsense"), Some("lastname desc"));
        let optional = [Column::Fullname, Column::CompletionStatus, Column::TimeCompleted, Column::Company];
        assert!(settings.columns.contains(&Column::Grade) && settings.columns.contains(&Column::Tenant));
        assert!(optional.iter().all(|c| !settings.columns.contains(c)), "{:?}", settings.columns);
        assert!(settings.columns.contains(&Column::Email), "the plugin's columns always show");
        assert_eq!(settings.sort, (Column::Lastname, Direction::Desc));
        assert_eq!(DisplaySettings::from_text(Some(""), Some("grade")).sort, (Column::Grade, Direction::Asc));
        assert_eq!(
            DisplaySettings::from_text(None, Some("semcouserbirthday desc")).sort,
            (Column::Birthday, Direction::Desc)
        );
        assert_eq!(DisplaySettings::from_text(None, Some("x y")).sort, DisplaySettings::default().sort);
    }

    #[test]
    fn display_settings_follow_the_settings_page() {
        let mut settings = crate::domain::config::Settings::default();
        assert_eq!(display_settings(&settings), DisplaySettings::default());
        settings.report_columns = vec!["fullname".into()];
        settings.report_sort = crate::domain::config::ReportSort { column: "email".into(), descending: true };
        let shown = display_settings(&settings);
        assert!(shown.columns.contains(&Column::Fullname) && !shown.columns.contains(&Column::Grade));
        assert_eq!(shown.sort, (Column::Email, Direction::Desc));
    }

    #[test]
    fn dates_and_grades_show_as_the_plugin_shows_them() {
        assert_eq!(format_date(0), "");
        assert_eq!(format_date(1_772_368_200), "01 March 2026, 12:30 PM");
        assert_eq!(format_grade(87.5), "87.5");
        assert_eq!(format_grade(100.0), "100");
        assert_eq!(format_grade(0.12345), "0.12345");
    }

    fn row(enrolid: i64, lastname: &str) -> ReportRow {
        ReportRow {
            enrolid,
            moodleuserid: 1,
            semcouserid: None,
            username: "u".into(),
            lastname: lastname.into(),
            firstname: "F".into(),
            email: "e".into(),
            user_suspended: false,
            courseid: 1,
            course: "c".into(),
            semcobookingid: None,
            enrolstart: 0,
            enrolend: 0,
            enrol_suspended: false,
            timecompleted: None,
            grade: None,
            company: None,
            birthday: None,
            placeofbirth: None,
            tenant: None,
        }
    }

    #[test]
    fn paging_sorted_rows_visits_each_once_forwards_and_backwards() {
        let mut rows: Vec<ReportRow> = (1..=7).map(|i| row(i, ["b", "a", "c"][i as usize % 3])).collect();
        for dir in [Direction::Asc, Direction::Desc] {
            let sort = (Column::Lastname, dir);
            rows.sort_by(|a, b| compare(sort, a, b));
            let mut query = ReportQuery { filters: Filters::default(), sort, cursor: None, page_size: 3 };
            let mut seen = Vec::new();
            let mut pages = Vec::new();
            loop {
                let page = page_of_sorted(&query, &rows, None);
                seen.extend(page.rows.iter().map(|r| r.enrolid));
                pages.push(page.clone());
                let Some(next) = page.next else { break };
                query.cursor = Cursor::decode(&next);
            }
            assert_eq!(seen, rows.iter().map(|r| r.enrolid).collect::<Vec<_>>());
            assert_eq!(pages.len(), 3);
            // Back from the last page gives the middle one.
            query.cursor = Cursor::decode(pages[2].prev.as_ref().unwrap());
            assert_eq!(page_of_sorted(&query, &rows, None).rows, pages[1].rows);
            assert!(pages[0].prev.is_none());
        }
    }
}
