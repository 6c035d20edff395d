//! The read-only audit API under `/api/v1/` through the real router: bearer authorisation by
//! service, and the events feed paged by position without gaps.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use enrol_ledger::api::services;
use enrol_ledger::store::Backend;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::http::Api;
use crate::on_both_backends;
use crate::support::*;

/// GETs `path` with an optional bearer token; status and JSON body.
pub async fn get(api: &Api, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = api.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(content_type.as_deref(), Some("application/json"), "{path}: {}", String::from_utf8_lossy(&bytes));
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{path}: not JSON")))
}

async fn audit_api_refuses_without_an_audit_or_admin_token(backend: Backend) {
    let api = Api::new(backend).await;
    let semco = api.token(services::ENROL_SEMCO).await;
    let audit = api.token(services::LEDGER_AUDIT).await;
    let admin = api.token(services::LEDGER_ADMIN).await;
    let (status, body) = get(&api, "/api/v1/events", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalidtoken")));
    let (status, _) = get(&api, "/api/v1/events", Some("not-a-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&api, "/api/v1/events", Some(&semco)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("accessexception")));
    for token in [&audit, &admin] {
        let (status, body) = get(&api, "/api/v1/events", Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["events"].is_array());
    }
    let (status, body) = get(&api, "/api/v1/events?limit=0", Some(&audit)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidparameter")));
    let (status, _) = get(&api, "/api/v1/events?after=abc", Some(&audit)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

async fn audit_api_pages_every_event_once_in_order(backend: Backend) {
    let api = Api::new(backend).await;
    let audit = api.token(services::LEDGER_AUDIT).await;
    let ledger = api.ledger.clone();
    let course = create_course(&ledger, "audit-feed", true).await;
    for i in 0..7 {
        let user = create_user(&ledger, &format!("feed{i}")).await;
        enrol(&ledger, user, course, &format!("FEED-{i}"), 0, 0).await;
    }
    let (head, _) = enrol_ledger::store::log::head(&api.test.db).await.unwrap();
    let (mut after, mut seen) = (0, Vec::new());
    loop {
        let (status, body) = get(&api, &format!("/api/v1/events?after={after}&limit=3"), Some(&audit)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = body["events"].as_array().unwrap();
        if events.is_empty() {
            assert_eq!(body["next_after"], after);
            break;
        }
        assert!(events.len() <= 3);
        seen.extend(events.iter().map(|e| e["position"].as_i64().unwrap()));
        after = body["next_after"].as_i64().unwrap();
    }
    assert_eq!(seen, (1..=head).collect::<Vec<_>>(), "every position once, in order");
}

/// What the CLI prints on stdout for these arguments (it must succeed).
async fn cli_stdout(url: &str, args: &[&str]) -> String {
    let (url, owned): (String, Vec<String>) = (url.to_owned(), args.iter().map(|a| (*a).to_owned()).collect());
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        run_cli(&url, &args)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// The CLI's JSON answer (`as-of --format json`).
async fn cli_json(url: &str, args: &[&str]) -> Value {
    serde_json::from_str(&cli_stdout(url, args).await).unwrap_or_else(|_| panic!("{args:?}: not JSON"))
}

/// The CLI's JSON lines (`history --format json` prints one entry per line), as an array.
async fn cli_json_lines(url: &str, args: &[&str]) -> Value {
    let text = cli_stdout(url, args).await;
    Value::Array(text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect())
}

async fn audit_api_answers_history_and_as_of_as_the_cli_does(backend: Backend) {
    let api = Api::new(backend).await;
    let audit = api.token(services::LEDGER_AUDIT).await;
    let ledger = api.ledger.clone();
    let course = create_course(&ledger, "audit-asof", true).await;
    let user = create_user(&ledger, "asof-anna").await;
    let future = chrono::Utc::now().timestamp() + 5 * 365 * 86_400;
    enrol(&ledger, user, course, "API-NOW", 0, 0).await;
    let later = create_course(&ledger, "audit-asof-2", true).await;
    enrol(&ledger, user, later, "API-LATER", future, 0).await;
    let url = api.test.url.clone();

    for (path, args) in [
        (
            "/api/v1/history/bookings/API-NOW".to_owned(),
            vec!["history".to_owned(), "--booking".into(), "API-NOW".into()],
        ),
        (format!("/api/v1/history/users/{user}"), vec!["history".into(), "--user".into(), user.to_string()]),
        (format!("/api/v1/history/courses/{course}"), vec!["history".into(), "--course".into(), course.to_string()]),
    ] {
        let (status, body) = get(&api, &path, Some(&audit)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["--format", "json"]);
        assert_eq!(body["entries"], cli_json_lines(&url, &args).await, "{path} answers what the CLI answers");
        assert!(!body["entries"].as_array().unwrap().is_empty(), "{path}");
    }
    let (status, body) = get(&api, "/api/v1/history/bookings/NO-SUCH-BOOKING", Some(&audit)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("notfound")));
    let (status, _) = get(&api, "/api/v1/history/users/abc", Some(&audit)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Who is active now in the user's courses: the enrolment starting in five years is not.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!("/api/v1/as-of?user={user}&active_on={now}");
    let (status, body) = get(&api, &path.replace('+', "%2B"), Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cli = cli_json(&url, &["as-of", "--user", &user.to_string(), "--active-on", &now, "--format", "json"]).await;
    assert_eq!(body, cli, "as-of answers what the CLI answers");
    let active: Vec<&str> =
        body["enrolments"].as_array().unwrap().iter().filter_map(|e| e["semcobookingid"].as_str()).collect();
    assert_eq!(active, ["API-NOW"], "only the enrolment that has begun is active now: {body}");
    let (status, body) = get(&api, &format!("/api/v1/as-of?course={course}&position=0"), Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        cli_json(&url, &["as-of", "--course", &course.to_string(), "--position", "0", "--format", "json"]).await
    );
    for bad in ["/api/v1/as-of", "/api/v1/as-of?course=1&user=2", "/api/v1/as-of?course=1&known_at=yesterday"] {
        let (status, body) = get(&api, bad, Some(&audit)).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalidparameter")), "{bad}");
    }
    let (status, _) = get(&api, &format!("/api/v1/as-of?course={course}"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

on_both_backends!(
    audit_api_refuses_without_an_audit_or_admin_token,
    audit_api_pages_every_event_once_in_order,
    audit_api_answers_history_and_as_of_as_the_cli_does
);
