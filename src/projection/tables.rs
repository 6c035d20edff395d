//! The projection tables as SQL: which columns each has, how a folded row becomes SQL values,
//! and the generic upsert/delete/read that the writer, rebuild and verify share.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::state::{CompletionRow, CriteriaRow, EnrolRow, ProjectionState, RecompletionRow, RowKey, UserEnrolmentRow};
use super::writes::{self, Patch, Pending, PendingWrites};
use crate::domain::event::{CourseCompletion, Grade};
use crate::domain::recompletion::RecompletionType;
use crate::store::log::{push_placeholders_for, Combined};
use crate::store::{Backend, StoreError};

/// Rows per multi-row upsert statement.
pub const UPSERT_ROWS_MAX: usize = 400;

/// A column's SQL type, for reading rows back generically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Real,
    Text,
}

/// One SQL value of a projection row.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

pub struct Table {
    pub name: &'static str,
    columns: &'static [(&'static str, Kind)],
    /// The first `key_len` columns are the primary key.
    key_len: usize,
}

use Kind::{Int, Real, Text};

pub const ENROL: Table = Table {
    name: "enrol",
    columns: &[
        ("id", Int),
        ("enrol", Text),
        ("status", Int),
        ("courseid", Int),
        ("sortorder", Int),
        ("roleid", Int),
        ("customchar1", Text),
        ("timecreated", Int),
        ("timemodified", Int),
    ],
    key_len: 1,
};
pub const USER_ENROLMENTS: Table = Table {
    name: "user_enrolments",
    columns: &[
        ("id", Int),
        ("status", Int),
        ("enrolid", Int),
        ("userid", Int),
        ("timestart", Int),
        ("timeend", Int),
        ("modifierid", Int),
        ("timecreated", Int),
        ("timemodified", Int),
    ],
    key_len: 1,
};
pub const COURSE_COMPLETIONS: Table = Table {
    name: "course_completions",
    columns: &[
        ("userid", Int),
        ("course", Int),
        ("timecompleted", Int),
        ("finalgrade", Real),
        ("grademin", Real),
        ("grademax", Real),
        ("gradepass", Real),
    ],
    key_len: 2,
};
pub const RECOMPLETION_HISTORY: Table = Table {
    name: "recompletion_history",
    columns: &[
        ("id", Int),
        ("userid", Int),
        ("course", Int),
        ("enrolid", Int),
        ("semcobookingid", Text),
        ("timecompleted", Int),
        ("finalgrade", Real),
        ("grademin", Real),
        ("grademax", Real),
        ("gradepass", Real),
        ("timereset", Int),
    ],
    key_len: 1,
};
pub const COURSE_RECOMPLETION: Table =
    Table { name: "course_recompletion", columns: &[("course", Int), ("recompletiontype", Text)], key_len: 1 };
pub const LEDGER_CONFIG: Table =
    Table { name: "ledger_config", columns: &[("name", Text), ("value", Text)], key_len: 1 };

/// `course_completion_criteria`, one row per course and criterion type (type 6 only so far).
pub const COURSE_COMPLETION_CRITERIA: Table = Table {
    name: "course_completion_criteria",
    columns: &[("course", Int), ("criteriatype", Int), ("gradepass", Real)],
    key_len: 2,
};

pub const ALL: [&Table; 7] = [
    &ENROL,
    &USER_ENROLMENTS,
    &COURSE_COMPLETIONS,
    &RECOMPLETION_HISTORY,
    &COURSE_RECOMPLETION,
    &LEDGER_CONFIG,
    &COURSE_COMPLETION_CRITERIA,
];

fn int(v: i64) -> SqlValue {
    SqlValue::Int(Some(v))
}
fn text(v: &str) -> SqlValue {
    SqlValue::Text(Some(v.to_owned()))
}

fn completion_values(completion: Option<&CourseCompletion>) -> [SqlValue; 5] {
    let grade: Option<&Grade> = completion.and_then(|c| c.grade.as_ref());
    [
        SqlValue::Int(completion.map(|c| c.timecompleted)),
        SqlValue::Real(grade.map(|g| g.finalgrade.get())),
        SqlValue::Real(grade.map(|g| g.grademin.get())),
        SqlValue::Real(grade.map(|g| g.grademax.get())),
        SqlValue::Real(grade.map(|g| g.gradepass.get())),
    ]
}

/// Every row of every table, keyed by table name, in primary-key order.
pub type TableRows = BTreeMap<&'static str, Vec<Vec<SqlValue>>>;

/// A whole row's SQL values and its table: shared by the fold (`ProjectionState::row`) and
/// the writer's incremental writes (`write_changes`), so the two cannot map a row differently.
fn row_values(row: RowRef<'_>) -> (&'static Table, Vec<SqlValue>) {
    match row {
        RowRef::Enrol(r) => {
            let values = vec![
                int(r.id),
                text(r.enrol),
                int(0),
                int(r.courseid),
                int(r.sortorder),
                int(r.roleid),
                SqlValue::Text(r.customchar1.clone()),
                int(r.timecreated),
                int(r.timemodified),
            ];
            (&ENROL, values)
        }
        RowRef::UserEnrolment(r) => {
            let values = [
                r.id,
                r.status,
                r.enrolid,
                r.userid,
                r.timestart,
                r.timeend,
                r.modifierid,
                r.timecreated,
                r.timemodified,
            ];
            (&USER_ENROLMENTS, values.into_iter().map(int).collect())
        }
        RowRef::Completion(r) => {
            let mut values = vec![int(r.userid), int(r.course)];
            values.extend(completion_values(Some(&r.completion)));
            (&COURSE_COMPLETIONS, values)
        }
        RowRef::Recompletion(r) => {
            let mut values = vec![int(r.id), int(r.userid), int(r.course), int(r.enrolid)];
            values.push(SqlValue::Text(r.semcobookingid.clone()));
            values.extend(completion_values(r.archived.as_ref()));
            values.push(int(r.timereset));
            (&RECOMPLETION_HISTORY, values)
        }
        RowRef::CourseRecompletion(course, kind) => (&COURSE_RECOMPLETION, vec![int(course), text(kind.as_str())]),
        RowRef::Config(name, value) => (&LEDGER_CONFIG, vec![text(name), text(value)]),
        RowRef::Criteria(r) => (
            &COURSE_COMPLETION_CRITERIA,
            vec![int(r.course), int(r.criteriatype), SqlValue::Real(Some(r.gradepass.get()))],
        ),
    }
}

/// A borrowed row of any projection table.
enum RowRef<'a> {
    Enrol(&'a EnrolRow),
    UserEnrolment(&'a UserEnrolmentRow),
    Completion(&'a CompletionRow),
    Recompletion(&'a RecompletionRow),
    CourseRecompletion(i64, RecompletionType),
    Config(&'a str, &'a str),
    Criteria(&'a CriteriaRow),
}

impl<'a> From<&'a writes::Row> for RowRef<'a> {
    fn from(row: &'a writes::Row) -> Self {
        match row {
            writes::Row::Enrol(r) => Self::Enrol(r),
            writes::Row::UserEnrolment(r) => Self::UserEnrolment(r),
            writes::Row::Completion(r) => Self::Completion(r),
            writes::Row::Recompletion(r) => Self::Recompletion(r),
            writes::Row::CourseRecompletion { course, kind } => Self::CourseRecompletion(*course, *kind),
            writes::Row::Config { name, value } => Self::Config(name, value),
            writes::Row::Criteria(r) => Self::Criteria(r),
        }
    }
}

impl ProjectionState {
    /// The SQL row for a key, or `None` when the row no longer exists.
    fn row(&self, key: &RowKey) -> Option<(&'static Table, Vec<SqlValue>)> {
        Some(row_values(match key {
            RowKey::Enrol(id) => RowRef::Enrol(self.enrol.get(id)?),
            RowKey::UserEnrolment(id) => RowRef::UserEnrolment(self.user_enrolments.get(id)?),
            RowKey::Completion(user, course) => RowRef::Completion(self.course_completions.get(&(*user, *course))?),
            RowKey::Recompletion(id) => RowRef::Recompletion(self.recompletion_history.get(id)?),
            RowKey::CourseRecompletion(course) => {
                RowRef::CourseRecompletion(*course, *self.course_recompletion.get(course)?)
            }
            RowKey::Config(name) => RowRef::Config(name, self.config.get(name)?),
            RowKey::Criteria(course, kind) => RowRef::Criteria(self.criteria.get(&(*course, *kind))?),
        }))
    }

    fn all_keys(&self) -> impl Iterator<Item = RowKey> + '_ {
        self.enrol
            .keys()
            .map(RowKey::Enrol)
            .chain(self.user_enrolments.keys().map(RowKey::UserEnrolment))
            .chain(self.course_completions.keys().map(|(u, c)| RowKey::Completion(*u, *c)))
            .chain(self.recompletion_history.keys().map(|k| RowKey::Recompletion(*k)))
            .chain(self.course_recompletion.keys().map(|k| RowKey::CourseRecompletion(*k)))
            .chain(self.config.keys().map(|k| RowKey::Config(k.clone())))
            .chain(self.criteria.keys().map(|(c, k)| RowKey::Criteria(*c, *k)))
    }

    /// All rows as SQL values, per table in key order: what the tables must contain.
    pub fn table_rows(&self) -> TableRows {
        let mut rows: TableRows = ALL.iter().map(|t| (t.name, Vec::new())).collect();
        for key in self.all_keys() {
            if let Some((table, values)) = self.row(&key) {
                rows.entry(table.name).or_default().push(values);
            }
        }
        for table_rows in rows.values_mut() {
            table_rows.sort_by(|a, b| key_order(a, b));
        }
        rows
    }
}

/// Orders rows by their leading (key) columns the same way on both sides of a comparison,
/// whatever collation the database uses for text.
fn key_order(a: &[SqlValue], b: &[SqlValue]) -> std::cmp::Ordering {
    let cmp = |x: &SqlValue, y: &SqlValue| match (x, y) {
        (SqlValue::Int(x), SqlValue::Int(y)) => x.cmp(y),
        (SqlValue::Text(x), SqlValue::Text(y)) => x.cmp(y),
        (SqlValue::Real(x), SqlValue::Real(y)) => x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal),
        _ => std::cmp::Ordering::Equal,
    };
    a.iter().zip(b).take(2).map(|(x, y)| cmp(x, y)).find(|o| o.is_ne()).unwrap_or(std::cmp::Ordering::Equal)
}

/// Writes a batch's merged row changes: deletes, whole-row upserts, then column patches.
/// `booking_moved` are enrol rows whose booking ID changed: their old ID is released first, so
/// the unique index on `customchar1` never sees a booking ID twice in the middle of a batch.
pub async fn write_changes(
    conn: &mut AnyConnection,
    changes: &PendingWrites,
    booking_moved: &BTreeSet<i64>,
) -> Result<(), StoreError> {
    let backend = Backend::of(conn);
    if !booking_moved.is_empty() {
        let mut sql = "UPDATE enrol SET customchar1 = NULL WHERE id IN ".to_owned();
        push_placeholders_for(&mut sql, backend, 1, booking_moved.len());
        let mut query = sqlx::query::<Any>(&sql);
        for id in booking_moved {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    let mut upserts: BTreeMap<&'static str, (&'static Table, Vec<Vec<SqlValue>>)> = BTreeMap::new();
    let mut deletes: BTreeMap<&'static str, (&'static Table, Vec<Vec<SqlValue>>)> = BTreeMap::new();
    let mut user_enrolment_patches = Vec::new();
    let mut booking_patches = Vec::new();
    for (key, change) in &changes.rows {
        match change {
            Pending::Put(row) => {
                let (table, values) = row_values(row.into());
                upserts.entry(table.name).or_insert((table, Vec::new())).1.push(values);
            }
            Pending::Delete => {
                let (table, values) = key_values(key);
                deletes.entry(table.name).or_insert((table, Vec::new())).1.push(values);
            }
            Pending::Patch(patch @ Patch::UserEnrolment { .. }) => user_enrolment_patches.push(patch),
            Pending::Patch(patch @ Patch::EnrolBooking { .. }) => booking_patches.push(patch),
        }
    }
    for (table, keys) in deletes.values() {
        delete_rows(conn, table, keys).await?;
    }
    for (table, rows) in upserts.values() {
        upsert_rows(conn, table, rows).await?;
    }
    patch_rows(conn, &user_enrolment_patches).await?;
    patch_rows(conn, &booking_patches).await
}

/// PostgreSQL: the batch's row writes as parts of the writer's one statement
/// (`store::log::Combined`), one part per table and kind, each row set one JSON parameter.
/// Returns false (and adds nothing) when one table gets two kinds of write (deletes and
/// upserts, or patches and either): the parts of one statement run in no set order, so such a
/// batch keeps `write_changes`' statements in series.
pub fn combined_writes(changes: &PendingWrites, combined: &mut Combined) -> bool {
    let mut upserts: BTreeMap<&'static str, (&'static Table, Vec<Vec<SqlValue>>)> = BTreeMap::new();
    let mut deletes: BTreeMap<&'static str, (&'static Table, Vec<Vec<SqlValue>>)> = BTreeMap::new();
    let mut user_enrolment_patches = Vec::new();
    let mut booking_patches = Vec::new();
    for (key, change) in &changes.rows {
        match change {
            Pending::Put(row) => {
                let (table, values) = row_values(row.into());
                upserts.entry(table.name).or_insert((table, Vec::new())).1.push(values);
            }
            Pending::Delete => {
                let (table, values) = key_values(key);
                deletes.entry(table.name).or_insert((table, Vec::new())).1.push(values);
            }
            Pending::Patch(Patch::UserEnrolment { id, timestart, timeend, status, modifierid, timemodified }) => {
                user_enrolment_patches.push(serde_json::json!({
                    "id": id, "timestart": timestart, "timeend": timeend, "status": status,
                    "modifierid": modifierid, "timemodified": timemodified,
                }))
            }
            Pending::Patch(Patch::EnrolBooking { id, customchar1 }) => {
                booking_patches.push(serde_json::json!({ "id": id, "customchar1": customchar1 }))
            }
        }
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for name in deletes.keys().chain(upserts.keys()) {
        *kinds.entry(name).or_default() += 1;
    }
    if !user_enrolment_patches.is_empty() {
        *kinds.entry(USER_ENROLMENTS.name).or_default() += 1;
    }
    if !booking_patches.is_empty() {
        *kinds.entry(ENROL.name).or_default() += 1;
    }
    if kinds.values().any(|n| *n > 1) {
        return false;
    }
    for (table, keys) in deletes.values() {
        let key_names: Vec<&str> = table.columns[..table.key_len].iter().map(|(n, _)| *n).collect();
        let on: Vec<String> = key_names.iter().map(|k| format!("{t}.{k} = k.{k}", t = table.name)).collect();
        combined.part(
            &format!(
                "DELETE FROM {t} USING json_populate_recordset(NULL::{t}, {{json}}) AS k WHERE {on}",
                t = table.name,
                on = on.join(" AND ")
            ),
            rows_json(&key_names, keys),
        );
    }
    for (table, rows) in upserts.values() {
        let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
        let updates: Vec<String> = names[table.key_len..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
        combined.part(
            &format!(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{t}, {{json}}) \
                 ON CONFLICT ({keys}) DO UPDATE SET {updates}",
                t = table.name,
                cols = names.join(", "),
                keys = names[..table.key_len].join(", "),
                updates = updates.join(", ")
            ),
            rows_json(&names, rows),
        );
    }
    if !user_enrolment_patches.is_empty() {
        combined.part(
            "UPDATE user_enrolments SET timestart = COALESCE(v.timestart, user_enrolments.timestart), \
             timeend = COALESCE(v.timeend, user_enrolments.timeend), \
             status = COALESCE(v.status, user_enrolments.status), \
             modifierid = v.modifierid, timemodified = v.timemodified \
             FROM json_populate_recordset(NULL::user_enrolments, {json}) AS v WHERE user_enrolments.id = v.id",
            serde_json::Value::from(user_enrolment_patches).to_string(),
        );
    }
    if !booking_patches.is_empty() {
        combined.part(
            "UPDATE enrol SET customchar1 = v.customchar1 \
             FROM json_populate_recordset(NULL::enrol, {json}) AS v WHERE enrol.id = v.id",
            serde_json::Value::from(booking_patches).to_string(),
        );
    }
    true
}

/// Rows as a JSON array of objects keyed by column name (the shape `json_populate_recordset`
/// reads).
fn rows_json(names: &[&str], rows: &[Vec<SqlValue>]) -> String {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let object = names.iter().zip(row).map(|(name, value)| ((*name).to_owned(), sql_json(value)));
            serde_json::Value::Object(object.collect())
        })
        .collect();
    serde_json::Value::from(rows).to_string()
}

fn sql_json(value: &SqlValue) -> serde_json::Value {
    match value {
        SqlValue::Int(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
        SqlValue::Real(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
        SqlValue::Text(v) => v.clone().map_or(serde_json::Value::Null, serde_json::Value::from),
    }
}

/// Column patches of one kind as multi-row `UPDATE ... FROM (VALUES ...)` statements (both
/// backends name a `VALUES` list's columns `column1`, `column2`, ...).
async fn patch_rows(conn: &mut AnyConnection, patches: &[&Patch]) -> Result<(), StoreError> {
    let Some(first) = patches.first() else { return Ok(()) };
    let (sql_head, set, width) = match first {
        Patch::UserEnrolment { .. } => (
            "UPDATE user_enrolments SET ",
            "timestart = COALESCE(v.column2, user_enrolments.timestart), \
             timeend = COALESCE(v.column3, user_enrolments.timeend), \
             status = COALESCE(v.column4, user_enrolments.status), \
             modifierid = v.column5, timemodified = v.column6 \
             FROM (VALUES ",
            6,
        ),
        Patch::EnrolBooking { .. } => ("UPDATE enrol SET ", "customchar1 = v.column2 FROM (VALUES ", 2),
    };
    let table = match first {
        Patch::UserEnrolment { .. } => "user_enrolments",
        Patch::EnrolBooking { .. } => "enrol",
    };
    let backend = Backend::of(conn);
    for chunk in patches.chunks(UPSERT_ROWS_MAX) {
        let mut sql = format!("{sql_head}{set}");
        push_placeholders_for(&mut sql, backend, chunk.len(), width);
        sql.push_str(&format!(") AS v WHERE {table}.id = v.column1"));
        let mut query = sqlx::query::<Any>(&sql);
        for patch in chunk {
            query = match patch {
                Patch::UserEnrolment { id, timestart, timeend, status, modifierid, timemodified } => {
                    query.bind(*id).bind(*timestart).bind(*timeend).bind(*status).bind(*modifierid).bind(*timemodified)
                }
                Patch::EnrolBooking { id, customchar1 } => query.bind(*id).bind(customchar1.clone()),
            };
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

fn key_values(key: &RowKey) -> (&'static Table, Vec<SqlValue>) {
    match key {
        RowKey::Enrol(id) => (&ENROL, vec![int(*id)]),
        RowKey::UserEnrolment(id) => (&USER_ENROLMENTS, vec![int(*id)]),
        RowKey::Completion(u, c) => (&COURSE_COMPLETIONS, vec![int(*u), int(*c)]),
        RowKey::Recompletion(id) => (&RECOMPLETION_HISTORY, vec![int(*id)]),
        RowKey::CourseRecompletion(c) => (&COURSE_RECOMPLETION, vec![int(*c)]),
        RowKey::Config(name) => (&LEDGER_CONFIG, vec![text(name)]),
        RowKey::Criteria(c, k) => (&COURSE_COMPLETION_CRITERIA, vec![int(*c), int(*k)]),
    }
}

fn bind_value<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    value: &SqlValue,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    match value {
        SqlValue::Int(v) => query.bind(*v),
        SqlValue::Real(Some(v)) => query.bind(*v),
        SqlValue::Real(None) => query.bind(crate::store::NULL_DOUBLE),
        SqlValue::Text(v) => query.bind(v.clone()),
    }
}

async fn upsert_rows(conn: &mut AnyConnection, table: &Table, rows: &[Vec<SqlValue>]) -> Result<(), StoreError> {
    let backend = Backend::of(conn);
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let keys = names[..table.key_len].join(", ");
    let updates: Vec<String> = names[table.key_len..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
    for chunk in rows.chunks(UPSERT_ROWS_MAX) {
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "));
        push_placeholders_for(&mut sql, backend, chunk.len(), names.len());
        sql.push_str(&format!(" ON CONFLICT ({keys}) DO UPDATE SET {}", updates.join(", ")));
        let mut query = sqlx::query::<Any>(&sql);
        for value in chunk.iter().flatten() {
            query = bind_value(query, value);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn delete_rows(conn: &mut AnyConnection, table: &Table, keys: &[Vec<SqlValue>]) -> Result<(), StoreError> {
    let backend = Backend::of(conn);
    let key_names: Vec<&str> = table.columns[..table.key_len].iter().map(|(n, _)| *n).collect();
    for chunk in keys.chunks(UPSERT_ROWS_MAX) {
        let mut n = 0;
        let conditions: Vec<String> = chunk
            .iter()
            .map(|_| {
                let parts: Vec<String> = key_names
                    .iter()
                    .map(|k| {
                        n += 1;
                        match backend {
                            Backend::Postgres => format!("{k} = ${n}"),
                            Backend::Sqlite => format!("{k} = ?"),
                        }
                    })
                    .collect();
                format!("({})", parts.join(" AND "))
            })
            .collect();
        let sql = format!("DELETE FROM {} WHERE {}", table.name, conditions.join(" OR "));
        let mut query = sqlx::query::<Any>(&sql);
        for value in chunk.iter().flatten() {
            query = bind_value(query, value);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rows per plain INSERT of a rebuild: one prepared statement, reused for every full chunk.
pub const LOAD_ROWS_MAX: usize = 500;
/// Rows per page when verify reads a projection table back in key order.
pub const COMPARE_PAGE_ROWS: i64 = 10_000;

impl ProjectionState {
    /// One table's keys, in key order (the order `table_rows` and `compare_table` use).
    fn keys_of<'a>(&'a self, table: &Table) -> Box<dyn Iterator<Item = RowKey> + 'a> {
        match table.name {
            "enrol" => Box::new(self.enrol.keys().map(RowKey::Enrol)),
            "user_enrolments" => Box::new(self.user_enrolments.keys().map(RowKey::UserEnrolment)),
            "course_completions" => Box::new(self.course_completions.keys().map(|(u, c)| RowKey::Completion(*u, *c))),
            "recompletion_history" => Box::new(self.recompletion_history.keys().map(|k| RowKey::Recompletion(*k))),
            "course_recompletion" => Box::new(self.course_recompletion.keys().map(|k| RowKey::CourseRecompletion(*k))),
            "course_completion_criteria" => Box::new(self.criteria.keys().map(|(c, k)| RowKey::Criteria(*c, *k))),
            _ => Box::new(self.config.keys().map(|k| RowKey::Config(k.clone()))),
        }
    }

    /// One table's rows as SQL values, in key order, built one at a time.
    pub fn rows_of<'a>(&'a self, table: &Table) -> impl Iterator<Item = Vec<SqlValue>> + 'a {
        self.keys_of(table).filter_map(|key| self.row(&key).map(|(_, values)| values))
    }
}

/// Replaces the content of every projection table with `state` (rebuild), in the caller's
/// transaction. The secondary indexes are dropped and the tables emptied first, so plain
/// INSERTs (no conflict handling) load them, `LOAD_ROWS_MAX` rows per statement, built and
/// bound from the fold one chunk at a time; then the indexes are created again (a duplicate
/// booking ID fails there, and the whole rebuild with it).
pub async fn write_all(conn: &mut AnyConnection, state: &ProjectionState) -> Result<(), StoreError> {
    let backend = Backend::of(conn);
    let indexes = super::schema::secondary_indexes(backend);
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}")).execute(&mut *conn).await?;
    }
    for table in ALL {
        sqlx::query(&format!("DELETE FROM {}", table.name)).execute(&mut *conn).await?;
    }
    for table in ALL {
        if backend == Backend::Postgres {
            load_postgres(conn, table, state).await?;
            continue;
        }
        let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
        let head = format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "));
        let mut full_sql = head.clone();
        push_placeholders_for(&mut full_sql, backend, LOAD_ROWS_MAX, names.len());
        let mut rows = state.rows_of(table).peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<SqlValue>> = rows.by_ref().take(LOAD_ROWS_MAX).collect();
            let tail_sql;
            let sql = if chunk.len() == LOAD_ROWS_MAX {
                &full_sql
            } else {
                let mut sql = head.clone();
                push_placeholders_for(&mut sql, backend, chunk.len(), names.len());
                tail_sql = sql;
                &tail_sql
            };
            let mut query = sqlx::query::<Any>(sql);
            for value in chunk.iter().flatten() {
                query = bind_value(query, value);
            }
            query.execute(&mut *conn).await?;
        }
    }
    for (_, create) in &indexes {
        sqlx::query(create).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rows per statement of PostgreSQL's bulk load: one JSON array parameter each.
pub const PG_LOAD_ROWS_MAX: usize = 20_000;

/// PostgreSQL's bulk path through the `Any` driver (which cannot reach `COPY`): each chunk of
/// rows goes as one JSON text parameter that the server expands with `json_populate_recordset`
/// into the table's own row type, so neither side handles thousands of bound parameters.
async fn load_postgres(conn: &mut AnyConnection, table: &Table, state: &ProjectionState) -> Result<(), StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let sql = format!(
        "INSERT INTO {t} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{t}, $1::json)",
        t = table.name,
        cols = names.join(", ")
    );
    let mut rows = state.rows_of(table).peekable();
    while rows.peek().is_some() {
        let chunk: Vec<serde_json::Value> = rows
            .by_ref()
            .take(PG_LOAD_ROWS_MAX)
            .map(|row| {
                let object = names.iter().zip(row).map(|(name, value)| {
                    let json = match value {
                        SqlValue::Int(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
                        SqlValue::Real(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
                        SqlValue::Text(v) => v.map_or(serde_json::Value::Null, serde_json::Value::from),
                    };
                    ((*name).to_owned(), json)
                });
                serde_json::Value::Object(object.collect())
            })
            .collect();
        let payload = serde_json::Value::Array(chunk).to_string();
        sqlx::query::<Any>(&sql).bind(payload).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Compares one table with the rows `state` says it must hold, by merge-joining both in key
/// order: the table is read `COMPARE_PAGE_ROWS` at a time (keyset pages), so memory stays
/// bounded by a page whatever the table's size. Returns the problems, in key order.
pub async fn compare_table(
    conn: &mut AnyConnection,
    table: &Table,
    state: &ProjectionState,
) -> Result<Vec<String>, StoreError> {
    let backend = Backend::of(conn);
    let mut problems = Vec::new();
    let missing = |row: &[SqlValue], problems: &mut Vec<String>| {
        problems.push(format!("projection {}: row missing or different, the log says {row:?}", table.name));
    };
    let unjustified = |row: &[SqlValue], problems: &mut Vec<String>| {
        problems.push(format!("projection {}: row not justified by the log: {row:?}", table.name));
    };
    let mut expected = state.rows_of(table).peekable();
    let mut last_key: Option<Vec<SqlValue>> = None;
    loop {
        let page = read_page(conn, backend, table, last_key.as_deref()).await?;
        let Some(last) = page.last() else { break };
        last_key = Some(last[..table.key_len].to_vec());
        let page_len = page.len() as i64;
        for live in page {
            // Every expected row before this live one is missing from the table.
            while let Some(want) = expected.next_if(|want| key_cmp(table, want, &live).is_lt()) {
                missing(&want, &mut problems);
            }
            match expected.next_if(|want| key_cmp(table, want, &live).is_eq()) {
                Some(want) if want == live => {}
                Some(want) => {
                    missing(&want, &mut problems);
                    unjustified(&live, &mut problems);
                }
                None => unjustified(&live, &mut problems),
            }
        }
        if page_len < COMPARE_PAGE_ROWS {
            break;
        }
    }
    for want in expected {
        missing(&want, &mut problems);
    }
    Ok(problems)
}

/// Compares the key columns only, as both sides of `compare_table` are ordered.
fn key_cmp(table: &Table, a: &[SqlValue], b: &[SqlValue]) -> std::cmp::Ordering {
    key_order(&a[..table.key_len], &b[..table.key_len])
}

/// One keyset page of a table in key order, after `after` (its key columns) when given. Text
/// keys are ordered bytewise on both backends (`COLLATE "C"` on PostgreSQL; SQLite's default),
/// the order of Rust strings in the fold.
async fn read_page(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &Table,
    after: Option<&[SqlValue]>,
) -> Result<Vec<Vec<SqlValue>>, StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let keys: Vec<String> = table.columns[..table.key_len]
        .iter()
        .map(|(name, kind)| match (kind, backend) {
            (Kind::Text, Backend::Postgres) => format!("{name} COLLATE \"C\""),
            _ => (*name).to_owned(),
        })
        .collect();
    let mut sql = format!("SELECT {} FROM {}", names.join(", "), table.name);
    if after.is_some() {
        sql.push_str(&format!(" WHERE ({}) > ", keys.join(", ")));
        push_placeholders_for(&mut sql, backend, 1, table.key_len);
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {COMPARE_PAGE_ROWS}", keys.join(", ")));
    if backend == Backend::Sqlite {
        // One row per page, the page as JSON text, as `log::fetch_page` reads the log: sqlx's
        // per-row cost through the Any driver was most of the compare (1.2M rows: ~6 s). REAL
        // columns go as 17 significant digits of text (exact for a double; SQLite's JSON keeps
        // 15), NULL kept NULL.
        let cells: Vec<String> = table
            .columns
            .iter()
            .map(|(name, kind)| match kind {
                Kind::Real => format!("CASE WHEN {name} IS NULL THEN NULL ELSE printf('%!.17g', {name}) END"),
                _ => (*name).to_owned(),
            })
            .collect();
        sql = format!("SELECT json_group_array(json_array({})) FROM ({sql})", cells.join(", "));
    }
    let mut query = sqlx::query::<Any>(&sql);
    for value in after.into_iter().flatten() {
        query = bind_value(query, value);
    }
    if backend == Backend::Sqlite {
        let text: Option<String> = query.fetch_one(&mut *conn).await?.try_get(0)?;
        let mut page = json_page(table, text.as_deref().unwrap_or("[]"))?;
        // SQLite aggregates in the subquery's order; the merge-join depends on it, so check.
        if !page.is_sorted_by(|a, b| key_cmp(table, a, b).is_le()) {
            page.sort_by(|a, b| key_cmp(table, a, b));
        }
        return Ok(page);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(|row| read_row(row, table)).collect::<Result<Vec<_>, _>>()?)
}

/// A page read by `read_page` as JSON: an array of rows, each an array of the table's columns.
/// A cell whose JSON type does not fit its column (a value a hand edit left in a column of
/// another affinity) is kept as text, so it compares unequal with what the fold expects
/// instead of failing the whole verify.
fn json_page(table: &Table, text: &str) -> Result<Vec<Vec<SqlValue>>, StoreError> {
    use serde_json::Value;
    let rows: Vec<Vec<Value>> = serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let cell = |kind: Kind, value: Value| match (kind, value) {
        (Kind::Int, Value::Null) => SqlValue::Int(None),
        (Kind::Real, Value::Null) => SqlValue::Real(None),
        (Kind::Text, Value::Null) => SqlValue::Text(None),
        (Kind::Int, Value::Number(n)) if n.is_i64() => SqlValue::Int(n.as_i64()),
        (Kind::Real, Value::String(s)) if s.parse::<f64>().is_ok() => SqlValue::Real(s.parse().ok()),
        (_, Value::String(s)) => SqlValue::Text(Some(s)),
        (_, other) => SqlValue::Text(Some(other.to_string())),
    };
    rows.into_iter()
        .map(|row| {
            if row.len() != table.columns.len() {
                return Err(StoreError::Database(sqlx::Error::Protocol(format!(
                    "{}: a page row of {} cells for {} columns",
                    table.name,
                    row.len(),
                    table.columns.len()
                ))));
            }
            Ok(table.columns.iter().zip(row).map(|((_, kind), value)| cell(*kind, value)).collect())
        })
        .collect()
}

/// Reads every projection table back as SQL values, in key order, for comparison.
pub async fn read_all(conn: &mut AnyConnection) -> Result<TableRows, StoreError> {
    let mut out = TableRows::new();
    for table in ALL {
        let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
        let keys = names[..table.key_len].join(", ");
        let sql = format!("SELECT {} FROM {} ORDER BY {keys}", names.join(", "), table.name);
        let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
        let mut values = rows.iter().map(|row| read_row(row, table)).collect::<Result<Vec<_>, _>>()?;
        values.sort_by(|a, b| key_order(a, b));
        out.insert(table.name, values);
    }
    Ok(out)
}

fn read_row(row: &AnyRow, table: &Table) -> Result<Vec<SqlValue>, sqlx::Error> {
    table
        .columns
        .iter()
        .map(|(name, kind)| {
            Ok(match kind {
                Kind::Int => SqlValue::Int(row.try_get(*name)?),
                Kind::Real => SqlValue::Real(row.try_get(*name)?),
                Kind::Text => SqlValue::Text(row.try_get(*name)?),
            })
        })
        .collect()
}
