//! The SEMCO enrolment report (issue 11 item 2) on both backends: each filter, every column as
//! sort key with keyset paging both ways, "as known at" a log position, the downloads
//! (CSV, JSON, XLSX) of exactly the filtered rows, and `/api/v1/report`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use enrol_ledger::api::report_api::{self, Format};
use enrol_ledger::api::services;
use enrol_ledger::app::command::UserInput;
use enrol_ledger::app::report::{self, Column, Direction, DisplaySettings, ReportParams, ReportRow};
use enrol_ledger::app::Request;
use enrol_ledger::domain::completion::GradeInput;
use enrol_ledger::registry::{NewUser, UserUpdate};
use enrol_ledger::store::{Backend, Db};
use http_body_util::BodyExt;

use crate::audit_api::get;
use crate::http::Api;
use crate::on_both_backends;
use crate::support::*;

/// 2026-01-01, 2026-02-01 and 2026-03-01 00:00 UTC.
pub const JAN: i64 = 1_767_225_600;
pub const FEB: i64 = 1_769_904_000;
pub const MAR: i64 = 1_772_323_200;

/// A small report: two courses, four users (one suspended, one deleted), five enrolments (one
/// suspended), one completion with a grade.
pub struct Fixture {
    pub course_a: i64,
    pub course_b: i64,
    pub users: [i64; 4],
    /// e1 Ann in A (Jan–Feb, completed 87.5), e2 Ann in B (open), e3 Bob in A (suspended, from
    /// Mar), e4 Cid in B (user suspended), e5 Dee in A (user deleted).
    pub enrolids: [i64; 5],
    /// The log position right after e2 was recorded.
    pub position_after_e2: i64,
}

pub async fn person(
    ledger: &enrol_ledger::app::Ledger,
    username: &str,
    first: &str,
    last: &str,
    email: &str,
    profile: &[(&str, &str)],
) -> i64 {
    let input = UserInput {
        user: NewUser {
            username: username.into(),
            auth: "manual".into(),
            firstname: first.into(),
            lastname: last.into(),
            email: email.into(),
            lang: "en".into(),
            profile: profile.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            ..NewUser::default()
        },
        password_given: false,
        createpassword: true,
    };
    submit(ledger, Request::CreateUsers(vec![input])).await.expect("create user").created[0].0
}

pub async fn fixture(ledger: &enrol_ledger::app::Ledger, db: &Db) -> Fixture {
    let course_a = create_course(ledger, "alpha", true).await;
    let course_b = create_course(ledger, "beta", true).await;
    let ann = person(
        ledger,
        "ann",
        "Ann",
        "Archer",
        "ann@example.org",
        &[
            ("semco_userid", "S-1"),
            ("semco_usercompany", "=ACME"),
            ("semco_userbirthday", "1990-01-01"),
            ("semco_userplaceofbirth", "Berlin"),
            ("semco_branchtoken", "T1"),
        ],
    )
    .await;
    let bob = person(
        ledger,
        "bob",
        "Bob",
        "Baker",
        "bob@test.net",
        &[("semco_userid", "S-2"), ("semco_usercompany", "Beta GmbH"), ("semco_branchtoken", "T2")],
    )
    .await;
    let cid = person(ledger, "cid", "Cid", "Archer", "cid@example.org", &[("semco_userid", "S-3")]).await;
    let dee = person(ledger, "dee", "Dee", "Dunn", "dee@example.org", &[("semco_userid", "S-4")]).await;
    let e1 = enrol(ledger, ann, course_a, "BK-1", JAN, FEB).await;
    let e2 = enrol(ledger, ann, course_b, "BK-2", 0, 0).await;
    let position_after_e2: i64 =
        sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(&db.pool).await.unwrap();
    let suspended = Request::Enrol {
        user_id: bob,
        course_id: course_a,
        booking_id: "BK-3".into(),
        timestart: MAR,
        timeend: 0,
        suspend: true,
        require_recompletion: false,
    };
    let e3 = submit(ledger, suspended).await.expect("enrol suspended").enrolid;
    let e4 = enrol(ledger, cid, course_b, "BK-4", 0, 0).await;
    let e5 = enrol(ledger, dee, course_a, "BK-5", 0, 0).await;
    let grade = GradeInput { finalgrade: Some(87.5), ..GradeInput::default() };
    let completion =
        Request::RecordCompletion { user_id: ann, course_id: course_a, timecompleted: JAN + 86_400, grade };
    submit(ledger, completion).await.expect("completion");
    let suspend = UserUpdate { id: cid, suspended: Some(true), ..UserUpdate::default() };
    submit(ledger, Request::UpdateUsers(vec![suspend])).await.expect("suspend cid");
    submit(ledger, Request::DeleteUsers(vec![dee])).await.expect("delete dee");
    Fixture { course_a, course_b, users: [ann, bob, cid, dee], enrolids: [e1, e2, e3, e4, e5], position_after_e2 }
}

pub fn params(pairs: &[(&str, String)]) -> ReportParams {
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    serde_json::from_value(serde_json::to_value(map).unwrap()).unwrap()
}

const DEFAULT_SORT: (Column, Direction) = (Column::EnrolId, Direction::Asc);

async fn rows(db: &Db, pairs: &[(&str, String)]) -> Vec<ReportRow> {
    let mut query = params(pairs).parse(DEFAULT_SORT).expect("valid parameters");
    query.page_size = report::PAGE_SIZE_MAX;
    report::page(db, &query).await.expect("report page").rows
}

async fn ids(db: &Db, pairs: &[(&str, String)]) -> Vec<i64> {
    rows(db, pairs).await.iter().map(|r| r.enrolid).collect()
}

/// The filter cases every surface checks (the page's browser test too): parameters → the
/// fixture's enrolments (indexes into `enrolids`).
/// Query parameters and the fixture's enrolments (indexes into `enrolids`) they select.
pub type FilterCase = (Vec<(&'static str, String)>, Vec<usize>);

pub fn filter_cases(f: &Fixture) -> Vec<FilterCase> {
    let s = |v: &str| v.to_owned();
    vec![
        (vec![], vec![0, 1, 2, 3]),
        (vec![("email", s("EXAMPLE.org"))], vec![0, 1, 3]),
        (vec![("semcouserid", s("S-2"))], vec![2]),
        (vec![("bookingid", s("BK-4"))], vec![3]),
        (vec![("course", f.course_a.to_string())], vec![0, 2]),
        (vec![("user", f.users[0].to_string())], vec![0, 1]),
        (vec![("enrolstatus", s("suspended"))], vec![2]),
        (vec![("enrolstatus", s("active"))], vec![0, 1, 3]),
        (vec![("completionstatus", s("completed"))], vec![0]),
        (vec![("completionstatus", s("notcompleted"))], vec![1, 2, 3]),
        (vec![("tifirst", s("B"))], vec![2]),
        (vec![("tilast", s("A"))], vec![0, 1, 3]),
        (vec![("active_on", s("2026-01-15"))], vec![0, 1]),
        (vec![("from", s("2026-02-15")), ("to", s("2026-02-20"))], vec![1, 3]),
        (vec![("position", f.position_after_e2.to_string())], vec![0, 1]),
        (vec![("course", f.course_b.to_string()), ("tilast", s("A"))], vec![1, 3]),
    ]
}

// Issue 11 item 2: each filter narrows the report to exactly its rows; deleted users and
// other enrolment methods never appear.
async fn report_filters_by_each_filter(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let f = fixture(&ledger, &test.db).await;
    for (pairs, expected) in filter_cases(&f) {
        let want: Vec<i64> = expected.iter().map(|&i| f.enrolids[i]).collect();
        assert_eq!(ids(&test.db, &pairs).await, want, "{pairs:?}");
    }
    // The same in the past: as known after e2, active on a date, and by a course.
    let at = f.position_after_e2.to_string();
    let past = ids(&test.db, &[("position", at.clone()), ("course", f.course_b.to_string())]).await;
    assert_eq!(past, vec![f.enrolids[1]]);
    // With "as known at", active on a date is `app::asof`'s answer: the log as it stood then
    // (these events were all recorded after 2026-02-15, so nobody was enrolled yet).
    let past = ids(&test.db, &[("position", at.clone()), ("active_on", "2026-02-15".into())]).await;
    assert_eq!(past, Vec::<i64>::new());
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let past = ids(&test.db, &[("position", at.clone()), ("active_on", today)]).await;
    assert!(past.is_empty() || past == vec![f.enrolids[1]], "{past:?}");
    let past = ids(&test.db, &[("known_at", "2000-01-01T00:00:00Z".into())]).await;
    assert!(past.is_empty());
    // Every column of a row, with the profile fields and the completion.
    let ann = rows(&test.db, &[("bookingid", "BK-1".into())]).await.remove(0);
    assert_eq!(
        (ann.semcouserid.as_deref(), ann.company.as_deref(), ann.birthday.as_deref()),
        (Some("S-1"), Some("=ACME"), Some("1990-01-01"))
    );
    assert_eq!((ann.placeofbirth.as_deref(), ann.tenant.as_deref()), (Some("Berlin"), Some("T1")));
    assert_eq!((ann.timecompleted, ann.grade), (Some(JAN + 86_400), Some(87.5)));
    assert_eq!((ann.enrolstart, ann.enrolend, ann.course.as_str()), (JAN, FEB, "Course alpha"));
    let cid = rows(&test.db, &[("bookingid", "BK-4".into())]).await.remove(0);
    assert!(cid.user_suspended && !cid.enrol_suspended);
    // The past rows equal the present where nothing changed since.
    let now = rows(&test.db, &[("user", f.users[0].to_string())]).await;
    let head: i64 = sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(&test.db.pool).await.unwrap();
    let then = rows(&test.db, &[("user", f.users[0].to_string()), ("position", head.to_string())]).await;
    assert_eq!(now, then);
}

/// Walks every page of one sort forwards, checks that each page's "previous" cursor gives the
/// page before it, and returns the enrolids in page order.
async fn walk(db: &Db, sort: &str, dir: &str, page_size: i64) -> Vec<i64> {
    let base = vec![("sort", sort.to_owned()), ("dir", dir.to_owned()), ("page_size", page_size.to_string())];
    let fetch = |cursor: Option<String>| {
        let mut pairs = base.clone();
        if let Some(c) = cursor {
            pairs.push(("cursor", c));
        }
        async move { report::page(db, &params(&pairs).parse(DEFAULT_SORT).unwrap()).await.unwrap() }
    };
    let mut pages: Vec<report::Page> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = fetch(cursor.take()).await;
        assert_eq!(page.prev.is_some(), !pages.is_empty(), "{sort} {dir}: a previous page only after the first");
        let next = page.next.clone();
        pages.push(page);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages.len() < 50, "paging does not end");
    }
    let ids = |page: &report::Page| page.rows.iter().map(|r| r.enrolid).collect::<Vec<_>>();
    for i in 1..pages.len() {
        let back = fetch(pages[i].prev.clone()).await;
        assert_eq!(ids(&back), ids(&pages[i - 1]), "{sort} {dir}: back from page {i}");
        assert_eq!(back.prev.is_some(), i > 1, "{sort} {dir}: page {} has a previous page", i - 1);
        assert!(back.next.is_some());
    }
    pages.iter().flat_map(ids).collect()
}

// Issue 11 item 2: every column is sortable both ways; keyset pages cover every row once, in
// the order of one big page, and "previous" goes back exactly one page.
async fn report_sorts_by_every_column_and_pages_by_cursor(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let f = fixture(&ledger, &test.db).await;
    // More rows with ties on every column.
    for i in 0..5 {
        let user = person(&ledger, &format!("extra{i}"), "Ann", "Archer", &format!("same{i}@example.org"), &[]).await;
        enrol(&ledger, user, f.course_a, &format!("X-{i}"), 0, 0).await;
    }
    let all = ids(&test.db, &[]).await;
    assert_eq!(all.len(), 9);
    for &column in Column::ALL {
        for dir in ["asc", "desc"] {
            let whole = ids(&test.db, &[("sort", column.as_str().into()), ("dir", dir.into())]).await;
            let mut sorted = whole.clone();
            sorted.sort();
            assert_eq!(sorted, all, "{column:?} {dir}: every row once");
            let paged = walk(&test.db, column.as_str(), dir, 2).await;
            assert_eq!(paged, whole, "{column:?} {dir}: pages in the order of one page");
        }
    }
    // Integer keys are in order, ties broken by enrolid in the sort's direction.
    let by_start = rows(&test.db, &[("sort", "enrolstart".into()), ("dir", "desc".into())]).await;
    let keys: Vec<(i64, i64)> = by_start.iter().map(|r| (r.enrolstart, r.enrolid)).collect();
    let mut want = keys.clone();
    want.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, want);
    // The past pages the same way.
    let head: i64 = sqlx::query_scalar("SELECT MAX(position) FROM events").fetch_one(&test.db.pool).await.unwrap();
    let mut cursor = None;
    let mut seen = Vec::new();
    loop {
        let mut pairs = vec![("position", head.to_string()), ("sort", "lastname".into()), ("page_size", "4".into())];
        if let Some(c) = cursor.take() {
            pairs.push(("cursor", c));
        }
        let page = report::page(&test.db, &params(&pairs).parse(DEFAULT_SORT).unwrap()).await.unwrap();
        assert_eq!(page.known_position, Some(head));
        seen.extend(page.rows.iter().map(|r| r.enrolid));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, all);
}

async fn body_bytes(response: axum::response::Response) -> (StatusCode, BTreeMap<String, String>, Vec<u8>) {
    let status = response.status();
    let headers =
        response.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    (status, headers, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// The cells of an XLSX file's first sheet, row by row (shared or inline strings, numbers).
pub fn xlsx_cells(bytes: &[u8]) -> Vec<Vec<String>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("an XLSX is a zip file");
    let mut read = |name: &str| -> Option<String> {
        let mut file = archive.by_name(name).ok()?;
        let mut text = String::new();
        file.read_to_string(&mut text).ok()?;
        Some(text)
    };
    let shared_xml = read("xl/sharedStrings.xml");
    let sheet_xml = read("xl/worksheets/sheet1.xml").expect("sheet1");
    let shared: Vec<String> = shared_xml
        .map(|xml| {
            let doc = roxmltree::Document::parse(&xml).unwrap();
            doc.descendants()
                .filter(|n| n.has_tag_name("si"))
                .map(|si| si.descendants().filter(|n| n.has_tag_name("t")).filter_map(|t| t.text()).collect())
                .collect()
        })
        .unwrap_or_default();
    let doc = roxmltree::Document::parse(&sheet_xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("row"))
        .map(|row| {
            row.children()
                .filter(|c| c.has_tag_name("c"))
                .map(|c| {
                    let value = || c.children().find(|v| v.has_tag_name("v")).and_then(|v| v.text()).unwrap_or("");
                    match c.attribute("t") {
                        Some("s") => shared[value().parse::<usize>().unwrap()].clone(),
                        Some("inlineStr") => {
                            c.descendants().filter(|n| n.has_tag_name("t")).filter_map(|t| t.text()).collect()
                        }
                        _ => value().to_owned(),
                    }
                })
                .collect()
        })
        .collect()
}

// Issue 11 item 2: the downloads hold exactly the filtered rows in the report's sort, with
// the CSV's formula-like cells neutralised.
async fn report_downloads_hold_exactly_the_filtered_rows(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let f = fixture(&ledger, &test.db).await;
    let settings = DisplaySettings::default();
    let query = params(&[("email", "example.org".into()), ("sort", "enrolid".into()), ("dir", "desc".into())])
        .parse(DEFAULT_SORT)
        .unwrap();
    let want = [f.enrolids[3], f.enrolids[1], f.enrolids[0]];
    let download = |format| report_api::download(&test.db, query.filters.clone(), &settings, query.sort, format);

    let (status, headers, csv) = body_bytes(download(Format::Csv).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-disposition"], "attachment; filename=\"semco-enrolreport.csv\"");
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header, Column::ALL.iter().map(|c| c.header().to_owned()).collect::<Vec<_>>());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let at = |c: Column| Column::ALL.iter().position(|&x| x == c).unwrap();
    let got: Vec<i64> = records.iter().map(|r| r[at(Column::EnrolId)].parse().unwrap()).collect();
    assert_eq!(got, want);
    let ann = &records[2];
    assert_eq!(&ann[at(Column::Company)], "'=ACME", "formula neutralised");
    assert_eq!(&ann[at(Column::EnrolStart)], "01 January 2026, 12:00 AM");
    assert_eq!((&ann[at(Column::Grade)], &ann[at(Column::CompletionStatus)]), ("87.5", "Completed"));
    assert_eq!(&records[0][at(Column::Suspended)], "Suspended");

    let (_, headers, json) = body_bytes(download(Format::Json).await.unwrap()).await;
    assert_eq!(headers["content-disposition"], "attachment; filename=\"semco-enrolreport.json\"");
    let json: serde_json::Value = serde_json::from_slice(&json).expect("JSON download parses");
    let got: Vec<i64> = json.as_array().unwrap().iter().map(|r| r["enrolid"].as_i64().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(json[2]["company"], "=ACME");
    assert_eq!(json[2]["grade"], 87.5);
    assert_eq!(json[0]["suspended"], "suspended");

    let (_, headers, xlsx) = body_bytes(download(Format::Xlsx).await.unwrap()).await;
    assert_eq!(headers["content-disposition"], "attachment; filename=\"semco-enrolreport.xlsx\"");
    let cells = xlsx_cells(&xlsx);
    assert_eq!(cells[0][at(Column::EnrolId)], "Enrolment ID");
    let got: Vec<i64> = cells[1..].iter().map(|r| r[at(Column::EnrolId)].parse().unwrap()).collect();
    assert_eq!(got, want);
    // An empty download has its header only.
    let none = params(&[("bookingid", "NOPE".into())]).parse(DEFAULT_SORT).unwrap();
    let (_, _, csv) =
        body_bytes(report_api::download(&test.db, none.filters, &settings, none.sort, Format::Csv).await.unwrap())
            .await;
    assert_eq!(String::from_utf8(csv).unwrap().lines().count(), 1);
}

// Issue 11 item 7: `/api/v1/report` takes the page's filters, pages with `next`, and only
// audit and admin tokens may read it.
async fn report_api_pages_filtered_rows_for_audit_tokens(backend: Backend) {
    let api = Api::new(backend).await;
    let f = fixture(&api.ledger, &api.test.db).await;
    let audit = api.token(services::LEDGER_AUDIT).await;
    let admin = api.token(services::LEDGER_ADMIN).await;
    let semco = api.token(services::ENROL_SEMCO).await;
    let path = format!("/api/v1/report?course={}&page_size=1", f.course_a);
    let (status, _) = get(&api, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&api, &path, Some(&semco)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("accessexception")));
    let (status, body) = get(&api, &path, Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"].as_array().unwrap().len(), 1);
    assert_eq!(body["rows"][0]["enrolid"], f.enrolids[0]);
    assert_eq!(body["rows"][0]["semcobookingid"], "BK-1");
    assert_eq!(body["rows"][0]["completionstatus"], "completed");
    assert!(body["prev"].is_null());
    let next = body["next"].as_str().expect("a next page").to_owned();
    let (status, body) = get(&api, &format!("{path}&cursor={next}"), Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rows"][0]["enrolid"], f.enrolids[2]);
    assert!(body["next"].is_null());
    assert!(body["prev"].is_string());
    // As known at a position, and every filter the page has.
    let (_, body) =
        get(&api, &format!("/api/v1/report?position={}&sort=lastname&dir=desc", f.position_after_e2), Some(&audit))
            .await;
    assert_eq!(body["known_position"], f.position_after_e2);
    let got: Vec<i64> = body["rows"].as_array().unwrap().iter().map(|r| r["enrolid"].as_i64().unwrap()).collect();
    assert_eq!(got, vec![f.enrolids[1], f.enrolids[0]]);
    for (pairs, expected) in filter_cases(&f) {
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs.iter()).finish();
        let (status, body) = get(&api, &format!("/api/v1/report?{query}"), Some(&audit)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        let got: Vec<i64> = body["rows"].as_array().unwrap().iter().map(|r| r["enrolid"].as_i64().unwrap()).collect();
        assert_eq!(got, expected.iter().map(|&i| f.enrolids[i]).collect::<Vec<_>>(), "{query}");
    }
    for bad in
        ["sort=actions", "course=x", "page_size=501", "cursor=zz", "enrolstatus=gone", "from=2026-02-01&to=2026-01-01"]
    {
        let (status, body) = get(&api, &format!("/api/v1/report?{bad}"), Some(&audit)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidparameter")), "{bad}");
    }
}

on_both_backends!(
    report_filters_by_each_filter,
    report_sorts_by_every_column_and_pages_by_cursor,
    report_downloads_hold_exactly_the_filtered_rows,
    report_api_pages_filtered_rows_for_audit_tokens,
);
