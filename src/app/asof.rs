//! As-of on two time axes (issue 8 item 2): what the ledger knew at a moment (`known`: a time or
//! a log position) and who was enrolled and active on a date by Moodle's rule (`active_on`).
//!
//! The answer to "was this person enrolled and active on date T, as known at K?" is Moodle's
//! answer at T computed from the log as it stood at min(K, T) (T a whole second: every event
//! recorded before the next second counts): the user enrolment rows that
//! existed then (a later event cannot change what Moodle answered at T; an earlier K knows
//! less), each tested at T with MOODLE-REFERENCE §7.2: the user enrolment active (status 0),
//! the instance enabled, `timestart <= T`, `timeend = 0 or timeend > T`, the user neither
//! deleted nor suspended. Without `active_on` every enrolment record known at K is listed,
//! each with `active` evaluated at K.
//!
//! One course (`enrolment_course`, migration 5) or one user (`stream_subject`, migrations 10 and 12)
//! folds only that course's or user's enrolment streams, read by index; the users' status
//! changes come from their own streams (`users_inactive`).

use std::collections::BTreeSet;

use serde::Serialize;
use sqlx::AnyConnection;

use crate::app::audit::{self, rfc3339};
use crate::projection::ProjectionState;
use crate::store::log;
use crate::store::{Backend, Db, StoreError};

/// The knowledge axis: which prefix of the log the answer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum KnownAt {
    /// The whole log.
    Now,
    /// Every event recorded at or before this time (microseconds since the epoch).
    Time(i64),
    /// Every event up to this log position (0 = none).
    Position(i64),
}

/// Whose enrolments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Scope {
    All,
    Course(i64),
    User(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Question {
    pub known: KnownAt,
    /// Unix seconds (Moodle's time unit): only the enrolments active then.
    pub active_on: Option<i64>,
    pub scope: Scope,
}

/// One user enrolment as the answer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EnrolmentState {
    pub enrolid: i64,
    pub userid: i64,
    pub courseid: i64,
    pub semcobookingid: Option<String>,
    pub timestart: i64,
    pub timeend: i64,
    /// The user enrolment's status is 1 (suspended).
    pub suspended: bool,
    /// The enrolment instance's status is 0 (SEMCO instances always are).
    pub instance_enabled: bool,
    /// The user was deleted or suspended at `evaluated_at`.
    pub user_inactive: bool,
    /// Enrolled and active at `evaluated_at` by Moodle's rule.
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Answer {
    pub question: Question,
    /// The last log position the ledger knew (`known`).
    pub known_position: i64,
    /// The last log position folded: `known_position`, or fewer when `active_on` is earlier.
    pub folded_position: i64,
    /// The moment `active` is evaluated at (unix seconds): `active_on`, else the known moment.
    pub evaluated_at: i64,
    pub evaluated_at_rfc3339: String,
    /// With `active_on`: only the active enrolments; otherwise every one known.
    pub enrolments: Vec<EnrolmentState>,
}

impl Answer {
    /// One JSON line per enrolment (what `as-of --format text` prints).
    pub fn text(&self) -> String {
        self.enrolments.iter().filter_map(|e| serde_json::to_string(e).ok()).map(|line| line + "\n").collect()
    }
}

/// Moodle's "enrolled and active at `t`" for one user enrolment (MOODLE-REFERENCE §7.2).
/// `timestart <= t` as in the course-list helper (core's enrolled-join uses `<`; a start of
/// exactly `t` counts as begun here); `timeend` is exclusive; 0 means open on either side.
pub fn active_at(e: &EnrolmentState, t: i64) -> bool {
    !e.suspended && e.instance_enabled && !e.user_inactive && e.timestart <= t && (e.timeend == 0 || e.timeend > t)
}

/// Answers one question in one consistent snapshot of the log.
pub async fn as_of(db: &Db, question: &Question) -> Result<Answer, StoreError> {
    let mut tx = db.pool.begin().await?;
    if db.backend == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    let answer = as_of_on(&mut tx, question).await?;
    tx.commit().await?;
    Ok(answer)
}

/// `as_of` on a connection the caller holds (inside its transaction).
pub async fn as_of_on(conn: &mut AnyConnection, question: &Question) -> Result<Answer, StoreError> {
    let (head, _) = log::head_on(conn).await?;
    let (known_position, known_seconds) = match question.known {
        KnownAt::Now => (head, chrono::Utc::now().timestamp()),
        KnownAt::Time(micros) => (position_at(conn, micros).await?, micros.div_euclid(1_000_000)),
        KnownAt::Position(p) => {
            let p = p.clamp(0, head);
            (p, recorded_at(conn, p).await?.map_or(0, |micros| micros.div_euclid(1_000_000)))
        }
    };
    let (folded_position, evaluated_at) = match question.active_on {
        // Moodle's times are whole seconds: the log as it stood at the end of second `t`.
        Some(t) => {
            (known_position.min(position_at(conn, t.saturating_mul(1_000_000).saturating_add(999_999)).await?), t)
        }
        None => (known_position, known_seconds),
    };
    let state = fold_scope(conn, question.scope, folded_position).await?;
    let mut enrolments = states(&state, question.scope);
    let users: BTreeSet<i64> = enrolments.iter().map(|e| e.userid).collect();
    let inactive = users_inactive(conn, &users, folded_position).await?;
    for e in &mut enrolments {
        e.user_inactive = inactive.contains(&e.userid);
        e.active = active_at(e, evaluated_at);
    }
    if question.active_on.is_some() {
        enrolments.retain(|e| e.active);
    }
    Ok(Answer {
        question: *question,
        known_position,
        folded_position,
        evaluated_at,
        evaluated_at_rfc3339: rfc3339(evaluated_at.saturating_mul(1_000_000)),
        enrolments,
    })
}

/// The last position recorded at or before `micros` (0 when none was).
async fn position_at(conn: &mut AnyConnection, micros: i64) -> Result<i64, StoreError> {
    let last: Option<i64> = sqlx::query_scalar("SELECT MAX(position) FROM events WHERE recorded_at <= $1")
        .bind(micros)
        .fetch_one(conn)
        .await?;
    Ok(last.unwrap_or(0))
}

async fn recorded_at(conn: &mut AnyConnection, position: i64) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT recorded_at FROM events WHERE position = $1")
        .bind(position)
        .fetch_optional(conn)
        .await?)
}

async fn fold_scope(conn: &mut AnyConnection, scope: Scope, position: i64) -> Result<ProjectionState, StoreError> {
    let events = match scope {
        Scope::All => return Ok(audit::fold(conn, Some(position)).await?.0),
        Scope::Course(course) => log::read_course_until(conn, course, position).await?,
        Scope::User(user) => log::read_user_until(conn, user, position, true).await?,
    };
    let mut state = ProjectionState::default();
    for (stored, event) in log::decode_all(events).await {
        state.apply(&stored, &event?, &mut BTreeSet::new());
    }
    Ok(state)
}

fn states(state: &ProjectionState, scope: Scope) -> Vec<EnrolmentState> {
    let course = match scope {
        Scope::Course(course) => Some(course),
        _ => None,
    };
    audit::enrolments(state, course)
        .into_iter()
        .filter(|e| !matches!(scope, Scope::User(user) if user != e.userid))
        .map(|e| EnrolmentState {
            enrolid: e.enrolid,
            userid: e.userid,
            courseid: e.courseid,
            semcobookingid: e.semcobookingid,
            timestart: e.timestart,
            timeend: e.timeend,
            suspended: e.suspended,
            // The ledger's SEMCO instances are always enabled (`enrol.status = 0`).
            instance_enabled: true,
            user_inactive: false,
            active: false,
        })
        .collect()
}

/// The users among `users` that were deleted or suspended after the event at `position`: the
/// one place that knows a user's status history, from the user streams' `UserUpdated`
/// (`suspended` old → new) and `UserDeleted` events (docs/EVENTS.md), read through the partial
/// index `events_user_status` (migration 11). A user whose first recorded status change has
/// `old = true` was suspended before it (a user created before user events were recorded).
async fn users_inactive(
    conn: &mut AnyConnection,
    users: &BTreeSet<i64>,
    position: i64,
) -> Result<BTreeSet<i64>, StoreError> {
    #[derive(serde::Deserialize)]
    struct Status {
        #[serde(rename = "type")]
        kind: String,
        user_id: i64,
        #[serde(default)]
        suspended: Option<crate::domain::event::Change<bool>>,
    }
    if users.is_empty() {
        return Ok(BTreeSet::new());
    }
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, payload FROM events WHERE event_type IN ('UserUpdated', 'UserDeleted') ORDER BY position",
    )
    .fetch_all(conn)
    .await?;
    // user → (suspended, deleted) after `position`
    let mut status: std::collections::BTreeMap<i64, (Option<bool>, bool)> = Default::default();
    for (at, payload) in rows {
        let Ok(change) = serde_json::from_str::<Status>(&payload) else { continue };
        if !users.contains(&change.user_id) {
            continue;
        }
        let entry = status.entry(change.user_id).or_insert((None, false));
        if let Some(suspended) = change.suspended {
            // The first change also says what the status was before it.
            let now = entry.0.get_or_insert(suspended.old);
            if at <= position {
                *now = suspended.new;
            }
        }
        if change.kind == "UserDeleted" && at <= position {
            entry.1 = true;
        }
    }
    Ok(status
        .into_iter()
        .filter(|(_, (suspended, deleted))| *deleted || *suspended == Some(true))
        .map(|(u, _)| u)
        .collect())
}
