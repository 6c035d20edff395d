//! Browser tests: Debian's headless `chromium` driven over WebDriver (`chromium-driver`,
//! `fantoccini`) against the real server binary on either backend (docs/SECURITY.md, "Web
//! sign-in"). The harness is shared: [`Site`] starts a ledger and its server, adds accounts
//! with the CLI and makes raw HTTP requests; [`Browser`] starts a chromedriver with a fresh
//! profile, signs in and keeps screenshots under `target/test-artifacts/screenshots/`.
//! `scripts/test.sh` installs `chromium chromium-driver` when they are missing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use enrol_ledger::store::Backend;
use fantoccini::{Client, ClientBuilder, Locator};

use crate::faults_support::{binary, free_port, BlankDb, ServerProc};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The password every test account gets (long enough for the rule).
pub const PASSWORD: &str = "correct horse battery staple";

/// At most this many browsers at once in the test binary (2 cores are shared).
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

// ---------------------------------------------------------------------------------------------
// The site: a ledger, its server, accounts, raw HTTP

/// A fresh ledger served by the real binary.
pub struct Site {
    pub db: BlankDb,
    pub server: ServerProc,
    pub backend: Backend,
}

impl Site {
    pub async fn start(backend: Backend) -> Self {
        let db = BlankDb::new(backend).await;
        let mut server = ServerProc::serve(&db.url);
        server.wait_ready(Duration::from_secs(60)).await.expect("server ready");
        Self { db, server, backend }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// `enrol-ledger account add` beside the running server (password from the environment).
    pub async fn add_account(&self, username: &str, role: &str) {
        let output = self.account(&["add", "--username", username, "--role", role], Some(PASSWORD)).await;
        assert!(output.0 == 0, "account add {username}: {}", output.2);
    }

    /// `enrol-ledger account ARGS`, the password (if any) in ENROL_LEDGER_ACCOUNT_PASSWORD:
    /// exit code, stdout, stderr.
    pub async fn account(&self, args: &[&str], password: Option<&str>) -> (i32, String, String) {
        let mut command = binary(&self.db.url);
        command.arg("account").args(args);
        if let Some(password) = password {
            command.env(enrol_ledger::web::accounts::PASSWORD_ENV, password);
        }
        let output = tokio::task::spawn_blocking(move || command.output().expect("run enrol-ledger")).await.unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
    }

    /// One raw HTTP/1.1 request: status, head, body.
    pub async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body);
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.server.port)).await.expect("connect");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        Response { status, head: head.to_owned(), body: body.to_owned() }
    }
}

/// A raw HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.head
            .lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.trim())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The browser

/// A headless chromium with a fresh profile, driven through its own chromedriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    base: String,
    backend: Backend,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

fn require_chromium() {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
        panic!(
            "the browser tests need Debian's chromium and its WebDriver: \
             `apt-get install -y chromium chromium-driver` (scripts/test.sh does it)"
        );
    }
}

impl Browser {
    pub async fn start(site: &Site) -> Self {
        require_chromium();
        let permit = BROWSERS.acquire().await.expect("browser semaphore");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile directory");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert("goog:chromeOptions".into(), serde_json::json!({ "binary": CHROMIUM, "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let webdriver = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            match ClientBuilder::new(connector.clone()).capabilities(capabilities.clone()).connect(&webdriver).await {
                Ok(client) => break client,
                Err(error) if start.elapsed() < Duration::from_secs(30) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("cannot start chromium through chromedriver: {error}"),
            }
        };
        Self { client, driver, _profile: profile, base: site.base(), backend: site.backend, _permit: permit }
    }

    pub async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.expect("navigate");
    }

    /// The current URL's path and query.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap(),
            Err(error) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!("{css} not on {}: {error}\n{page}", self.path().await)
            }
        }
    }

    /// The whole page's visible text.
    pub async fn page_text(&self) -> String {
        self.text("body").await
    }

    /// Clicks the element `css` names (a link or a submit button) and waits until the page it
    /// opens has loaded: the old document's root has gone stale and the new one is complete.
    /// chromedriver may answer a click before the navigation it starts has finished, so a
    /// test that reads the URL or the page right after a bare `click()` can see the old page.
    pub async fn click_and_wait(&self, css: &str) {
        let old_root = self.client.find(Locator::Css("html")).await.expect("the page's root");
        let target = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        target.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if old_root.tag_name().await.is_err() {
                let state = self.client.execute("return document.readyState", vec![]).await.ok();
                if state.as_ref().and_then(|v| v.as_str()) == Some("complete") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{css}: no new page within 20 s of the click");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Fills the sign-in form (the browser must be on /login) and submits it.
    pub async fn submit_sign_in(&self, username: &str, password: &str) {
        let field = |id: &'static str| async move { self.client.find(Locator::Id(id)).await.expect(id) };
        field("username").await.send_keys(username).await.unwrap();
        field("password").await.send_keys(password).await.unwrap();
        self.click_and_wait("form.signin button[type=submit]").await;
    }

    /// Opens /login and signs in; panics unless the start page follows.
    pub async fn sign_in(&self, username: &str, password: &str) {
        self.goto("/login").await;
        self.submit_sign_in(username, password).await;
        let text = self.text(".account").await;
        assert!(text.contains(username), "signed in as {username}: {text}");
    }

    /// The value of a cookie of this site (HttpOnly ones included).
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client.get_named_cookie(name).await.ok().map(|c| c.value().to_owned())
    }

    /// Saves a PNG of the viewport as `target/test-artifacts/screenshots/<name>-<backend>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}-{}.png", backend_name(self.backend))), png).expect("save screenshot");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Sign-in and sign-out

/// A page without a session goes to the sign-in; a wrong password is refused, the right one
/// opens the start page showing the account and role; a POST without the CSRF token is 403;
/// logout ends the session so neither the back button nor the old cookie opens a page.
async fn sign_in_and_out(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    let browser = Browser::start(&site).await;

    browser.goto("/").await;
    assert_eq!(browser.path().await, "/login?next=/", "no session: to the sign-in");
    browser.screenshot("login").await;

    browser.submit_sign_in("mia", "not the password").await;
    assert!(browser.path().await.starts_with("/login"), "still on the sign-in");
    assert!(browser.text("[role=alert]").await.contains("Wrong username or password"));
    browser.submit_sign_in("nobody", PASSWORD).await;
    assert!(browser.text("[role=alert]").await.contains("Wrong username or password"), "unknown user: the same answer");

    browser.submit_sign_in("mia", PASSWORD).await;
    assert_eq!(browser.path().await, "/", "signed in: the page asked for");
    assert_eq!(browser.text(".account-name").await, "mia");
    assert_eq!(browser.text(".account .role").await, "manager");
    assert!(browser.text("nav").await.contains("Tokens"), "a manager's navigation");
    browser.screenshot("landing").await;

    let session = browser.cookie(enrol_ledger::web::auth::SESSION_COOKIE).await.expect("session cookie");
    let cookie = format!("{}={session}", enrol_ledger::web::auth::SESSION_COOKIE);
    let forged = site.http("POST", "/logout", &[("Cookie", &cookie)], "").await;
    assert_eq!(forged.status, 403, "logout without the CSRF token: {forged:?}");
    let wrong = site.http("POST", "/logout", &[("Cookie", &cookie)], "csrf=0123").await;
    assert_eq!(wrong.status, 403, "logout with a wrong CSRF token");
    assert_eq!(site.http("GET", "/", &[("Cookie", &cookie)], "").await.status, 200, "the session still works");

    browser.click_and_wait("form.logout button").await;
    assert!(browser.path().await.starts_with("/login"), "logout: back at the sign-in");
    // Back may show chromium's in-memory copy of the last page (back/forward cache); whatever
    // it shows, the next request from it finds no session.
    browser.client.back().await.unwrap();
    browser.client.refresh().await.unwrap();
    assert_eq!(browser.path().await, "/login?next=/", "back, then any request: the sign-in");
    assert!(!browser.page_text().await.contains("Signed in as"));
    let old = site.http("GET", "/", &[("Cookie", &cookie)], "").await;
    assert_eq!((old.status, old.header("location")), (303, Some("/login?next=/")), "the old cookie opens nothing");
    browser.close().await;
}

crate::on_both_backends!(sign_in_and_out);

// ---------------------------------------------------------------------------------------------
// The tokens page

/// The newest token of `service` by `token list` (id).
async fn newest_token_id(site: &Site, service: &str) -> i64 {
    let output = crate::faults_support::cli(&site.db.url, &["token", "list"]).await;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut cells = line.split('\t');
            let id = cells.next()?.parse::<i64>().ok()?;
            (cells.next()? == service).then_some(id)
        })
        .max()
        .unwrap_or_else(|| panic!("no {service} token in {text}"))
}

/// SEMCO's call with `token`: `Ok` with the answer, `Err(errorcode)` for an envelope.
async fn semco_call(site: &Site, token: &str) -> Result<serde_json::Value, String> {
    let answer = crate::faults_support::call(
        site.server.port,
        token,
        "core_user_get_users_by_field",
        &crate::faults_support::params(&[("field", "id".into()), ("values[0]", "3".into())]),
        Duration::from_secs(10),
    )
    .await
    .expect("an answer");
    match answer.get("errorcode").and_then(|c| c.as_str()) {
        Some(code) => Err(code.to_owned()),
        None => Ok(answer),
    }
}

/// Waits until the log has an event of `event_type` whose payload's actor is `actor`.
async fn wait_for_event(site: &Site, event_type: &str, actor: &str) {
    let start = Instant::now();
    loop {
        let events = crate::faults_support::export(&site.db.url).await;
        let found =
            events.iter().any(|e| e["event_type"] == event_type && e["payload"]["actor"].as_str() == Some(actor));
        if found {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no {event_type} by {actor} in the log");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A manager revokes SEMCO's token on the page and SEMCO's next call with it is refused
/// (`invalidtoken`); a token created on the page works at once and is shown only on its result
/// page; both changes are events naming the web account; an auditor cannot open the page.
async fn tokens_page_revokes_and_creates(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    site.add_account("abe", "auditor").await;
    let semco = crate::faults_support::create_token(&site.db.url, "enrol_semco").await;
    let semco_id = newest_token_id(&site, "enrol_semco").await;
    let before = semco_call(&site, &semco).await;
    assert!(before.is_ok(), "SEMCO token works before: {before:?}");

    let browser = Browser::start(&site).await;
    browser.sign_in("mia", PASSWORD).await;
    browser.goto("/tokens").await;
    let table = browser.text("table.tokens").await;
    assert!(table.contains("enrol_semco") && !table.contains(&semco), "listed, never the token itself");
    assert!(!browser.client.source().await.unwrap().contains(&semco), "not in the page source either");
    browser.screenshot("tokens").await;

    browser.click_and_wait(&format!("#revoke-{semco_id}")).await;
    assert!(browser.text("[role=status]").await.contains(&format!("Token {semco_id} was revoked")));
    assert_eq!(semco_call(&site, &semco).await.unwrap_err(), "invalidtoken", "SEMCO's next call is refused");
    assert!(browser.client.find(Locator::Id(&format!("revoke-{semco_id}"))).await.is_err(), "gone from the list");

    browser.client.find(Locator::Id("service")).await.unwrap().select_by_value("enrol_semco").await.unwrap();
    browser.click_and_wait("form.create-token button").await;
    let created = browser.text("#new-token").await;
    assert_eq!(created.len(), 32, "a new token: {created}");
    browser.screenshot("token-created").await;
    assert!(semco_call(&site, &created).await.is_ok(), "the new token works at once");
    browser.goto("/tokens").await;
    assert!(!browser.client.source().await.unwrap().contains(&created), "shown once, never again");
    wait_for_event(&site, "TokenRevoked", "web:1:mia").await;
    wait_for_event(&site, "TokenCreated", "web:1:mia").await;
    assert!(!site.server.stderr().contains(&created), "the new token is not logged");

    browser.click_and_wait("form.logout button").await;
    browser.sign_in("abe", PASSWORD).await;
    assert!(!browser.text("nav").await.contains("Tokens"), "an auditor's navigation has no tokens");
    browser.goto("/tokens").await;
    assert!(browser.text("h1").await.contains("Not allowed"), "an auditor cannot open /tokens");
    let session = browser.cookie(enrol_ledger::web::auth::SESSION_COOKIE).await.unwrap();
    let cookie = format!("{}={session}", enrol_ledger::web::auth::SESSION_COOKIE);
    assert_eq!(site.http("GET", "/tokens", &[("Cookie", &cookie)], "").await.status, 403);
    browser.close().await;
}

crate::on_both_backends!(tokens_page_revokes_and_creates);
