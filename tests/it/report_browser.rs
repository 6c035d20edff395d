//! The `/report` page in headless chromium against the real server binary, on both backends
//! (issue 11 "Done when"): sign in, filter by each filter (through the form, the initials bar
//! and shareable URLs), sort by a header, page forwards and back, download CSV, JSON and XLSX
//! and compare them with the filter, follow a booking ID to its history page, screenshot.

use std::time::Duration;

use enrol_ledger::app::report::Column;
use enrol_ledger::app::Ledger;
use enrol_ledger::store::Backend;
use fantoccini::Locator;

use crate::browser::{Browser, Site, PASSWORD};
use crate::faults_support::{BlankDb, ServerProc};
use crate::report::{filter_cases, fixture, xlsx_cells, Fixture};

/// A site whose ledger holds the report fixture (written before the server starts).
async fn site_with_fixture(backend: Backend) -> (Site, Fixture) {
    let db = BlankDb::new(backend).await;
    let opened = enrol_ledger::cli::open(&db.url).await.expect("open and migrate");
    let ledger = Ledger::start(opened.clone()).await.expect("start the ledger");
    let f = fixture(&ledger, &opened).await;
    ledger.shutdown().await;
    opened.pool.close().await;
    let mut server = ServerProc::serve(&db.url);
    server.wait_ready(Duration::from_secs(60)).await.expect("server ready");
    (Site { db, server, backend }, f)
}

/// The enrolids of the rows the page shows, in order.
async fn shown(browser: &Browser) -> Vec<i64> {
    let rows = browser.client.find_all(Locator::Css("#report tbody tr")).await.expect("rows");
    let mut ids = Vec::new();
    for row in rows {
        let id = row.attr("data-enrolid").await.unwrap().expect("data-enrolid");
        ids.push(id.parse().unwrap());
    }
    ids
}

async fn href(browser: &Browser, css: &str) -> String {
    let element = browser.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    element.attr("href").await.unwrap().unwrap_or_else(|| panic!("{css} has no href"))
}

/// A GET with the browser's session cookie: status, head and body bytes (chunked bodies joined).
async fn fetch(site: &Site, path: &str, cookie: &str) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\n\r\n");
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", site.server.port)).await.expect("connect");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut joined = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                break;
            }
            joined.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body = joined;
    }
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, body)
}

async fn report_page_filters_sorts_pages_and_downloads(backend: Backend) {
    let (site, f) = site_with_fixture(backend).await;
    site.add_account("rita", "auditor").await;
    let browser = Browser::start(&site).await;
    browser.sign_in("rita", PASSWORD).await;
    let e = f.enrolids;

    // The whole report, every column, booking IDs linked to their history.
    browser.goto("/report").await;
    assert_eq!(shown(&browser).await, vec![e[0], e[1], e[2], e[3]], "deleted users are left out");
    let headers = browser.text("#report thead").await;
    for column in Column::ALL {
        assert!(headers.contains(column.header()), "header {}", column.header());
    }
    assert_eq!(
        href(&browser, &format!("#report tr[data-enrolid='{}'] a[href^='/bookings/']", e[0])).await,
        "/bookings/BK-1"
    );
    let ann = browser.text(&format!("#report tr[data-enrolid='{}']", e[0])).await;
    for cell in ["S-1", "=ACME", "Berlin", "T1", "87.5", "Completed", "01 January 2026, 12:00 AM"] {
        assert!(ann.contains(cell), "{cell} in {ann}");
    }
    browser.screenshot("report").await;
    browser.client.execute("document.getElementById('report').scrollIntoView()", vec![]).await.unwrap();
    browser.screenshot("report-table").await;

    // Through the form: a text field and a select, together.
    browser.client.find(Locator::Id("f-email")).await.unwrap().send_keys("example.org").await.unwrap();
    browser.client.find(Locator::Css("#f-enrolstatus option[value='active']")).await.unwrap().click().await.unwrap();
    browser.click_and_wait("#report-apply").await;
    assert_eq!(shown(&browser).await, vec![e[0], e[1], e[3]]);
    assert!(browser.path().await.contains("email=example.org"), "the filters are in the URL");
    // The initials bar narrows further and keeps the form's filters.
    browser.click_and_wait("nav[data-initials='tifirst'] a[data-letter='C']").await;
    assert_eq!(shown(&browser).await, vec![e[3]]);
    assert_eq!(browser.text("nav[data-initials='tifirst'] [aria-current]").await, "C");
    browser.click_and_wait("nav[data-initials='tifirst'] a:not([data-letter])").await;
    assert_eq!(shown(&browser).await, vec![e[0], e[1], e[3]], "All clears the initial");

    // Each filter as a shareable URL shows exactly its rows.
    for (pairs, expected) in filter_cases(&f) {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
        browser.goto(&format!("/report?{query}")).await;
        let want: Vec<i64> = expected.iter().map(|&i| e[i]).collect();
        if want.is_empty() {
            assert!(browser.text("#report-empty").await.contains("No SEMCO enrolments match"), "{query}");
        } else {
            assert_eq!(shown(&browser).await, want, "{query}");
        }
    }
    browser.goto("/report?bookingid=NOPE").await;
    assert_eq!(browser.text("#report-empty").await, "No SEMCO enrolments match these filters.");
    browser.goto("/report?course=abc").await;
    assert!(browser.text("[role=alert]").await.contains("course must be a positive integer"));

    // Sort by a header (ascending, then descending), then page through two rows at a time.
    browser.goto("/report").await;
    browser.click_and_wait("#report thead a[data-sort='lastname']").await;
    let by_last = shown(&browser).await;
    assert_eq!(&by_last[..2], &[e[0], e[1]], "Archer (Ann) first, ties by enrolid");
    assert_eq!(by_last[2], e[3]);
    browser.click_and_wait("#report thead a[data-sort='lastname']").await;
    assert_eq!(shown(&browser).await, vec![e[2], e[3], e[1], e[0]], "descending");
    let path = browser.path().await;
    browser.goto(&format!("{path}&page_size=2")).await;
    assert_eq!(shown(&browser).await, vec![e[2], e[3]]);
    browser.click_and_wait("#report-next").await;
    assert_eq!(shown(&browser).await, vec![e[1], e[0]]);
    assert!(browser.client.find(Locator::Id("report-next")).await.is_err(), "the last page");
    browser.click_and_wait("#report-prev").await;
    assert_eq!(shown(&browser).await, vec![e[2], e[3]]);

    // Downloads carry the filters and the sort: exactly the filtered rows, in order.
    browser.goto("/report?email=example.org&sort=enrolid&dir=desc").await;
    let session = browser.cookie(enrol_ledger::web::auth::SESSION_COOKIE).await.expect("session cookie");
    let cookie = format!("{}={session}", enrol_ledger::web::auth::SESSION_COOKIE);
    let want = vec![e[3], e[1], e[0]];
    let at = |c: Column| Column::ALL.iter().position(|&x| x == c).unwrap();

    let (status, head, csv) = fetch(&site, &href(&browser, "a.download[data-format='csv']").await, &cookie).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("semco-enrolreport.csv"), "{head}");
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let got: Vec<i64> = records.iter().map(|r| r[at(Column::EnrolId)].parse().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(&records[2][at(Column::Company)], "'=ACME");

    let (status, head, json) = fetch(&site, &href(&browser, "a.download[data-format='json']").await, &cookie).await;
    assert_eq!(status, 200, "{head}");
    let json: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    let got: Vec<i64> = json.as_array().unwrap().iter().map(|r| r["enrolid"].as_i64().unwrap()).collect();
    assert_eq!(got, want);

    let (status, head, xlsx) = fetch(&site, &href(&browser, "a.download[data-format='xlsx']").await, &cookie).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("semco-enrolreport.xlsx"), "{head}");
    let cells = xlsx_cells(&xlsx);
    let got: Vec<i64> = cells[1..].iter().map(|r| r[at(Column::EnrolId)].parse().unwrap()).collect();
    assert_eq!(got, want);

    // Without a session the downloads, like the page, go to the sign-in.
    let (status, head, _) = fetch(&site, "/report.csv", "x=y").await;
    assert_eq!(status, 303, "{head}");
    browser.close().await;
}

crate::on_both_backends!(report_page_filters_sorts_pages_and_downloads);
