//! Browser tests of `/health` and `/settings` (issue 11 items 3 and 4) on both backends, with
//! the real server binary and Debian's headless chromium (`browser::Browser`): a manager runs
//! the health check, mutes one check and finds it muted and in its history, changes settings and
//! finds them in the settings history; an auditor reads both pages and cannot change anything.

use enrol_ledger::store::Backend;
use fantoccini::Locator;

use crate::browser::{Browser, Site, PASSWORD};

async fn find(browser: &Browser, css: &str) -> fantoccini::elements::Element {
    browser.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn health_page_mutes_a_check(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    site.add_account("otto", "auditor").await;
    let browser = Browser::start(&site).await;
    browser.sign_in("mia", PASSWORD).await;

    browser.goto("/health").await;
    let text = browser.page_text().await;
    assert!(text.contains("Health check") && text.contains("Overall:"), "{text}");
    assert!(browser.text("#check-semco_token").await.contains("OK"), "the installer's token");
    let row = browser.text("#check-semco_token_ip").await;
    assert!(row.contains("Warning") && row.contains("no IP restriction"), "{row}");
    browser.screenshot("health").await;

    find(&browser, "#reason-semco_token_ip").await.send_keys("SEMCO calls from changing addresses").await.unwrap();
    browser.click_and_wait("#check-semco_token_ip button[type=submit]").await;
    assert_eq!(browser.path().await, "/health?done=muted");
    let row = browser.text("#check-semco_token_ip").await;
    assert!(row.contains("Muted: SEMCO calls from changing addresses") && row.contains("Unmute"), "{row}");
    let class = find(&browser, "#check-semco_token_ip").await.attr("class").await.unwrap();
    assert_eq!(class.as_deref(), Some("muted"), "the row is greyed");
    assert!(browser.text("#check-semco_token_ip").await.contains("Warning"), "a muted check keeps its status");
    browser.screenshot("health-muted").await;

    browser.goto("/health/history").await;
    let text = browser.page_text().await;
    assert!(text.contains("CheckMuted") && text.contains("semco_token_ip"), "{text}");
    assert!(text.contains("web account mia") && text.contains("SEMCO calls from changing addresses"), "{text}");
    browser.screenshot("health-history").await;

    // An auditor reads the checks, sees the mute, and has no button; a forged POST is refused.
    browser.click_and_wait("form.logout button").await;
    browser.sign_in("otto", PASSWORD).await;
    browser.goto("/health").await;
    assert!(browser.text("#check-semco_token_ip").await.contains("Muted:"));
    assert!(browser.client.find(Locator::Css("form[action='/health/mute']")).await.is_err(), "no mute form");
    browser.screenshot("health-auditor").await;
    let csrf = find(&browser, "form.logout input[name=csrf]").await.attr("value").await.unwrap().unwrap();
    let session = browser.cookie(enrol_ledger::web::auth::SESSION_COOKIE).await.unwrap();
    let cookie = format!("{}={session}", enrol_ledger::web::auth::SESSION_COOKIE);
    let body = format!("csrf={csrf}&check=disk_space&reason=x");
    let headers = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded")];
    let forged = site.http("POST", "/health/mute", &headers, &body).await;
    assert_eq!(forged.status, 403, "an auditor cannot mute: {forged:?}");
    browser.close().await;
}

async fn settings_page_change_is_in_the_history(backend: Backend) {
    let site = Site::start(backend).await;
    site.add_account("mia", "manager").await;
    site.add_account("otto", "auditor").await;
    let browser = Browser::start(&site).await;
    browser.sign_in("mia", PASSWORD).await;

    browser.goto("/settings").await;
    let text = browser.page_text().await;
    assert!(text.contains("Moodle base URL") && text.contains("A token exists"), "{text}");
    browser.screenshot("settings").await;
    find(&browser, "#recompletion").await.select_by_value("0").await.unwrap();
    find(&browser, "#col-grade").await.click().await.unwrap();
    find(&browser, "#report_sort_column").await.select_by_value("lastname").await.unwrap();
    find(&browser, "#report_sort_direction").await.select_by_value("desc").await.unwrap();
    browser.click_and_wait("form[action='/settings'] button[type=submit]").await;
    assert_eq!(browser.path().await, "/settings?saved=1");
    assert_eq!(
        find(&browser, "#recompletion option[value='0']").await.prop("selected").await.unwrap().as_deref(),
        Some("true")
    );
    assert_eq!(find(&browser, "#col-grade").await.prop("checked").await.unwrap().as_deref(), Some("false"));
    browser.screenshot("settings-saved").await;

    browser.goto("/settings/history").await;
    let text = browser.page_text().await;
    for expected in
        ["ConfigChanged", "recompletion: 1 → 0", "report_sort: enrolid asc → lastname desc", "web account mia"]
    {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(text.contains("report_columns:") && !text.contains("allowaccountssameemail"), "only what changed: {text}");
    browser.screenshot("settings-history").await;

    // The health check sees the change: recompletion off.
    browser.goto("/health").await;
    assert!(browser.text("#check-recompletion").await.contains("switched off"));

    browser.click_and_wait("form.logout button").await;
    browser.sign_in("otto", PASSWORD).await;
    browser.goto("/settings").await;
    let text = browser.page_text().await;
    assert!(text.contains("only a manager can change them") && text.contains("Last name, descending"), "{text}");
    assert!(browser.client.find(Locator::Css("form[action='/settings']")).await.is_err(), "read-only for an auditor");
    browser.screenshot("settings-auditor").await;
    browser.close().await;
}

crate::on_both_backends!(health_page_mutes_a_check, settings_page_change_is_in_the_history);
