//! The audit pages in a real browser (issue 11 item 6): a booking's history opened from a URL
//! and from the audit start page, its proof, a course as of a date, the integrity page with a
//! verification run from it; 400 and 404 pages; screenshots of each under
//! `target/test-artifacts/screenshots/`. Real server binary, both backends.

use enrol_ledger::store::Backend;
use fantoccini::Locator;

use crate::browser::{Browser, Site, PASSWORD};
use crate::faults_support::{call_ok, cli, create_token, params, seed_course_and_users};

async fn audit_pages_show_history_as_of_and_integrity(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("ada", "auditor").await;
    let port = site.server.port;
    let token = create_token(&site.db.url, "ledger_admin").await;
    let (course, users) = seed_course_and_users(port, &token, 2).await;
    let future = chrono::Utc::now().timestamp() + 3 * 365 * 86_400;
    let enrolled = call_ok(
        port,
        &token,
        "enrol_semco_enrol_user",
        &params(&[
            ("userid", users[0].to_string()),
            ("courseid", course.to_string()),
            ("semcobookingid", "BK-1001".into()),
            ("timestart", "1700000000".into()),
        ]),
    )
    .await;
    let enrolid = enrolled["enrolid"].as_i64().expect("enrolid");
    call_ok(
        port,
        &token,
        "enrol_semco_edit_enrolment",
        &params(&[("enrolid", enrolid.to_string()), ("timeend", future.to_string())]),
    )
    .await;
    call_ok(
        port,
        &token,
        "enrol_semco_enrol_user",
        &params(&[
            ("userid", users[1].to_string()),
            ("courseid", course.to_string()),
            ("semcobookingid", "BK-2002".into()),
            ("timestart", (future - 86_400).to_string()),
        ]),
    )
    .await;
    let signed = cli(&site.db.url, &["checkpoint"]).await;
    assert!(signed.status.success(), "checkpoint: {}", String::from_utf8_lossy(&signed.stderr));

    let browser = Browser::start(&site).await;
    browser.goto("/bookings/BK-1001").await;
    assert!(browser.path().await.starts_with("/login"), "no session: the sign-in");
    browser.sign_in("ada", PASSWORD).await;

    // A booking's history from a URL: enrolled, then edited (old → new end), with its actor.
    browser.goto("/bookings/BK-1001").await;
    let text = browser.page_text().await;
    assert!(text.contains("Booking BK-1001"), "{text}");
    assert!(text.contains("Enrolled") && text.contains("EnrolmentEdited"), "both events: {text}");
    assert!(text.contains(&format!("timeend: 0 → {future}")), "old → new: {text}");
    assert!(text.contains("ledger_admin"), "the actor's token service: {text}");
    browser.screenshot("audit-booking-history").await;

    // Its proof against the signed checkpoint.
    browser.click_and_wait("table.history a[href^='/integrity/proof']").await;
    assert!(browser.path().await.starts_with("/integrity/proof?position="));
    let text = browser.page_text().await;
    assert!(text.contains("Inclusion proof of position") && text.contains("\"proof\": \"inclusion\""), "{text}");
    browser.screenshot("audit-proof").await;

    // The same history from the audit start page's form.
    browser.goto("/audit").await;
    browser.client.find(Locator::Id("booking")).await.unwrap().send_keys("BK-1001").await.unwrap();
    browser.click_and_wait("main form button").await;
    assert_eq!(browser.path().await, "/bookings/BK-1001");

    // The course as of now, active now: BK-1001 only (BK-2002 starts in three years). (A date
    // means its first second, before these enrolments were recorded today.)
    let today = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    browser.goto(&format!("/courses/{course}?active_on={}", today.replace('+', "%2B"))).await;
    let table = browser.text("table.as-of").await;
    assert!(table.contains("BK-1001") && !table.contains("BK-2002"), "{table}");
    assert_eq!(
        browser.client.find(Locator::Id("active_on")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some(today.as_str())
    );
    browser.screenshot("audit-course-as-of").await;
    // As known at position 0: nothing yet.
    browser.goto(&format!("/courses/{course}?as_of=0")).await;
    assert!(browser.text("table.as-of caption").await.starts_with("0 user enrolment"));

    // Bad parameters: a 400 page saying what is wrong; an unknown booking: 404.
    browser.goto(&format!("/courses/{course}?as_of=yesterday")).await;
    let text = browser.page_text().await;
    assert!(text.contains("Bad request") && text.contains("neither a time"), "{text}");
    browser.goto("/bookings/NO-SUCH-BOOKING").await;
    let text = browser.page_text().await;
    assert!(text.contains("Not found") && text.contains("no event"), "{text}");
    let raw = site.http("GET", "/courses/abc", &[], "").await;
    assert_eq!(raw.status, 303, "no session: to the sign-in first");

    // Integrity: nothing verified yet; verify from the page; the checkpoint and its key.
    browser.goto("/integrity").await;
    assert!(browser.page_text().await.contains("No verification has been recorded yet"));
    browser.click_and_wait("form[action='/integrity/verify'] button").await;
    assert_eq!(browser.path().await, "/integrity");
    let status = browser.text("#verification ~ p.status").await;
    assert!(status.starts_with("OK") && status.contains("by web"), "{status}");
    let key = String::from_utf8(cli(&site.db.url, &["checkpoint", "--public-key"]).await.stdout).unwrap();
    assert_eq!(browser.text("#public-key").await, key.trim(), "the signing key's public half");
    browser.screenshot("audit-integrity").await;
    browser.close().await;
}

crate::on_both_backends!(audit_pages_show_history_as_of_and_integrity);
