//! The web pages (issue 11): HTML rendered with maud, no JavaScript, one stylesheet.
//!
//! `auth` signs accounts in and out and gives pages the `SignedIn` and `CsrfForm` extractors,
//! `layout` frames every page, `accounts` keeps the web accounts (and the `account` CLI),
//! `tokens` is the tokens page.
//! Each page area has its own file with `routes()`, merged in [`routes`].

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

use crate::api::AppState;

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod health;
pub mod layout;
pub mod report;
pub mod settings;
pub mod tokens;

/// What the pages keep in memory: the sign-in throttle.
#[derive(Default)]
pub struct WebState {
    pub throttle: auth::SignInThrottle,
}

/// Every page route: one `.merge(x::routes())` line per page area.
pub fn routes() -> Router<AppState> {
    // The dummy hash unknown usernames are checked against is made once, before the first
    // sign-in, so that sign-in is not slower for an unknown name.
    std::thread::spawn(|| accounts::dummy_hash().len());
    Router::new()
        .route("/", get(home))
        .route("/static/app.css", get(stylesheet))
        .merge(auth::routes())
        .merge(tokens::routes())
        .merge(report::routes())
        .merge(health::routes())
        .merge(settings::routes())
        .merge(audit::routes())
}

/// Why a page cannot be shown, as a page with the matching status. Never a 500 with a panic:
/// a storage failure is a 503 ("try again"), logged with its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
}

impl WebError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "Bad request"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable"),
        }
    }
}

impl From<sqlx::Error> for WebError {
    fn from(error: sqlx::Error) -> Self {
        crate::store::StoreError::from(error).into()
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::warn!(%error, "page: database unavailable");
        Self::Unavailable("The database did not answer. Try again in a moment.".into())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title) = self.status();
        let body = html! {
            h1 { (title) }
            p.error role="alert" { (self.to_string()) }
            p { a href="/" { "Back to the start page" } }
        };
        let mut response = layout::html_response(status, layout::bare(title, body));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert("retry-after", HeaderValue::from_static("5"));
        }
        response
    }
}

/// The start page: the pages this account's role can open.
async fn home(signed: auth::SignedIn) -> Response {
    let body = html! {
        p { "Welcome, " (signed.account) ". As " (signed.role.as_str()) " you can open:" }
        ul.pages {
            @for (path, label) in layout::nav_for(signed.role).filter(|(p, _)| *p != "/") {
                li { a href=(path) { (label) } }
            }
        }
    };
    layout::page("Home", &signed, body)
}

const APP_CSS: &str = include_str!("static/app.css");

async fn stylesheet() -> Response {
    let mut response = APP_CSS.into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert("cache-control", HeaderValue::from_static("public, max-age=3600"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}
