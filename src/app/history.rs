//! The history of a booking, a user or a course: every event about it in log order, with its
//! time, actor, reason and old → new values (issue 8 item 3).
//!
//! Indexed, never a walk of the log: a booking by `events.booking_id` and the streams that held
//! it (`log::read_booking`); a user or a course by `stream_subject` (migration 10: the streams
//! about them: enrolments, completions, the user's or course's own registry stream) and each
//! stream's events by the `(stream_id, stream_version)` key. The actors' usernames and token
//! services are looked up in the registry and token tables at read time (never stored in the
//! log): an erased user shows as `deleted-N`, a token that no longer exists without service.
//!
//! `history` is the stable entry point; `History` is what the CLI prints (`--format json`) and
//! what the audit API serves.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::audit::rfc3339;
use crate::store::log::{self, StoredEvent, SubjectColumn};
use crate::store::{Db, StoreError};

/// What a history is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Subject {
    Booking(String),
    User(i64),
    Course(i64),
    /// A web sign-in account (stream `account/{id}`: added, password changes, removed).
    Account(i64),
    /// The ledger's settings (stream `config/site`): every `ConfigChanged`.
    Settings,
    /// The muted health checks (stream `health/site`): every `CheckMuted` / `CheckUnmuted`.
    Health,
}

/// Who caused an event: the service user and the token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HistoryActor {
    pub user_id: Option<i64>,
    /// The user's username now (`deleted-N` once erased); `None` from the CLI or the installer.
    pub username: Option<String>,
    pub token_id: Option<i64>,
    /// The token's service, while the token exists.
    pub service: Option<String>,
}

/// One changed field of an event: its old and new value (`null` where there is none), or,
/// for a personal field, only its name (`personal`: the values stay in the registry).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub personal: bool,
}

/// One event of a history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub position: i64,
    pub recorded_at: String,
    pub stream: String,
    pub stream_version: i64,
    pub event_type: String,
    pub booking_id: Option<String>,
    /// Kept beside `actor` so that `history --booking` lines stay what they were.
    pub actor_user_id: Option<i64>,
    pub actor_token_id: Option<i64>,
    pub actor: HistoryActor,
    pub request_id: String,
    /// Who made a change from a page or the CLI (the payload's `by`: `via`, `account_id`,
    /// `account`), for settings and muted checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<Value>,
    pub reason: Option<String>,
    /// The event this one undoes (its position), for a compensating event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undoes: Option<i64>,
    pub changes: Vec<FieldChange>,
    pub payload: Value,
}

/// The history of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct History {
    pub subject: Subject,
    pub entries: Vec<HistoryEntry>,
}

/// Every event about `subject`, in log order, each with its actor, reason and changes.
pub async fn history(db: &Db, subject: Subject) -> Result<History, StoreError> {
    let events = match &subject {
        Subject::Booking(booking) => log::read_booking(db, booking).await?,
        Subject::User(id) => log::read_subject(db, SubjectColumn::User, *id).await?,
        Subject::Course(id) => log::read_subject(db, SubjectColumn::Course, *id).await?,
        Subject::Account(id) => {
            let stream = log::StreamRef::new(super::state::ACCOUNT_STREAM, id.to_string());
            log::read_stream(db, &stream.uuid().to_string()).await?
        }
        Subject::Settings => log::read_stream(db, &super::decide::config_stream().uuid().to_string()).await?,
        Subject::Health => log::read_stream(db, &super::decide::health_stream().uuid().to_string()).await?,
    };
    let actors = Actors::look_up(db, &events).await?;
    let entries = events.iter().map(|stored| entry(stored, &actors)).collect();
    Ok(History { subject, entries })
}

/// The usernames and token services of a history's actors (a handful of ids).
#[derive(Default)]
struct Actors {
    usernames: BTreeMap<i64, String>,
    services: BTreeMap<i64, String>,
}

impl Actors {
    async fn look_up(db: &Db, events: &[StoredEvent]) -> Result<Self, StoreError> {
        let users: BTreeSet<i64> = events.iter().filter_map(|e| e.actor_user_id).collect();
        let tokens: BTreeSet<i64> = events.iter().filter_map(|e| e.actor_token_id).collect();
        let mut actors = Self::default();
        for id in users {
            let row = sqlx::query("SELECT username FROM users WHERE id = $1").bind(id).fetch_optional(&db.pool).await?;
            if let Some(row) = row {
                actors.usernames.insert(id, row.try_get("username")?);
            }
        }
        for id in tokens {
            let sql = "SELECT service FROM external_tokens WHERE id = $1";
            if let Some(row) = sqlx::query(sql).bind(id).fetch_optional(&db.pool).await? {
                actors.services.insert(id, row.try_get("service")?);
            }
        }
        Ok(actors)
    }
}

fn entry(stored: &StoredEvent, actors: &Actors) -> HistoryEntry {
    let payload: Value = serde_json::from_str(&stored.payload).unwrap_or(Value::Null);
    let event = stored.event().ok();
    let reason = event.as_ref().and_then(|e| e.reason()).map(str::to_owned);
    HistoryEntry {
        position: stored.position,
        recorded_at: rfc3339(stored.recorded_at),
        stream: format!("{}/{}", stored.stream_type, stored.stream_key),
        stream_version: stored.stream_version,
        event_type: stored.event_type.clone(),
        booking_id: stored.booking_id.clone(),
        actor_user_id: stored.actor_user_id,
        actor_token_id: stored.actor_token_id,
        actor: HistoryActor {
            user_id: stored.actor_user_id,
            username: stored.actor_user_id.and_then(|id| actors.usernames.get(&id).cloned()),
            token_id: stored.actor_token_id,
            service: stored.actor_token_id.and_then(|id| actors.services.get(&id).cloned()),
        },
        request_id: stored.request_id.clone(),
        changed_by: payload.get("by").filter(|b| b.is_object()).cloned(),
        reason: reason.or_else(|| payload.get("reason").and_then(Value::as_str).map(str::to_owned)),
        undoes: payload.get("undoes").and_then(Value::as_i64),
        changes: changes(&stored.event_type, &payload),
        payload,
    }
}

/// The old → new values an event's payload carries, read from its shape: each `{old, new}`
/// field; the top-level `old`/`new` of `BookingIdChanged`, `RecompletionTypeSet` and
/// `ConfigChanged`; a reset's archived completion; the personal fields a user event names.
pub fn changes(event_type: &str, payload: &Value) -> Vec<FieldChange> {
    let change = |field: &str, old: &Value, new: &Value| FieldChange {
        field: field.to_owned(),
        old: old.clone(),
        new: new.clone(),
        personal: false,
    };
    let Some(object) = payload.as_object() else { return Vec::new() };
    let mut out = Vec::new();
    match event_type {
        "BookingIdChanged" => out.push(change("booking_id", &payload["old"], &payload["new"])),
        "RecompletionTypeSet" => out.push(change("recompletiontype", &payload["old"], &payload["new"])),
        "ConfigChanged" => {
            let name = payload["name"].as_str().unwrap_or("config");
            out.push(change(name, &payload["old"], &payload["new"]));
        }
        "CompletionReset" => out.push(change("completion", &payload["archived"], &Value::Null)),
        "CheckMuted" => {
            let check = payload["check"].as_str().unwrap_or("check");
            out.push(change(check, &Value::from("unmuted"), &Value::from("muted")));
        }
        "CheckUnmuted" => {
            let check = payload["check"].as_str().unwrap_or("check");
            out.push(change(check, &Value::from("muted"), &Value::from("unmuted")));
        }
        "CompletionRestored" => out.push(change("completion", &Value::Null, &payload["restored"])),
        "Unenrolled" => out.push(change("user_enrolment", &Value::from("active"), &Value::Null)),
        "UserDeleted" => out.push(change("deleted", &Value::from(false), &Value::from(true))),
        _ => {}
    }
    for (field, value) in object {
        if let Some(pair) = value.as_object().filter(|o| o.len() == 2 && o.contains_key("old") && o.contains_key("new"))
        {
            out.push(change(field, &pair["old"], &pair["new"]));
        }
    }
    if let Some(fields) = payload.get("fields").and_then(Value::as_array) {
        out.extend(fields.iter().filter_map(Value::as_str).map(|field| FieldChange {
            field: field.to_owned(),
            old: Value::Null,
            new: Value::Null,
            personal: true,
        }));
    }
    out
}

/// One history as text, a line per event:
/// `#POSITION TIME EVENT STREAM by USER (id N, token T SERVICE) reason R: field old → new, ...`.
pub fn to_text(history: &History) -> String {
    let mut out = String::new();
    for entry in &history.entries {
        let actor = &entry.actor;
        let via = entry.changed_by.as_ref().map(|by| {
            let account = by["account"].as_str().unwrap_or("?");
            match by["account_id"].as_i64() {
                Some(id) => format!("{} account {account} (id {id})", by["via"].as_str().unwrap_or("web")),
                None => format!("{} {account}", by["via"].as_str().unwrap_or("cli")),
            }
        });
        let who = match (actor.user_id, &actor.username) {
            _ if via.is_some() => via.clone().unwrap_or_default(),
            (None, _) => format!("the CLI ({})", entry.request_id),
            (Some(id), Some(name)) => format!("{name} (user {id}"),
            (Some(id), None) => format!("user {id} ("),
        };
        let token = match (actor.token_id, &actor.service) {
            _ if via.is_some() => String::new(),
            (Some(token), Some(service)) => format!(", token {token} of {service})"),
            (Some(token), None) => format!(", token {token})"),
            (None, _) if actor.user_id.is_some() => ")".to_owned(),
            (None, _) => String::new(),
        };
        out.push_str(&format!(
            "#{} {} {} {}{} by {who}{token}",
            entry.position,
            entry.recorded_at,
            entry.event_type,
            entry.stream,
            entry.booking_id.as_deref().map(|b| format!(" [{b}]")).unwrap_or_default(),
        ));
        if let Some(reason) = &entry.reason {
            out.push_str(&format!(" reason {reason}"));
        }
        if let Some(undoes) = entry.undoes {
            out.push_str(&format!(" undoes #{undoes}"));
        }
        if !entry.changes.is_empty() {
            let changes: Vec<String> = entry
                .changes
                .iter()
                .map(|c| {
                    if c.personal {
                        format!("{} (personal)", c.field)
                    } else {
                        format!("{} {} → {}", c.field, c.old, c.new)
                    }
                })
                .collect();
            out.push_str(&format!(": {}", changes.join(", ")));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // given a UserUpdated payload, when its changes are read, then auth and suspended come with
    // their old and new values and the personal fields by name only.
    #[test]
    fn changes_of_a_user_update_name_personal_fields_without_values() {
        let payload = json!({"type": "UserUpdated", "user_id": 4, "fields": ["lastname"],
            "suspended": {"old": false, "new": true}});
        let changes = changes("UserUpdated", &payload);
        assert_eq!(changes.len(), 2);
        assert_eq!(
            (changes[0].field.as_str(), &changes[0].old, &changes[0].new),
            ("suspended", &json!(false), &json!(true))
        );
        assert!(changes[1].personal && changes[1].field == "lastname" && changes[1].new.is_null());
    }

    // given a booking ID change and an edit, when their changes are read, then each shows old → new.
    #[test]
    fn changes_of_enrolment_events_show_old_and_new() {
        let moved = changes("BookingIdChanged", &json!({"instance_id": 1, "old": "B-1", "new": "B-2"}));
        assert_eq!(
            (moved[0].field.as_str(), &moved[0].old, &moved[0].new),
            ("booking_id", &json!("B-1"), &json!("B-2"))
        );
        let edited = changes("EnrolmentEdited", &json!({"user_enrolment_id": 1, "timeend": {"old": 0, "new": 9}}));
        assert_eq!((edited[0].field.as_str(), &edited[0].new), ("timeend", &json!(9)));
    }
}
