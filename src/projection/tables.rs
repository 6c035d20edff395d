//! The projection tables as SQL: which columns each has, how a folded row becomes SQL values,
//! and the generic upsert/delete/read that the writer, rebuild and verify share.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row};

use super::state::{CompletionRow, EnrolRow, ProjectionState, RecompletionRow, RowKey, UserEnrolmentRow};
use super::writes::{self, Patch, Pending, PendingWrites};
use crate::domain::event::{CourseCompletion, Grade};
use crate::domain::recompletion::RecompletionType;
use crate::store::log::push_placeholders;
use crate::store::StoreError;

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

pub const ALL: [&Table; 6] =
    [&ENROL, &USER_ENROLMENTS, &COURSE_COMPLETIONS, &RECOMPLETION_HISTORY, &COURSE_RECOMPLETION, &LEDGER_CONFIG];

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
                text("semco"),
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
        }))
    }

    fn all_keys(&self) -> impl Iterator<Item = RowKey> + '_ {
        self.enrol
            .keys()
            .map(|k| RowKey::Enrol(*k))
            .chain(self.user_enrolments.keys().map(|k| RowKey::UserEnrolment(*k)))
            .chain(self.course_completions.keys().map(|(u, c)| RowKey::Completion(*u, *c)))
            .chain(self.recompletion_history.keys().map(|k| RowKey::Recompletion(*k)))
            .chain(self.course_recompletion.keys().map(|k| RowKey::CourseRecompletion(*k)))
            .chain(self.config.keys().map(|k| RowKey::Config(k.clone())))
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
    if !booking_moved.is_empty() {
        let mut sql = "UPDATE enrol SET customchar1 = NULL WHERE id IN ".to_owned();
        push_placeholders(&mut sql, 1, booking_moved.len());
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
    for chunk in patches.chunks(UPSERT_ROWS_MAX) {
        let mut sql = format!("{sql_head}{set}");
        push_placeholders(&mut sql, chunk.len(), width);
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
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let keys = names[..table.key_len].join(", ");
    let updates: Vec<String> = names[table.key_len..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
    for chunk in rows.chunks(UPSERT_ROWS_MAX) {
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", table.name, names.join(", "));
        push_placeholders(&mut sql, chunk.len(), names.len());
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
                        format!("{k} = ${n}")
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

/// Replaces the content of every projection table with `state` (rebuild).
pub async fn write_all(conn: &mut AnyConnection, state: &ProjectionState) -> Result<(), StoreError> {
    for table in ALL {
        sqlx::query(&format!("DELETE FROM {}", table.name)).execute(&mut *conn).await?;
    }
    for (name, rows) in state.table_rows() {
        let table = ALL.iter().find(|t| t.name == name).expect("table_rows names only known tables");
        upsert_rows(conn, table, &rows).await?;
    }
    Ok(())
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
