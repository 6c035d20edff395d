//! The audit pages (issue 11 item 6), for both roles: a booking's history
//! (`/bookings/{booking ID}`), a user's and a course's history (`/users/{id}/history`,
//! `/courses/{id}/history`), a course's enrolments as known at a time or log position and
//! active on a date (`/courses/{id}?as_of=TIME|POSITION&active_on=DATE`, WS-CONTRACT §6), the
//! integrity status (`/integrity`: last verification and its age, log length, head hash, last
//! signed checkpoint and its public key; a verify button), and an event's inclusion proof
//! (`/integrity/proof?position=P`, also as a file to give `enrol-ledger check-proof`).
//!
//! Reads only `app::history`, `app::asof`, `app::verification` and `proof::store`; every
//! value is escaped by maud; a bad parameter is a 400 page that says what is wrong, an unknown
//! booking, user, course or checkpoint a 404 page.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;
use sqlx::Row;

use super::auth::{CsrfForm, Role, SignedIn};
use super::layout::{csrf_field, page};
use super::WebError;
use crate::api::audit_integrity::{verify_now, VerificationRecord};
use crate::api::AppState;
use crate::app::asof::{self, KnownAt, Question, Scope};
use crate::app::history::{self, History, Subject};
use crate::app::verification;
use crate::proof::{check, store as proof_store};
use crate::store::log;

const BOTH: &[Role] = &[Role::Manager, Role::Auditor];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/audit", get(audit_start))
        .route("/audit/find", get(audit_find))
        .route("/bookings/{booking}", get(booking_page))
        .route("/users/{id}/history", get(user_page))
        .route("/courses/{id}/history", get(course_history_page))
        .route("/courses/{id}", get(course_as_of_page))
        .route("/integrity", get(integrity_page))
        .route("/integrity/verify", post(verify_action))
        .route("/integrity/proof", get(proof_page))
        .route("/integrity/proof.json", get(proof_file))
}

/// The audit start page: find a booking's, a user's or a course's history, a course as of a
/// time, the integrity status.
async fn audit_start(signed: SignedIn) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    Ok(page(
        "Audit",
        &signed,
        html! {
            p { "Who was enrolled when, who changed what, and whether the log is intact." }
            form method="get" action="/audit/find" {
                input type="hidden" name="kind" value="booking";
                p {
                    label for="booking" { "Booking ID" }
                    input type="text" id="booking" name="id" required;
                    button type="submit" { "Show its history" }
                }
            }
            form method="get" action="/audit/find" {
                input type="hidden" name="kind" value="user";
                p {
                    label for="user" { "User id" }
                    input type="text" id="user" name="id" inputmode="numeric" required;
                    button type="submit" { "Show the user's history" }
                }
            }
            form method="get" action="/audit/find" {
                input type="hidden" name="kind" value="course";
                p {
                    label for="course" { "Course id" }
                    input type="text" id="course" name="id" inputmode="numeric" required;
                    button type="submit" { "Show the course's enrolments" }
                }
            }
            p { a href="/integrity" { "Integrity: verification, log head, signed checkpoints" } }
            p { a href="/api/v1/docs" { "The audit API reference" } }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct FindForm {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub id: String,
}

async fn audit_find(signed: SignedIn, Query(form): Query<FindForm>) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    let id = form.id.trim();
    let target = match form.kind.as_str() {
        "booking" if !id.is_empty() => format!("/bookings/{}", urlencode(id)),
        "booking" => return Err(WebError::BadRequest("Give a booking ID.".into())),
        "user" => format!("/users/{}/history", positive_id(id, "user")?),
        "course" => format!("/courses/{}", positive_id(id, "course")?),
        other => return Err(WebError::BadRequest(format!("Unknown kind {other:?}: booking, user or course."))),
    };
    Ok(Redirect::to(&target).into_response())
}

fn store_error(error: impl std::fmt::Display) -> WebError {
    tracing::error!(%error, "audit page read failed");
    WebError::Unavailable("The ledger's database could not be read; try again in a moment.".into())
}

fn positive_id(text: &str, what: &str) -> Result<i64, WebError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| WebError::BadRequest(format!("The {what} id must be a positive whole number, not {text:?}.")))
}

/// The table of a history: one row per event, oldest first.
fn history_table(found: &History) -> Markup {
    html! {
        table class="history" {
            caption { (found.entries.len()) " event(s), oldest first" }
            thead {
                tr {
                    th scope="col" { "Position" }
                    th scope="col" { "Time (UTC)" }
                    th scope="col" { "Event" }
                    th scope="col" { "Actor" }
                    th scope="col" { "Reason" }
                    th scope="col" { "Changes (old → new)" }
                    th scope="col" { "Proof" }
                }
            }
            tbody {
                @for e in &found.entries {
                    tr {
                        th scope="row" { (e.position) }
                        td { time datetime=(e.recorded_at) { (e.recorded_at) } }
                        td {
                            (e.event_type)
                            br;
                            small { (e.stream) " v" (e.stream_version) }
                            @if let Some(booking) = &e.booking_id {
                                br;
                                small { "booking " a href={ "/bookings/" (urlencode(booking)) } { (booking) } }
                            }
                            @if let Some(undoes) = e.undoes {
                                br;
                                small { "undoes position " (undoes) }
                            }
                        }
                        td {
                            @match (&e.actor.username, e.actor.user_id) {
                                (Some(name), Some(id)) => { (name) " (user " a href={ "/users/" (id) "/history" } { (id) } ")" }
                                (None, Some(id)) => { "user " a href={ "/users/" (id) "/history" } { (id) } }
                                _ => { "command line / installer" }
                            }
                            @if let Some(token) = e.actor.token_id {
                                br;
                                small {
                                    "token " (token)
                                    @if let Some(service) = &e.actor.service { " (" (service) ")" }
                                }
                            }
                        }
                        td { (e.reason.as_deref().unwrap_or("—")) }
                        td {
                            @if e.changes.is_empty() { "—" }
                            ul class="changes" {
                                @for c in &e.changes {
                                    li {
                                        code { (c.field) } ": "
                                        @if c.personal { "(personal: the value stays in the registry)" }
                                        @else { (value_text(&c.old)) " → " (value_text(&c.new)) }
                                    }
                                }
                            }
                        }
                        td {
                            a href={ "/integrity/proof?position=" (e.position) } { "prove position " (e.position) }
                        }
                    }
                }
            }
        }
    }
}

fn value_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Percent-encodes a path segment (booking IDs are free text).
fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn history_page(
    state: &AppState,
    signed: &SignedIn,
    subject: Subject,
    title: String,
    intro: Markup,
) -> Result<Response, WebError> {
    let found = history::history(&state.ledger.db, subject).await.map_err(store_error)?;
    if found.entries.is_empty() {
        return Err(WebError::NotFound(format!("The ledger has no event about {}.", title.to_lowercase())));
    }
    Ok(page(
        &title,
        signed,
        html! {
            (intro)
            (history_table(&found))
        },
    ))
}

async fn booking_page(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(booking): Path<String>,
) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    if booking.trim().is_empty() || booking.len() > 255 {
        return Err(WebError::BadRequest("A booking ID has 1 to 255 characters.".into()));
    }
    let intro = html! {
        p { "Every event about SEMCO booking " code { (booking) } ", with who made it, why, and what changed." }
    };
    history_page(&state, &signed, Subject::Booking(booking.clone()), format!("Booking {booking}"), intro).await
}

async fn user_page(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    let id = positive_id(&id, "user")?;
    let intro = html! { p { "Every event about user " (id) ": registry changes, enrolments and completions." } };
    history_page(&state, &signed, Subject::User(id), format!("User {id}"), intro).await
}

async fn course_history_page(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    let id = positive_id(&id, "course")?;
    let intro = html! {
        p {
            "Every event about course " (id) ". "
            a href={ "/courses/" (id) } { "Its enrolments as of a time" } "."
        }
    };
    history_page(&state, &signed, Subject::Course(id), format!("Course {id}"), intro).await
}

#[derive(Debug, Default, Deserialize)]
pub struct AsOfForm {
    #[serde(default)]
    pub as_of: Option<String>,
    #[serde(default)]
    pub active_on: Option<String>,
}

/// `as_of`: empty (now), an RFC 3339 time, or a log position (a whole number).
pub fn parse_as_of(text: Option<&str>) -> Result<KnownAt, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(KnownAt::Now) };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map(KnownAt::Position)
            .map_err(|_| format!("as_of {text:?}: the position is too large."));
    }
    chrono::DateTime::parse_from_rfc3339(text).map(|t| KnownAt::Time(t.timestamp_micros())).map_err(|_| {
        format!("as_of {text:?} is neither a time (RFC 3339, e.g. 2026-03-01T00:00:00Z) nor a log position (a whole number).")
    })
}

/// `active_on`: empty (no filter), a date (its first second, UTC) or an RFC 3339 time.
pub fn parse_active_on(text: Option<&str>) -> Result<Option<i64>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp()));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.timestamp()))
        .map_err(|_| format!("active_on {text:?} is neither a date (2026-03-01) nor a time (RFC 3339)."))
}

async fn course_name(state: &AppState, id: i64) -> Result<Option<(String, String)>, WebError> {
    let row = sqlx::query("SELECT fullname, shortname FROM courses WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.ledger.db.pool)
        .await
        .map_err(store_error)?;
    row.map(|r| Ok((r.try_get("fullname").map_err(store_error)?, r.try_get("shortname").map_err(store_error)?)))
        .transpose()
}

async fn course_as_of_page(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
    Query(form): Query<AsOfForm>,
) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    let id = positive_id(&id, "course")?;
    let known = parse_as_of(form.as_of.as_deref()).map_err(WebError::BadRequest)?;
    let active_on = parse_active_on(form.active_on.as_deref()).map_err(WebError::BadRequest)?;
    let Some((fullname, shortname)) = course_name(&state, id).await? else {
        return Err(WebError::NotFound(format!("There is no course {id}.")));
    };
    let question = Question { known, active_on, scope: Scope::Course(id) };
    let answer = asof::as_of(&state.ledger.db, &question).await.map_err(store_error)?;
    let known_text = match known {
        KnownAt::Now => "now (the whole log)".to_owned(),
        KnownAt::Time(us) => format!("at {}", crate::app::audit::rfc3339(us)),
        KnownAt::Position(p) => format!("after log position {p}"),
    };
    let title = format!("Course {id} as of");
    Ok(page(
        &title,
        &signed,
        html! {
            h2 { "Course " (id) ": " (fullname) " " small { "(" (shortname) ")" } }
            p { a href={ "/courses/" (id) "/history" } { "The course's history" } }
            form method="get" action={ "/courses/" (id) } class="as-of" {
                p {
                    label for="as_of" { "As known at (time RFC 3339, or log position; empty: now)" }
                    input type="text" id="as_of" name="as_of" value=(form.as_of.as_deref().unwrap_or(""))
                        placeholder="2026-03-01T00:00:00Z or 120";
                }
                p {
                    label for="active_on" { "Enrolled and active on (date or time; empty: everyone known)" }
                    input type="text" id="active_on" name="active_on" value=(form.active_on.as_deref().unwrap_or(""))
                        placeholder="2026-03-01";
                }
                p { button type="submit" { "Show" } }
            }
            p {
                "As known " (known_text) " (log position " (answer.known_position) "); "
                @if active_on.is_some() {
                    "only the enrolments enrolled and active at " (answer.evaluated_at_rfc3339)
                    " by Moodle's rule."
                } @else {
                    "every enrolment known, each with whether it was active at " (answer.evaluated_at_rfc3339) "."
                }
            }
            table class="as-of" {
                caption { (answer.enrolments.len()) " user enrolment(s)" }
                thead {
                    tr {
                        th scope="col" { "Booking ID" }
                        th scope="col" { "User" }
                        th scope="col" { "Start" }
                        th scope="col" { "End" }
                        th scope="col" { "Suspended" }
                        th scope="col" { "User inactive" }
                        th scope="col" { "Active" }
                    }
                }
                tbody {
                    @for e in &answer.enrolments {
                        tr {
                            th scope="row" {
                                @if let Some(booking) = &e.semcobookingid {
                                    a href={ "/bookings/" (urlencode(booking)) } { (booking) }
                                } @else { "(manual enrolment " (e.enrolid) ")" }
                            }
                            td { a href={ "/users/" (e.userid) "/history" } { (e.userid) } }
                            td { (moodle_time(e.timestart)) }
                            td { (moodle_time(e.timeend)) }
                            td { (yes_no(e.suspended)) }
                            td { (yes_no(e.user_inactive)) }
                            td { (yes_no(e.active)) }
                        }
                    }
                }
            }
        },
    ))
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// A Moodle time (unix seconds; 0 = open).
fn moodle_time(seconds: i64) -> String {
    if seconds == 0 {
        return "open".into();
    }
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| seconds.to_string())
}

async fn integrity_page(State(state): State<AppState>, signed: SignedIn) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    let db = &state.ledger.db;
    let last = verification::last_verification(db).await.map_err(store_error)?.map(|o| VerificationRecord::of(&o));
    let mut conn = db.pool.acquire().await.map_err(store_error)?;
    let (head, head_hash) = log::head_on(&mut conn).await.map_err(store_error)?;
    let checkpoint = proof_store::latest(&mut conn).await.map_err(store_error)?;
    let checkpoints = proof_store::count(&mut conn).await.map_err(store_error)?;
    let public_key = match &checkpoint {
        Some(c) => proof_store::public_key(&mut conn, &c.key_id).await.map_err(store_error)?,
        None => None,
    };
    drop(conn);
    Ok(page(
        "Integrity",
        &signed,
        html! {
            section aria-labelledby="verification" {
                h2 id="verification" { "Last verification" }
                @match &last {
                    Some(v) => {
                        p class={ "status " @if v.ok { "ok" } @else { "error" } } {
                            strong { @if v.ok { "OK" } @else { "FAILED" } }
                            " — finished " time datetime=(v.finished_at) { (v.finished_at) }
                            " (" (age(v.age_seconds)) " ago) by " (v.source) ", "
                            (v.log_length) " events read, " (v.mismatches) " problem(s), " (v.duration_ms) " ms."
                        }
                    }
                    None => { p class="status warning" { "No verification has been recorded yet." } }
                }
                form method="post" action="/integrity/verify" {
                    (csrf_field(&signed))
                    button type="submit" { "Verify now" }
                }
                p { small { "Checks the hash chain, positions, stream versions, every event against its stream, every \
                    projection row against a fresh fold, and the log against every signed checkpoint. One run at a time." } }
            }
            section aria-labelledby="log" {
                h2 id="log" { "Log" }
                dl {
                    dt { "Length (head position)" } dd { (head) }
                    dt { "Head hash" } dd { code class="hash" { (head_hash) } }
                }
            }
            section aria-labelledby="checkpoint" {
                h2 id="checkpoint" { "Last signed checkpoint" }
                @match &checkpoint {
                    Some(c) => {
                        dl {
                            dt { "Position" } dd { (c.position) " (" (head - c.position) " event(s) since)" }
                            dt { "Signed" } dd { time datetime=(c.time) { (c.time) } }
                            dt { "Head hash" } dd { code class="hash" { (c.head_hash) } }
                            dt { "Merkle root" } dd { code class="hash" { (c.merkle_root) } }
                            dt { "Key id" } dd { code { (c.key_id) } }
                            dt { "Public key (Ed25519)" } dd {
                                @match &public_key {
                                    Some(k) => { code class="hash" id="public-key" { (k) } }
                                    None => { "not recorded (signed before migration 16)" }
                                }
                            }
                            dt { "Signature" } dd { code class="hash" { (c.signature) } }
                            dt { "Checkpoints stored" } dd { (checkpoints) }
                        }
                    }
                    None => { p class="status warning" { "No checkpoint has been signed yet." } }
                }
                p {
                    "Each checkpoint is also one JSON line of the server's checkpoint file, meant to be copied off this \
                     machine; its format, the signed message and how to check a proof without this program are in \
                     docs/AUDIT.md (\"Checkpoint and proof format\") and in the "
                    a href="/api/v1/docs#schema-Checkpoint" { "API reference (Checkpoint)" } ". "
                    "Compare the public key above once with the one the server prints "
                    "(" code { "enrol-ledger checkpoint --public-key" } ") and keep that copy elsewhere."
                }
            }
        },
    ))
}

fn age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[derive(Debug, Deserialize)]
pub struct NoFields {}

async fn verify_action(
    State(state): State<AppState>,
    signed: SignedIn,
    CsrfForm(_form): CsrfForm<NoFields>,
) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    match verify_now(&state, "web").await {
        Ok(_) => Ok(Redirect::to("/integrity").into_response()),
        Err(error) if error.status == axum::http::StatusCode::CONFLICT => Err(WebError::Unavailable(error.message)),
        Err(error) => Err(WebError::Unavailable(error.message)),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ProofForm {
    #[serde(default)]
    pub position: Option<String>,
}

async fn inclusion_of(state: &AppState, form: &ProofForm) -> Result<check::InclusionProof, WebError> {
    let text = form.position.as_deref().unwrap_or("").trim();
    let position =
        text.parse::<i64>().ok().filter(|p| *p > 0).ok_or_else(|| {
            WebError::BadRequest(format!("position must be a log position (1, 2, ...), not {text:?}."))
        })?;
    let mut conn = state.ledger.db.pool.acquire().await.map_err(store_error)?;
    let Some(checkpoint) = proof_store::latest(&mut conn).await.map_err(store_error)? else {
        return Err(WebError::NotFound("No checkpoint has been signed yet, so nothing can be proved.".into()));
    };
    if position > checkpoint.position {
        return Err(WebError::NotFound(format!(
            "Position {position} is after the last signed checkpoint (position {}): it can be proved once the next \
             checkpoint is signed.",
            checkpoint.position
        )));
    }
    check::prove_inclusion(&mut conn, position, &checkpoint).await.map_err(|e| match e {
        crate::proof::ProofError::Invalid(why) => WebError::BadRequest(why),
        other => store_error(other),
    })
}

async fn proof_page(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(form): Query<ProofForm>,
) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    let proof = inclusion_of(&state, &form).await?;
    let json = serde_json::to_string_pretty(&proof).map_err(store_error)?;
    Ok(page(
        "Inclusion proof",
        &signed,
        html! {
            h2 { "Inclusion proof of position " (proof.position) }
            p {
                "The event at position " (proof.position) " (" code class="hash" { (proof.event_hash) } ") is leaf "
                (proof.leaf_index) " of the " (proof.tree_size) "-event log signed " (proof.checkpoint.time)
                " by key " code { (proof.checkpoint.key_id) } "."
            }
            p {
                a href={ "/integrity/proof.json?position=" (proof.position) } download { "Download the proof (JSON)" }
                " and check it anywhere with "
                code { "enrol-ledger check-proof proof.json --public-key KEY" } " (the public key on the "
                a href="/integrity" { "integrity page" } ")."
            }
            pre { code { (json) } }
        },
    ))
}

async fn proof_file(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(form): Query<ProofForm>,
) -> Result<Response, WebError> {
    signed.require(BOTH)?;
    let proof = inclusion_of(&state, &form).await?;
    let json = serde_json::to_string_pretty(&proof).map_err(store_error)? + "\n";
    let disposition = format!("attachment; filename=\"proof-{}.json\"", proof.position);
    Ok(([(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_DISPOSITION, disposition)], json)
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_now_a_time_or_a_position_and_anything_else_is_refused() {
        assert_eq!(parse_as_of(None), Ok(KnownAt::Now));
        assert_eq!(parse_as_of(Some("  ")), Ok(KnownAt::Now));
        assert_eq!(parse_as_of(Some("120")), Ok(KnownAt::Position(120)));
        assert_eq!(parse_as_of(Some("2026-03-01T00:00:00Z")), Ok(KnownAt::Time(1_772_323_200_000_000)));
        assert!(parse_as_of(Some("yesterday")).unwrap_err().contains("neither a time"));
        assert!(parse_as_of(Some("-3")).is_err());
        assert!(parse_as_of(Some("99999999999999999999")).unwrap_err().contains("too large"));
    }

    #[test]
    fn active_on_is_a_date_from_its_first_second_or_a_time() {
        assert_eq!(parse_active_on(None), Ok(None));
        assert_eq!(parse_active_on(Some("2026-03-01")), Ok(Some(1_772_323_200)));
        assert_eq!(parse_active_on(Some("2026-03-01T12:00:00+01:00")), Ok(Some(1_772_362_800)));
        assert!(parse_active_on(Some("2026-02-30")).is_err());
        assert!(parse_active_on(Some("<script>")).unwrap_err().contains("neither a date"));
    }

    #[test]
    fn booking_ids_are_percent_encoded_in_links() {
        assert_eq!(urlencode("B-1/2 ?&<x>"), "B-1%2F2%20%3F%26%3Cx%3E");
        assert_eq!(urlencode("Ä"), "%C3%84");
    }
}
