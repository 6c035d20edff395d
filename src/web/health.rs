//! `/health`: the health check (`app::health`) for managers and auditors. Managers mute and
//! unmute single checks (POST with the session's CSRF token, each an event naming the web
//! account); auditors read only. `/health/history` lists the mutes and unmutes.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{CsrfForm, Role, SignedIn};
use super::layout::{csrf_field, page};
use super::WebError;
use crate::api::AppState;
use crate::app::health::{self, HealthReport, Status};
use crate::app::history::{self, History, Subject};
use crate::app::Request;
use crate::domain::event::ChangedBy;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(show))
        .route("/health/mute", post(mute))
        .route("/health/unmute", post(unmute))
        .route("/health/history", get(show_history))
}

/// Who makes a change from a page: the web account, as the event's `by` and the log's actor.
pub fn changed_by(signed: &SignedIn) -> ChangedBy {
    ChangedBy { via: "web".into(), account_id: Some(signed.account_id), account: signed.account.clone() }
}

/// The log's actor of a page's change: no Moodle user or token; the request id names the account.
pub fn actor(signed: &SignedIn) -> crate::store::log::Actor {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    crate::store::log::Actor { user_id: None, token_id: None, request_id: format!("{}:{nanos}", signed.actor()) }
}

fn status_cell(status: Status) -> Markup {
    let (class, text) = match status {
        Status::Ok => ("status-ok", "OK"),
        Status::Warning => ("status-warning", "Warning"),
        Status::Error => ("status-error", "Error"),
    };
    html! { span class=(class) { (text) } }
}

#[derive(Debug, Deserialize)]
struct Notice {
    #[serde(default)]
    done: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(notice): Query<Notice>,
) -> Result<Response, WebError> {
    signed.require(&[Role::Manager, Role::Auditor])?;
    let report = health::report(&state.ledger.db, Some(state.ledger.health())).await?;
    Ok(page("Health check", &signed, body(&report, &signed, notice.done.as_deref())))
}

fn body(report: &HealthReport, signed: &SignedIn, done: Option<&str>) -> Markup {
    let manager = signed.role == Role::Manager;
    let muted_count = report.checks.iter().filter(|c| c.muted.is_some()).count();
    html! {
        @if let Some(done) = done {
            p.notice role="status" { (match done { "muted" => "The check is muted.", "unmuted" => "The check counts again.", _ => "Done." }) }
        }
        p {
            "Overall: " (status_cell(report.status))
            " — checked at " (report.checked_at)
            @if muted_count > 0 { " (" (muted_count) " muted check(s) do not count)" }
        }
        @if !manager {
            p { "You can read the checks; only a manager can mute them." }
        }
        table {
            caption { "Every check, OK / warning / error, with its fix" }
            thead {
                tr {
                    th scope="col" { "Status" }
                    th scope="col" { "Check" }
                    th scope="col" { "What was found" }
                    th scope="col" { "Fix" }
                    th scope="col" { "Muted" }
                    @if manager { th scope="col" { "Action" } }
                }
            }
            tbody {
                @for check in &report.checks {
                    tr id=(format!("check-{}", check.id)) class=[check.muted.as_ref().map(|_| "muted")] {
                        td { (status_cell(check.status)) }
                        th scope="row" { (check.title) br; code { (check.id) } }
                        td { (check.explanation) }
                        td { (check.fix) }
                        td {
                            @if let Some(reason) = &check.muted { "Muted: " (reason) } @else { "No" }
                        }
                        @if manager {
                            td {
                                @if check.muted.is_some() {
                                    form method="post" action="/health/unmute" {
                                        (csrf_field(signed))
                                        input type="hidden" name="check" value=(check.id);
                                        button.secondary type="submit" { "Unmute " span.visually-hidden { (check.title) } }
                                    }
                                } @else {
                                    form method="post" action="/health/mute" {
                                        (csrf_field(signed))
                                        input type="hidden" name="check" value=(check.id);
                                        label for=(format!("reason-{}", check.id)) { "Reason to mute " span.visually-hidden { (check.title) } }
                                        input type="text" id=(format!("reason-{}", check.id)) name="reason" required maxlength="500";
                                        button type="submit" { "Mute " span.visually-hidden { (check.title) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p { a href="/health/history" { "History of muted checks" } }
    }
}

#[derive(Debug, Deserialize)]
struct MuteForm {
    check: String,
    #[serde(default)]
    reason: String,
}

async fn mute(
    State(state): State<AppState>,
    signed: SignedIn,
    CsrfForm(form): CsrfForm<MuteForm>,
) -> Result<Response, WebError> {
    signed.require(&[Role::Manager])?;
    let request = Request::MuteCheck { check: form.check, reason: form.reason, by: changed_by(&signed) };
    submit(&state, &signed, request).await?;
    Ok(Redirect::to("/health?done=muted").into_response())
}

async fn unmute(
    State(state): State<AppState>,
    signed: SignedIn,
    CsrfForm(form): CsrfForm<MuteForm>,
) -> Result<Response, WebError> {
    signed.require(&[Role::Manager])?;
    submit(&state, &signed, Request::UnmuteCheck { check: form.check, by: changed_by(&signed) }).await?;
    Ok(Redirect::to("/health?done=unmuted").into_response())
}

/// Submits a page's change through the writer: a refused one is a 400 page saying why.
pub async fn submit(state: &AppState, signed: &SignedIn, request: Request) -> Result<(), WebError> {
    use crate::app::LedgerError;
    match state.ledger.submit(request, actor(signed)).await {
        Ok(_) => Ok(()),
        Err(LedgerError::Domain(rule)) => Err(WebError::BadRequest(format!("Not changed: {rule}."))),
        Err(error) => {
            tracing::warn!(%error, "page: change not recorded");
            Err(WebError::Unavailable("The change could not be recorded. Try again in a moment.".into()))
        }
    }
}

async fn show_history(State(state): State<AppState>, signed: SignedIn) -> Result<Response, WebError> {
    signed.require(&[Role::Manager, Role::Auditor])?;
    let found = history::history(&state.ledger.db, Subject::Health).await?;
    let body = html! {
        (history_table(&found, "Every mute and unmute, oldest first"))
        p { a href="/health" { "Back to the health check" } }
    };
    Ok(page("History of muted checks", &signed, body))
}

/// A history (settings, muted checks) as a table: position, time, event, change, who, reason.
pub fn history_table(found: &History, caption: &str) -> Markup {
    html! {
        @if found.entries.is_empty() {
            p { "Nothing has been changed yet." }
        } @else {
            table {
                caption { (caption) }
                thead {
                    tr {
                        th scope="col" class="num" { "Position" }
                        th scope="col" { "Time" }
                        th scope="col" { "Event" }
                        th scope="col" { "Change" }
                        th scope="col" { "By" }
                        th scope="col" { "Reason" }
                    }
                }
                tbody {
                    @for entry in &found.entries {
                        tr {
                            td class="num" { (entry.position) }
                            td { (entry.recorded_at) }
                            td { (entry.event_type) }
                            td {
                                @for change in &entry.changes {
                                    (change.field) ": " (plain(&change.old)) " → " (plain(&change.new)) br;
                                }
                            }
                            td { (who(entry)) }
                            td { (entry.reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

fn plain(value: &serde_json::Value) -> String {
    match value {
        // Comma lists (report_columns) wrap in the table cell.
        serde_json::Value::String(s) => s.replace(',', ", "),
        serde_json::Value::Null => "—".into(),
        other => other.to_string(),
    }
}

fn who(entry: &history::HistoryEntry) -> String {
    if let Some(by) = &entry.changed_by {
        let account = by["account"].as_str().unwrap_or("?");
        return match by["account_id"].as_i64() {
            Some(id) => format!("{} account {account} (id {id})", by["via"].as_str().unwrap_or("web")),
            None => format!("{} {account}", by["via"].as_str().unwrap_or("cli")),
        };
    }
    match (&entry.actor.username, entry.actor.user_id, &entry.actor.service) {
        (Some(name), _, Some(service)) => format!("{name} (token of {service})"),
        (Some(name), _, None) => name.clone(),
        (None, Some(id), _) => format!("user {id}"),
        (None, None, _) => format!("the CLI ({})", entry.request_id),
    }
}
