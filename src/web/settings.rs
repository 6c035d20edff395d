//! `/settings`: the ledger's settings (the plugin's settings page plus the report's display
//! settings). Managers change them: one form, all or nothing (`Request::SetSettings`), each
//! changed setting a `ConfigChanged` event naming the web account. Auditors see the same values
//! read-only (no form). `/settings/history` lists every change.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{CsrfForm, Role, SignedIn};
use super::health::{changed_by, history_table, submit};
use super::layout::{csrf_field, page};
use super::WebError;
use crate::api::services::ENROL_SEMCO;
use crate::api::AppState;
use crate::app::history::{self, Subject};
use crate::app::Request;
use crate::domain::config::{Settings, BASE_REPORT_COLUMNS, OPTIONAL_REPORT_COLUMNS};

pub fn routes() -> Router<AppState> {
    Router::new().route("/settings", get(show).post(save)).route("/settings/history", get(show_history))
}

/// A report column's header (MOODLE-REFERENCE §4.4 and the plugin's 2026 optional columns).
pub fn column_label(id: &str) -> &'static str {
    match id {
        "moodleuserid" => "Moodle User ID",
        "semcouserid" => "SEMCO User ID",
        "username" => "Moodle Username",
        "lastname" => "Last name",
        "firstname" => "First name",
        "email" => "Email address",
        "suspended" => "Moodle User status",
        "enrolid" => "Enrolment ID",
        "courseid" => "Course ID",
        "course" => "Course name",
        "semcobookingid" => "SEMCO booking ID",
        "enrolstart" => "Enrolment start",
        "enrolend" => "Enrolment end",
        "enrolstatus" => "Enrolment status",
        "fullname" => "Full name",
        "completionstatus" => "Course completion status",
        "timecompleted" => "Course completion date",
        "grade" => "Course grade",
        "semcousercompany" => "SEMCO User company",
        "semcouserbirthday" => "SEMCO User birthday",
        "semcouserplaceofbirth" => "SEMCO User place of birth",
        "semcobranchtoken" => "SEMCO Tenant shortname",
        _ => "Unknown column",
    }
}

/// The settings a form sets, as `(name, canonical value)`, only those that differ from
/// `current`. Pure. Form fields: `enabled`, `role`, `recompletion`, `overlap_rule`,
/// `allowaccountssameemail` (each its canonical text), `report_column` (repeated, one per shown
/// optional column), `report_sort_column`, `report_sort_direction` (`asc`/`desc`); `csrf` is
/// ignored. A missing flag or `report_column` means off / hidden (unchecked boxes are not sent).
pub fn changes_from_form(current: &Settings, form: &[(String, String)]) -> Vec<(String, String)> {
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim().to_owned());
    let mut wanted: Vec<(String, String)> = Vec::new();
    for name in ["enabled", "role", "recompletion", "overlap_rule", "allowaccountssameemail"] {
        if let Some(value) = field(name) {
            wanted.push((name.to_owned(), value));
        }
    }
    let shown: Vec<&str> = form.iter().filter(|(n, _)| n == "report_column").map(|(_, v)| v.as_str()).collect();
    // In display order, so the value is canonical; an unknown id is kept so the rule refuses it.
    let mut columns: Vec<&str> = OPTIONAL_REPORT_COLUMNS.iter().copied().filter(|c| shown.contains(c)).collect();
    columns.extend(shown.iter().copied().filter(|s| !OPTIONAL_REPORT_COLUMNS.contains(s)));
    wanted.push(("report_columns".to_owned(), columns.join(",")));
    if let (Some(column), Some(direction)) = (field("report_sort_column"), field("report_sort_direction")) {
        wanted.push(("report_sort".to_owned(), format!("{column} {direction}")));
    }
    wanted.into_iter().filter(|(name, value)| current.get(name).as_deref() != Some(value.as_str())).collect()
}

#[derive(Debug, Deserialize)]
struct Notice {
    #[serde(default)]
    saved: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(notice): Query<Notice>,
) -> Result<Response, WebError> {
    signed.require(&[Role::Manager, Role::Auditor])?;
    let db = &state.ledger.db;
    let settings = crate::app::health::current_settings(db).await?;
    let tokens: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM external_tokens WHERE service = $1")
        .bind(ENROL_SEMCO)
        .fetch_one(&db.pool)
        .await?;
    let roles: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, shortname FROM role WHERE id <> 9 ORDER BY id").fetch_all(&db.pool).await?;
    let body = body(&settings, &state.settings.base_url, tokens, &roles, &signed, notice.saved.as_deref());
    Ok(page("Settings", &signed, body))
}

fn yes_no(flag: bool) -> &'static str {
    if flag {
        "Yes"
    } else {
        "No"
    }
}

fn flag_select(name: &str, label: &str, value: bool) -> Markup {
    html! {
        p {
            label for=(name) { (label) }
            select id=(name) name=(name) {
                option value="1" selected[value] { "Yes" }
                option value="0" selected[!value] { "No" }
            }
        }
    }
}

fn body(
    settings: &Settings,
    base_url: &str,
    tokens: i64,
    roles: &[(i64, String)],
    signed: &SignedIn,
    saved: Option<&str>,
) -> Markup {
    let role_name = roles.iter().find(|(id, _)| *id == settings.role.0).map_or("unknown role", |(_, n)| n.as_str());
    let token_text = match tokens {
        0 => "No token exists for the SEMCO web service: create one (Tokens page or `enrol-ledger token rotate --service enrol_semco`).".to_owned(),
        1 => "A token exists for the SEMCO web service (it is shown only when it is created).".to_owned(),
        n => format!("{n} tokens exist for the SEMCO web service; SEMCO needs one."),
    };
    let sort_columns: Vec<&str> = BASE_REPORT_COLUMNS.iter().chain(OPTIONAL_REPORT_COLUMNS.iter()).copied().collect();
    html! {
        @if saved.is_some() { p.notice role="status" { "The settings are saved." } }
        h2 { "Connection" }
        table {
            caption { "What SEMCO needs to connect" }
            tbody {
                tr { th scope="row" { "Moodle base URL" } td { code { (base_url) } } }
                tr { th scope="row" { "SEMCO token" } td { (token_text) } }
            }
        }
        @if signed.role == Role::Manager {
            form method="post" action="/settings" {
                (csrf_field(signed))
                h2 { "Enrolment" }
                (flag_select("enabled", "SEMCO enrolment plugin enabled", settings.enabled))
                p {
                    label for="role" { "Role assigned to SEMCO enrolments" }
                    select id="role" name="role" {
                        @for (id, name) in roles {
                            option value=(id) selected[*id == settings.role.0] { (name) " (" (id) ")" }
                        }
                    }
                }
                (flag_select("recompletion", "Recompletion (course completion resets) available", settings.recompletion))
                p {
                    label for="overlap_rule" { "Overlap rule for a user's periods in a course" }
                    select id="overlap_rule" name="overlap_rule" {
                        option value="enrol_semco" selected[settings.overlap_rule.as_str() == "enrol_semco"] { "enrol_semco (the plugin's check)" }
                        option value="strict" selected[settings.overlap_rule.as_str() == "strict"] { "strict (half-open periods)" }
                    }
                }
                (flag_select("allowaccountssameemail", "Allow accounts with the same e-mail", settings.allow_accounts_same_email))
                h2 { "SEMCO enrolment report" }
                fieldset {
                    legend { "Optional columns shown" }
                    @for id in OPTIONAL_REPORT_COLUMNS {
                        p {
                            input type="checkbox" id=(format!("col-{id}")) name="report_column" value=(id)
                                checked[settings.report_columns.iter().any(|c| c == id)];
                            label for=(format!("col-{id}")) { (column_label(id)) }
                        }
                    }
                }
                p {
                    label for="report_sort_column" { "Initial sort column" }
                    select id="report_sort_column" name="report_sort_column" {
                        @for id in &sort_columns {
                            option value=(id) selected[settings.report_sort.column == *id] { (column_label(id)) }
                        }
                    }
                }
                p {
                    label for="report_sort_direction" { "Initial sort direction" }
                    select id="report_sort_direction" name="report_sort_direction" {
                        option value="asc" selected[!settings.report_sort.descending] { "Ascending" }
                        option value="desc" selected[settings.report_sort.descending] { "Descending" }
                    }
                }
                p { button type="submit" { "Save settings" } }
            }
        } @else {
            p { "You can read the settings; only a manager can change them." }
            table {
                caption { "Settings" }
                tbody {
                    tr { th scope="row" { "SEMCO enrolment plugin enabled" } td { (yes_no(settings.enabled)) } }
                    tr { th scope="row" { "Role assigned to SEMCO enrolments" } td { (role_name) " (" (settings.role.0) ")" } }
                    tr { th scope="row" { "Recompletion available" } td { (yes_no(settings.recompletion)) } }
                    tr { th scope="row" { "Overlap rule" } td { (settings.overlap_rule.as_str()) } }
                    tr { th scope="row" { "Allow accounts with the same e-mail" } td { (yes_no(settings.allow_accounts_same_email)) } }
                    tr {
                        th scope="row" { "Optional report columns shown" }
                        td {
                            @if settings.report_columns.is_empty() { "none" }
                            @else { (settings.report_columns.iter().map(|c| column_label(c)).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                    tr {
                        th scope="row" { "Initial report sort" }
                        td { (column_label(&settings.report_sort.column)) ", " (if settings.report_sort.descending { "descending" } else { "ascending" }) }
                    }
                }
            }
        }
        p { a href="/settings/history" { "History of the settings" } }
    }
}

async fn save(
    State(state): State<AppState>,
    signed: SignedIn,
    CsrfForm(form): CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    signed.require(&[Role::Manager])?;
    let current = crate::app::health::current_settings(&state.ledger.db).await?;
    let changes = changes_from_form(&current, &form);
    if !changes.is_empty() {
        submit(&state, &signed, Request::SetSettings { changes, by: changed_by(&signed) }).await?;
    }
    Ok(Redirect::to("/settings?saved=1").into_response())
}

async fn show_history(State(state): State<AppState>, signed: SignedIn) -> Result<Response, WebError> {
    signed.require(&[Role::Manager, Role::Auditor])?;
    let found = history::history(&state.ledger.db, Subject::Settings).await?;
    let body = html! {
        (history_table(&found, "Every settings change, oldest first"))
        p { a href="/settings" { "Back to the settings" } }
    };
    Ok(page("History of the settings", &signed, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    // given the defaults, when the form sends them back unchanged, then nothing changes.
    #[test]
    fn an_unchanged_form_changes_nothing() {
        let mut pairs = vec![
            ("csrf", "x"),
            ("enabled", "1"),
            ("role", "5"),
            ("recompletion", "1"),
            ("overlap_rule", "enrol_semco"),
            ("allowaccountssameemail", "0"),
            ("report_sort_column", "enrolid"),
            ("report_sort_direction", "asc"),
        ];
        pairs.extend(OPTIONAL_REPORT_COLUMNS.iter().map(|c| ("report_column", *c)));
        assert!(changes_from_form(&Settings::default(), &form(&pairs)).is_empty());
    }

    // given the defaults, when recompletion is off, two columns are ticked (out of order) and
    // the sort is lastname desc, then exactly those three settings change, columns canonical.
    #[test]
    fn a_form_gives_only_the_changed_settings() {
        let pairs = form(&[
            ("enabled", "1"),
            ("recompletion", "0"),
            ("report_column", "grade"),
            ("report_column", "fullname"),
            ("report_sort_column", "lastname"),
            ("report_sort_direction", "desc"),
        ]);
        assert_eq!(
            changes_from_form(&Settings::default(), &pairs),
            vec![
                ("recompletion".to_owned(), "0".to_owned()),
                ("report_columns".to_owned(), "fullname,grade".to_owned()),
                ("report_sort".to_owned(), "lastname desc".to_owned()),
            ]
        );
    }
}
