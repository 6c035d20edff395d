//! Sign-in over plain HTTP against the real binary on both backends: throttling, redirects,
//! cookie flags, the sign-in form's own CSRF check, and account changes as events
//! (docs/SECURITY.md "Web sign-in", docs/EVENTS.md "Web account stream").

use std::time::Duration;

use enrol_ledger::store::Backend;
use enrol_ledger::web::auth::{LOGIN_COOKIE, SESSION_COOKIE, SIGN_IN_FAILURES_MAX};

use crate::browser::{Response, Site, PASSWORD};
use crate::faults_support::{binary, free_port, BlankDb, ServerProc};

/// The value of cookie `name` set by a response.
fn set_cookie_value(response: &Response, name: &str) -> Option<String> {
    response.set_cookies().into_iter().find_map(|c| {
        let (n, rest) = c.split_once('=')?;
        (n == name).then(|| rest.split(';').next().unwrap_or("").to_owned())
    })
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET /login, then POST the form: the POST's answer.
async fn sign_in(site: &Site, username: &str, password: &str, next: &str) -> Response {
    let form = site.http("GET", "/login", &[], "").await;
    assert_eq!(form.status, 200);
    let token = set_cookie_value(&form, LOGIN_COOKIE).expect("login cookie");
    let cookie = format!("{LOGIN_COOKIE}={token}");
    let body = format!(
        "username={}&password={}&next={}&login_csrf={token}",
        form_encode(username),
        form_encode(password),
        form_encode(next)
    );
    site.http("POST", "/login", &[("Cookie", &cookie)], &body).await
}

/// Five wrong passwords from one address: the sixth attempt, even with the right password, is
/// refused with 429 and Retry-After, without a password check.
async fn sign_in_is_throttled_after_five_failures(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    for attempt in 0..SIGN_IN_FAILURES_MAX {
        let answer = sign_in(&site, "mia", "wrong password!", "/").await;
        assert_eq!(answer.status, 401, "attempt {attempt}");
        assert!(answer.body.contains("Wrong username or password"));
    }
    let refused = sign_in(&site, "mia", PASSWORD, "/").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(refused.body.contains("Too many failed sign-ins"));
    let wait: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(set_cookie_value(&refused, SESSION_COOKIE), None, "no session");
}

/// `next` may only name a path on this site; anything else signs in to `/`.
async fn sign_in_redirects_only_to_local_paths(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    for (next, to) in [
        ("/tokens?x=1", "/tokens?x=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ] {
        let answer = sign_in(&site, "mia", PASSWORD, next).await;
        assert_eq!((answer.status, answer.header("location")), (303, Some(to)), "next={next}");
    }
}

/// The session cookie is HttpOnly, SameSite=Strict, Path=/, and Secure behind an https base URL;
/// a sign-in POST without the form's own token is refused.
async fn session_cookie_flags_and_login_csrf(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    let answer = sign_in(&site, "mia", PASSWORD, "/").await;
    let cookie = answer.set_cookies().into_iter().find(|c| c.starts_with(SESSION_COOKIE)).expect("session");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "http base URL: {cookie}");
    let body = format!("username=mia&password={}&next=/&login_csrf=forged", form_encode(PASSWORD));
    let forged = site.http("POST", "/login", &[("Cookie", &format!("{LOGIN_COOKIE}=other"))], &body).await;
    assert_eq!(forged.status, 403, "sign-in without the form's token");
    assert_eq!(set_cookie_value(&forged, SESSION_COOKIE), None);

    // Behind TLS (an https base URL) the cookies carry Secure.
    let db = BlankDb::new(backend).await;
    let port = free_port();
    let mut command = binary(&db.url);
    command.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--base-url", "https://ledger.example"]);
    let mut server = ServerProc::spawn(command, port);
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    let https = Site { db, server, backend };
    https.add_account("mia", "manager").await;
    let answer = sign_in(&https, "mia", PASSWORD, "/").await;
    let cookie = answer.set_cookies().into_iter().find(|c| c.starts_with(SESSION_COOKIE)).expect("session");
    assert!(cookie.contains("; Secure"), "{cookie}");
}

/// `account add`, `password` and `remove` beside a running server are events of stream
/// account/1 with the CLI as actor (the server appends them), and without a server the command
/// appends them itself; `history --account` reads them; a new password ends the sessions, a
/// removed account cannot sign in.
async fn account_changes_are_events(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    let signed = sign_in(&site, "mia", PASSWORD, "/").await;
    let session = set_cookie_value(&signed, SESSION_COOKIE).unwrap();
    let cookie = format!("{SESSION_COOKIE}={session}");
    assert_eq!(site.http("GET", "/", &[("Cookie", &cookie)], "").await.status, 200);

    let (code, _, err) = site.account(&["password", "--username", "mia"], Some("another long password")).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(site.http("GET", "/", &[("Cookie", &cookie)], "").await.status, 303, "sessions ended");
    assert_eq!(sign_in(&site, "mia", PASSWORD, "/").await.status, 401, "the old password");
    assert_eq!(sign_in(&site, "mia", "another long password", "/").await.status, 303);

    let (code, _, err) = site.account(&["add", "--username", "mia", "--role", "auditor"], Some(PASSWORD)).await;
    assert!(code != 0 && err.contains("exists already"), "{err}");
    let (code, _, err) = site.account(&["add", "--username", "max", "--role", "admin"], Some(PASSWORD)).await;
    assert!(code != 0 && err.contains("manager or auditor"), "{err}");
    let (code, _, err) = site.account(&["add", "--username", "max", "--role", "auditor"], Some("short")).await;
    assert!(code != 0 && err.contains("at least 12"), "{err}");
    let (code, out, _) = site.account(&["list"], None).await;
    assert!(code == 0 && out.contains("mia\tmanager") && !out.contains("argon2"), "{out}");

    let (code, _, err) = site.account(&["remove", "--username", "mia"], None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(sign_in(&site, "mia", "another long password", "/").await.status, 401, "removed");

    let start = std::time::Instant::now();
    let types = loop {
        let events = crate::faults_support::export(&site.db.url).await;
        let types: Vec<(String, i64, String)> = events
            .iter()
            .filter(|e| e["stream_type"] == "account")
            .map(|e| {
                let actor = e["payload"]["actor"].as_str().unwrap_or_default().to_owned();
                (e["event_type"].as_str().unwrap().to_owned(), e["stream_version"].as_i64().unwrap(), actor)
            })
            .collect();
        if types.len() >= 3 || start.elapsed() > Duration::from_secs(10) {
            break types;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cli = || "cli".to_owned();
    assert_eq!(
        types,
        vec![
            ("AccountAdded".to_owned(), 1, cli()),
            ("AccountPasswordChanged".to_owned(), 2, cli()),
            ("AccountRemoved".to_owned(), 3, cli())
        ]
    );
    let history = crate::faults_support::cli(&site.db.url, &["history", "--account", "1"]).await;
    let history = String::from_utf8_lossy(&history.stdout).into_owned();
    let lines: Vec<serde_json::Value> = history.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["AccountAdded", "AccountPasswordChanged", "AccountRemoved"], "history --account 1");
    let mut site = site;
    site.server.kill9();
    let (code, _, err) = site.account(&["add", "--username", "max", "--role", "auditor"], Some(PASSWORD)).await;
    assert_eq!(code, 0, "{err}");
    let events = crate::faults_support::export(&site.db.url).await;
    let added = events.iter().filter(|e| e["event_type"] == "AccountAdded").map(|e| e["stream_key"].clone());
    assert_eq!(added.collect::<Vec<_>>(), vec!["1", "2"], "no server: the command appended its event");
    let (code, report) = crate::faults_support::verify(&site.db.url).await;
    assert_eq!(code, 0, "{report}");
}

crate::on_both_backends!(
    sign_in_is_throttled_after_five_failures,
    sign_in_redirects_only_to_local_paths,
    session_cookie_flags_and_login_csrf,
    account_changes_are_events
);
