//! The tokens page (`/tokens`, managers only): every web-service token with its service, user,
//! creation, last use, validity and IP list (never the token nor its hash); revoke one; create
//! one, shown once on the result page and never again (not in a log line either). The changes
//! go through `api::tokens` and the token outbox, so their events name the web account as
//! actor (`web:<id>:<name>`) and running servers refuse a revoked token from the next call on.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{CsrfForm, Role, SignedIn};
use super::layout::{self, csrf_field};
use super::WebError;
use crate::api::{services, tokens, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list_page))
        .route("/tokens/revoke", post(revoke))
        .route("/tokens/create", post(create))
}

/// A Unix time as the page shows it; 0 as `zero`.
fn time(t: i64, zero: &str) -> String {
    if t == 0 {
        return zero.to_owned();
    }
    chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// `valid until` of the create form: empty (no limit), or a date (valid to 23:59:59 UTC of that
/// day) that is not in the past. Pure.
pub fn parse_valid_until(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("Valid until {text:?}: give a date as yyyy-mm-dd, or leave it empty for no limit."))?;
    let end = day.and_hms_opt(23, 59, 59).map(|t| t.and_utc().timestamp()).unwrap_or(0);
    if end <= now {
        return Err(format!("Valid until {text} is in the past."));
    }
    Ok(end)
}

async fn usernames(state: &AppState, ids: &[i64]) -> Result<std::collections::HashMap<i64, String>, WebError> {
    let mut names = std::collections::HashMap::new();
    for id in ids {
        if names.contains_key(id) {
            continue;
        }
        let name: Option<String> = sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
            .bind(*id)
            .fetch_optional(&state.ledger.db.pool)
            .await?;
        names.insert(*id, name.unwrap_or_default());
    }
    Ok(names)
}

fn create_form(signed: &SignedIn) -> Markup {
    html! {
        h2 #create { "Create a token" }
        form.create-token method="post" action="/tokens/create" {
            (csrf_field(signed))
            p {
                label for="service" { "Service" }
                select #service name="service" required {
                    @for service in services::ALL {
                        option value=(service) { (service) }
                    }
                }
            }
            p {
                label for="valid_until" { "Valid until (optional; the token stops working after this day, UTC)" }
                input #valid_until type="date" name="valid_until";
            }
            p {
                label for="ip" { "IP restriction (optional; addresses and CIDR ranges, comma-separated)" }
                input #ip type="text" name="ip" placeholder="10.0.0.0/8, 192.0.2.7";
            }
            p { button type="submit" { "Create token" } }
        }
    }
}

async fn tokens_table(state: &AppState, signed: &SignedIn) -> Result<Markup, WebError> {
    let all = tokens::list(&state.ledger.db).await?;
    let ids: Vec<i64> = all.iter().map(|t| t.user_id).collect();
    let names = usernames(state, &ids).await?;
    Ok(html! {
        @if all.is_empty() {
            p { "There are no tokens." }
        } @else {
            table.tokens {
                caption { "Web-service tokens (" (all.len()) ")" }
                thead {
                    tr {
                        th scope="col" class="num" { "Id" }
                        th scope="col" { "Service" }
                        th scope="col" { "User" }
                        th scope="col" { "Created" }
                        th scope="col" { "Last used" }
                        th scope="col" { "Valid until" }
                        th scope="col" { "IP restriction" }
                        th scope="col" { span.visually-hidden { "Action" } }
                    }
                }
                tbody {
                    @for t in &all {
                        tr data-token=(t.id) {
                            th scope="row" class="num" { (t.id) }
                            td { (t.service) }
                            td { (names.get(&t.user_id).map(String::as_str).unwrap_or("")) " (id " (t.user_id) ")" }
                            td { (time(t.time_created, "-")) }
                            td { (time(t.last_access, "never")) }
                            td { (time(t.valid_until, "no limit")) }
                            td { @if t.ip_restriction.trim().is_empty() { "any address" } @else { (t.ip_restriction) } }
                            td {
                                form.revoke method="post" action="/tokens/revoke" {
                                    (csrf_field(signed))
                                    input type="hidden" name="id" value=(t.id);
                                    button.danger type="submit" id=(format!("revoke-{}", t.id))
                                        aria-label=(format!("Revoke token {} ({})", t.id, t.service)) { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

async fn render_list(state: &AppState, signed: &SignedIn, status: StatusCode, notice: Option<Markup>) -> Response {
    let table = match tokens_table(state, signed).await {
        Ok(table) => table,
        Err(error) => return error.into_response(),
    };
    let body = html! {
        @if let Some(notice) = notice { (notice) }
        p { "A revoked token is refused from its next call on. A new token is shown once, right after it is created." }
        (table)
        (create_form(signed))
    };
    layout::html_response(status, layout::page_markup("Tokens", signed, body))
}

async fn list_page(State(state): State<AppState>, signed: SignedIn) -> Result<Response, WebError> {
    signed.require(&[Role::Manager])?;
    Ok(render_list(&state, &signed, StatusCode::OK, None).await)
}

#[derive(Deserialize)]
pub struct RevokeForm {
    id: i64,
}

async fn revoke(
    State(state): State<AppState>,
    signed: SignedIn,
    CsrfForm(form): CsrfForm<RevokeForm>,
) -> Result<Response, WebError> {
    signed.require(&[Role::Manager])?;
    let revoked = tokens::revoke_as(&state.ledger.db, form.id, &signed.actor(), "tokens page: revoke").await?;
    let notice = if revoked {
        tracing::info!(account = %signed.account, token_id = form.id, "token revoked on the tokens page");
        html! { p.notice role="status" { "Token " (form.id) " was revoked; it is refused from its next call on." } }
    } else {
        html! { p.error role="alert" { "There is no token " (form.id) " (revoked already?)." } }
    };
    let status = if revoked { StatusCode::OK } else { StatusCode::NOT_FOUND };
    Ok(render_list(&state, &signed, status, Some(notice)).await)
}

#[derive(Deserialize)]
pub struct CreateForm {
    service: String,
    #[serde(default)]
    valid_until: String,
    #[serde(default)]
    ip: String,
}

/// The create form's validity (Unix time, 0 = none) and IP list, or why it is refused. Pure.
fn check_create(form: &CreateForm, now: i64) -> Result<(i64, String), String> {
    if !services::ALL.contains(&form.service.as_str()) {
        return Err(format!("Unknown service {:?}.", form.service));
    }
    let valid_until = parse_valid_until(&form.valid_until, now)?;
    let ip = form.ip.trim().to_owned();
    if !tokens::valid_ip_list(&ip) {
        return Err(format!("IP restriction {ip:?}: give IP addresses or CIDR ranges, comma-separated."));
    }
    Ok((valid_until, ip))
}

async fn create(
    State(state): State<AppState>,
    signed: SignedIn,
    CsrfForm(form): CsrfForm<CreateForm>,
) -> Result<Response, WebError> {
    signed.require(&[Role::Manager])?;
    let checked = check_create(&form, chrono::Utc::now().timestamp());
    let (valid_until, ip) = match checked {
        Ok(checked) => checked,
        Err(message) => {
            let notice = html! { p.error role="alert" { (message) } };
            return Ok(render_list(&state, &signed, StatusCode::BAD_REQUEST, Some(notice)).await);
        }
    };
    let user = services::service_user(&form.service);
    let actor = signed.actor();
    let token =
        tokens::create_as(&state.ledger.db, &form.service, user, valid_until, &ip, (&actor, "tokens page: create"))
            .await
            .map_err(|error| {
                tracing::warn!(%error, "token create on the tokens page failed");
                WebError::Unavailable("The token could not be stored. Try again in a moment.".into())
            })?;
    tracing::info!(account = %signed.account, service = %form.service, "token created on the tokens page");
    let body = html! {
        p.notice role="status" { "A token for service " strong { (form.service) } " (user " (user) ") was created." }
        p { "Copy it now: it is shown only this once and cannot be shown again." }
        p { code.secret #new-token { (token) } }
        p { "Valid until: " (time(valid_until, "no limit")) ". IP restriction: "
            @if ip.is_empty() { "any address" } @else { (ip) } "." }
        p { a href="/tokens" { "Back to the tokens" } }
    };
    Ok(layout::page("Token created", &signed, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_valid_until_when_parsed_then_a_future_day_ends_at_its_last_second() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-10T12:00:00Z").unwrap().timestamp();
        assert_eq!(parse_valid_until("", now), Ok(0));
        let end = chrono::DateTime::parse_from_rfc3339("2026-01-11T23:59:59Z").unwrap().timestamp();
        assert_eq!(parse_valid_until("2026-01-11", now), Ok(end));
        assert!(parse_valid_until("2026-01-10", now).is_ok(), "today is valid to its end");
        assert!(parse_valid_until("2026-01-09", now).unwrap_err().contains("in the past"));
        assert!(parse_valid_until("tomorrow", now).unwrap_err().contains("yyyy-mm-dd"));
    }
}
