//! The page frame every page uses: one HTML document with a skip link, the navigation the
//! account's role may open, the signed-in account and role, and the logout button; and the
//! response headers of every page (no caching, no framing, scripts off by CSP).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::auth::{Role, SignedIn};

/// The pages in the navigation: (path, label, roles that may open it).
pub const NAV: [(&str, &str, &[Role]); 6] = [
    ("/", "Home", &[Role::Manager, Role::Auditor]),
    ("/report", "Report", &[Role::Manager, Role::Auditor]),
    ("/health", "Health", &[Role::Manager, Role::Auditor]),
    ("/audit", "Audit", &[Role::Auditor]),
    ("/settings", "Settings", &[Role::Manager]),
    ("/tokens", "Tokens", &[Role::Manager]),
];

/// The navigation entries `role` may open.
pub fn nav_for(role: Role) -> impl Iterator<Item = (&'static str, &'static str)> {
    NAV.into_iter().filter(move |(_, _, roles)| roles.contains(&role)).map(|(path, label, _)| (path, label))
}

/// The hidden field carrying the session's CSRF token: put it in every form that POSTs.
pub fn csrf_field(signed: &SignedIn) -> Markup {
    super::auth::csrf_input(signed)
}

fn document(title: &str, header: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · enrol-ledger" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.site { (header) }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

/// A full page for a signed-in account.
pub fn page(title: &str, signed: &SignedIn, body: Markup) -> Response {
    html_response(StatusCode::OK, page_markup(title, signed, body))
}

/// The markup of [`page`] (for pages that answer with another status).
pub fn page_markup(title: &str, signed: &SignedIn, body: Markup) -> Markup {
    let header = html! {
        span.brand { "enrol-ledger" }
        nav aria-label="Main" {
            ul {
                @for (path, label) in nav_for(signed.role) {
                    li {
                        @if path == "/" && title == "Home" || label == title {
                            a href=(path) aria-current="page" { (label) }
                        } @else {
                            a href=(path) { (label) }
                        }
                    }
                }
            }
        }
        div.account {
            span { "Signed in as " strong.account-name { (signed.account) } " (" span.role { (signed.role.as_str()) } ")" }
            form.logout method="post" action="/logout" {
                (csrf_field(signed))
                button type="submit" { "Log out" }
            }
        }
    };
    document(title, header, html! { h1 { (title) } (body) })
}

/// A page without an account (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    document(title, html! { span.brand { "enrol-ledger" } }, body)
}

/// An HTML response with the headers every page carries.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
    // Pages show what an account may see: never from a cache, not after logout.
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}
