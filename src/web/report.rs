//! `/report`: the SEMCO enrolment report page (docs/AUDIT.md, "The SEMCO enrolment report")
//! and its downloads `/report.csv`, `/report.json`, `/report.xlsx`. Both web roles may read
//! it. Everything is a GET with the filters in the query string, so a URL is shareable and the
//! page works without JavaScript.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};

use crate::api::report_api::{self, Format};
use crate::api::AppState;
use crate::app::report::{self, Column, Direction, DisplaySettings, Page, ReportParams, ReportQuery};
use crate::web::auth::{Role, SignedIn};
use crate::web::layout;

/// The routes, merged by `crate::web::routes()`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/report", get(report_page))
        .route("/report.csv", get(|s, q, p| download(s, q, p, Format::Csv)))
        .route("/report.json", get(|s, q, p| download(s, q, p, Format::Json)))
        .route("/report.xlsx", get(|s, q, p| download(s, q, p, Format::Xlsx)))
}

const ROLES: &[Role] = &[Role::Manager, Role::Auditor];
const TITLE: &str = "SEMCO enrolments";

/// A failure the page explains in its own words (the database, not the caller).
fn unavailable(signed: &SignedIn, what: impl std::fmt::Display) -> Response {
    tracing::error!(error = %what, "report read failed");
    let body = html! {
        p role="alert" { "The report cannot be read from the database right now. Try again in a moment." }
    };
    let mut response = layout::page(TITLE, signed, body);
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

async fn report_page(State(state): State<AppState>, signed: SignedIn, Query(params): Query<ReportParams>) -> Response {
    if let Err(refused) = signed.require(ROLES) {
        return refused.into_response();
    }
    let db = &state.ledger.db;
    let settings = match report::display_settings_of(db).await {
        Ok(settings) => settings,
        Err(e) => return unavailable(&signed, e),
    };
    let query = match params.parse(settings.sort) {
        Ok(query) => query,
        Err(error) => {
            let body = html! {
                        p.error role="alert" { "The report cannot use these parameters: " (error.0) }
                (filter_form(&ReportParams::default(), &settings))
            };
            let mut response = layout::page(TITLE, &signed, body);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let page = match report::page(db, &query).await {
        Ok(page) => page,
        Err(e) => return unavailable(&signed, e),
    };
    layout::page(TITLE, &signed, body(&params, &query, &settings, &page))
}

async fn download(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(params): Query<ReportParams>,
    format: Format,
) -> Response {
    if let Err(refused) = signed.require(ROLES) {
        return refused.into_response();
    }
    let db = &state.ledger.db;
    let settings = match report::display_settings_of(db).await {
        Ok(settings) => settings,
        Err(e) => return unavailable(&signed, e),
    };
    let query = match params.parse(settings.sort) {
        Ok(query) => query,
        Err(error) => return (StatusCode::BAD_REQUEST, error.0).into_response(),
    };
    match report_api::download(db, query.filters, &settings, query.sort, format).await {
        Ok(response) => response,
        Err(e) => unavailable(&signed, e),
    }
}

/// `params` with some fields replaced, as a `/report...` link.
fn link(base: &str, params: &ReportParams, change: impl FnOnce(&mut ReportParams)) -> String {
    let mut params = params.clone();
    change(&mut params);
    let query = params.query_string();
    if query.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{query}")
    }
}

fn body(params: &ReportParams, query: &ReportQuery, settings: &DisplaySettings, page: &Page) -> Markup {
    let (sort_column, sort_direction) = query.sort;
    // Links keep the filters and the sort; a new filter, sort or initial starts at page one.
    let mut kept = params.clone();
    kept.sort = Some(sort_column.as_str().to_owned());
    kept.dir = Some(sort_direction.as_str().to_owned());
    let first_page = |p: &mut ReportParams| p.cursor = None;
    html! {
        @if let Some(position) = page.known_position {
            p.note { "As the ledger knew it at log position " (position) ". Names, e-mail addresses and profile fields are today's." }
        }
        (filter_form(&kept, settings))
        (initials_bar(&kept, "First name", "tifirst", query.filters.firstinitial))
        (initials_bar(&kept, "Last name", "tilast", query.filters.lastinitial))
        @if page.rows.is_empty() {
            p #report-empty { (if query.filters.any() { report::NO_MATCH } else { report::EMPTY_STATE }) }
        } @else {
            div.table-scroll {
                table #report {
                    caption { (TITLE) ", sorted by " (sort_column.header()) " " (if sort_direction == Direction::Asc { "ascending" } else { "descending" }) }
                    thead {
                        tr {
                            @for &column in &settings.columns {
                                @let current = column == sort_column;
                                @let next_dir = if current && sort_direction == Direction::Asc { Direction::Desc } else { Direction::Asc };
                                @let href = link("/report", &kept, |p| {
                                    first_page(p);
                                    p.sort = Some(column.as_str().to_owned());
                                    p.dir = Some(next_dir.as_str().to_owned());
                                });
                                th scope="col" aria-sort=(if !current { "none" } else if sort_direction == Direction::Asc { "ascending" } else { "descending" }) {
                                    a href=(href) data-sort=(column.as_str()) {
                                        (column.header())
                                        @if current {
                                            span aria-hidden="true" { (if sort_direction == Direction::Asc { " ▲" } else { " ▼" }) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    tbody {
                        @for row in &page.rows {
                            tr data-enrolid=(row.enrolid) {
                                @for &column in &settings.columns {
                                    @if column == Column::SemcoBookingId {
                                        td {
                                            @if let Some(booking) = &row.semcobookingid {
                                                a href=(format!("/bookings/{}", path_segment(booking))) { (booking) }
                                            }
                                        }
                                    } @else if column == Column::EnrolId {
                                        th scope="row" { (row.enrolid) }
                                    } @else {
                                        td data-column=(column.as_str()) { (row.display(column)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav aria-label="Report pages" {
            @if let Some(prev) = &page.prev {
                a #report-prev rel="prev" href=(link("/report", &kept, |p| p.cursor = Some(prev.clone()))) { "Previous page" }
                " "
            }
            @if let Some(next) = &page.next {
                a #report-next rel="next" href=(link("/report", &kept, |p| p.cursor = Some(next.clone()))) { "Next page" }
            }
        }
        section aria-labelledby="downloads" {
            h2 #downloads { "Download these rows" }
            p {
                @for (format, label) in [(Format::Csv, "CSV"), (Format::Json, "JSON"), (Format::Xlsx, "Excel (XLSX)")] {
                    @let href = link(&format!("/report.{}", format.extension()), &kept, |p| {
                        first_page(p);
                        p.page_size = None;
                    });
                    a.download data-format=(format.extension()) href=(href) { (label) }
                    " "
                }
            }
        }
    }
}

/// A booking ID as one path segment (percent-encoded).
fn path_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

fn filter_form(params: &ReportParams, _settings: &DisplaySettings) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let selected = |v: &Option<String>, option: &str| v.as_deref() == Some(option);
    let text_field = |name: &str, label: &str, kind: &str, v: &Option<String>| {
        html! {
            div.field {
                label for=(format!("f-{name}")) { (label) }
                input id=(format!("f-{name}")) name=(name) type=(kind) value=(value(v));
            }
        }
    };
    html! {
        form #report-filters method="get" action="/report" {
            fieldset {
                legend { "Filters" }
                (text_field("email", "Email address contains", "text", &params.email))
                (text_field("semcouserid", "SEMCO User ID", "text", &params.semcouserid))
                (text_field("bookingid", "SEMCO booking ID", "text", &params.bookingid))
                (text_field("course", "Course ID", "number", &params.course))
                (text_field("user", "Moodle User ID", "number", &params.user))
                div.field {
                    label for="f-enrolstatus" { "Enrolment status" }
                    select #f-enrolstatus name="enrolstatus" {
                        option value="" { "Any" }
                        option value="active" selected[selected(&params.enrolstatus, "active")] { "Active" }
                        option value="suspended" selected[selected(&params.enrolstatus, "suspended")] { "Suspended" }
                    }
                }
                div.field {
                    label for="f-completionstatus" { "Course completion status" }
                    select #f-completionstatus name="completionstatus" {
                        option value="" { "Any" }
                        option value="completed" selected[selected(&params.completionstatus, "completed")] { "Completed" }
                        option value="notcompleted" selected[selected(&params.completionstatus, "notcompleted")] { "Not completed" }
                    }
                }
                (text_field("active_on", "Enrolled and active on (UTC)", "date", &params.active_on))
                (text_field("from", "Enrolment period from (UTC)", "date", &params.from))
                (text_field("to", "Enrolment period to (UTC)", "date", &params.to))
                (text_field("known_at", "As known at (UTC)", "datetime-local", &params.known_at))
                (text_field("position", "As known at log position", "number", &params.position))
                @for (name, v) in [("sort", &params.sort), ("dir", &params.dir), ("tifirst", &params.tifirst), ("tilast", &params.tilast), ("page_size", &params.page_size)] {
                    @if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                        input type="hidden" name=(name) value=(v);
                    }
                }
                button #report-apply type="submit" { "Apply filters" }
                " "
                a href="/report" { "Reset" }
            }
        }
    }
}

/// Moodle's initials bar: "All" and A–Z, the current letter marked.
fn initials_bar(params: &ReportParams, label: &str, name: &'static str, current: Option<char>) -> Markup {
    let set = |letter: Option<char>| {
        link("/report", params, |p| {
            p.cursor = None;
            let value = letter.map(|c| c.to_string());
            if name == "tifirst" {
                p.tifirst = value;
            } else {
                p.tilast = value;
            }
        })
    };
    html! {
        nav.initials aria-label=(format!("{label} initial")) data-initials=(name) {
            span.initials-label { (label) ": " }
            @if current.is_none() {
                strong aria-current="true" { "All" }
            } @else {
                a href=(set(None)) { "All" }
            }
            @for letter in 'A'..='Z' {
                " "
                @if current == Some(letter) {
                    strong aria-current="true" { (letter) }
                } @else {
                    a href=(set(Some(letter))) data-letter=(letter) { (letter) }
                }
            }
        }
    }
}
