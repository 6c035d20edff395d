//! The read-only audit API under `/api/v1/` through the real router: bearer authorisation by
//! service, the events feed paged by position without gaps (also while writes go on), history,
//! as-of, verification, checkpoints and proofs; every answer validated against the OpenAPI
//! document the server serves (`/api/v1/openapi.json`), and the rendered reference page.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use enrol_ledger::api::services;
use enrol_ledger::store::Backend;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::http::Api;
use crate::on_both_backends;
use crate::support::*;

/// The OpenAPI document (the same for every router: generated from the code).
fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(enrol_ledger::api::openapi::document)
}

/// The document's path template that `path` (without its query) matches.
fn template_of(path: &str) -> String {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    let paths = document()["paths"].as_object().unwrap();
    paths
        .keys()
        .find(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
        })
        .unwrap_or_else(|| panic!("{path}: not in the OpenAPI document"))
        .clone()
}

/// Checks `body` against the schema the document gives for `method path` answering `status`
/// (JSON Schema 2020-12, the dialect of OpenAPI 3.1; `$ref`s resolved inside the document).
pub fn validate(method: &str, path: &str, status: StatusCode, body: &Value) {
    let template = template_of(path);
    let operation = &document()["paths"][&template][method];
    assert!(operation.is_object(), "{method} {template}: not in the OpenAPI document");
    let response = &operation["responses"][status.as_str()];
    assert!(response.is_object(), "{method} {template}: status {status} is not documented");
    let schema = response.pointer("/content/application~1json/schema").expect("a JSON body schema");
    let mut root = schema.as_object().unwrap().clone();
    root.insert("$schema".into(), json!("https://json-schema.org/draft/2020-12/schema"));
    root.insert("components".into(), document()["components"].clone());
    let root = Value::Object(root);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("{method} {template}: the document's schema does not compile: {e}"));
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {path} ({status}) does not match the document: {errors:#?}\n{body}");
}

/// Sends `method path` with an optional bearer token; status and JSON body, the body checked
/// against the OpenAPI document.
pub async fn send(api: &Api, method: &str, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method.to_uppercase().as_str()).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = api.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(content_type.as_deref(), Some("application/json"), "{path}: {}", String::from_utf8_lossy(&bytes));
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{path}: not JSON"));
    validate(method, path, status, &body);
    (status, body)
}

/// GETs `path` (see `send`).
pub async fn get(api: &Api, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    send(api, "get", path, token).await
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

/// Positions are assigned by the single writer in commit order, so a reader paging by
/// `after = next_after` while four writers append sees every event exactly once, in order.
async fn audit_api_paging_while_writes_go_on_sees_every_event_once(backend: Backend) {
    let api = Api::new(backend).await;
    let audit = api.token(services::LEDGER_AUDIT).await;
    let ledger = api.ledger.clone();
    let course = create_course(&ledger, "audit-live", true).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for i in 0..12 {
                    let user = create_user(&ledger, &format!("live{w}-{i}")).await;
                    enrol(&ledger, user, course, &format!("LIVE-{w}-{i}"), 0, 0).await;
                }
            })
        })
        .collect();
    let (mut after, mut seen, mut pages_during_writes) = (0i64, Vec::new(), 0);
    loop {
        let finished = writers.iter().all(|w| w.is_finished());
        let (status, body) = get(&api, &format!("/api/v1/events?after={after}&limit=5"), Some(&audit)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let events = body["events"].as_array().unwrap();
        seen.extend(events.iter().map(|e| e["position"].as_i64().unwrap()));
        after = body["next_after"].as_i64().unwrap();
        if !finished {
            pages_during_writes += 1;
        } else if events.is_empty() {
            break;
        }
        if events.is_empty() {
            tokio::task::yield_now().await;
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let (head, _) = enrol_ledger::store::log::head(&api.test.db).await.unwrap();
    assert!(pages_during_writes > 1, "the reader paged while the writers wrote");
    assert_eq!(seen, (1..=head).collect::<Vec<_>>(), "every position exactly once, in order");
}

/// `GET /api/v1/verification` is the last recorded run; `POST /api/v1/verify` runs one and
/// records it, and refuses (409) while another runs for the same ledger.
async fn audit_api_verifies_records_and_runs_one_at_a_time(backend: Backend) {
    let api = Api::new(backend).await;
    let audit = api.token(services::LEDGER_AUDIT).await;
    let ledger = api.ledger.clone();
    let course = create_course(&ledger, "audit-verify", true).await;
    let user = create_user(&ledger, "verify-vera").await;
    enrol(&ledger, user, course, "VERIFY-1", 0, 0).await;
    let (status, body) = get(&api, "/api/v1/verification", Some(&audit)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("notfound")));
    let (status, body) = send(&api, "post", "/api/v1/verify", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    let (status, run) = send(&api, "post", "/api/v1/verify", Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let (head, _) = enrol_ledger::store::log::head(&api.test.db).await.unwrap();
    assert_eq!(run["record"]["ok"], true, "{run}");
    assert_eq!(run["record"]["source"], "api");
    assert_eq!(run["record"]["log_length"], head);
    assert_eq!(run["chain_intact"], true);
    let (status, last) = get(&api, "/api/v1/verification", Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{last}");
    for key in ["finished_at", "ok", "mismatches", "log_length", "head_position", "source"] {
        assert_eq!(last[key], run["record"][key], "{key}");
    }

    let slot = enrol_ledger::api::audit_integrity::VerifySlot::take(&api.test.db.url).expect("no run holds it");
    let (status, body) = send(&api, "post", "/api/v1/verify", Some(&audit)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("verificationrunning")));
    drop(slot);
    let (status, _) = send(&api, "post", "/api/v1/verify", Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "free again once the run ends");
}

/// Checkpoints (list, latest, public key) and proofs: the API's proofs are the `prove` CLI's
/// JSON, and `check-proof` accepts them with the public key alone.
async fn audit_api_serves_checkpoints_and_proofs_that_check_proof_accepts(backend: Backend) {
    let api = Api::new(backend).await;
    let audit = api.token(services::LEDGER_AUDIT).await;
    let ledger = api.ledger.clone();
    let db = api.test.db.clone();
    let dir = tempfile::tempdir().unwrap();
    let key = enrol_ledger::proof::LedgerKey::open_or_create(&dir.path().join("k.signing-key"), &[]).unwrap();
    let file = dir.path().join("k.checkpoints.jsonl");
    let (status, body) = get(&api, "/api/v1/checkpoints/latest", Some(&audit)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("notfound")));
    let (status, _) = get(&api, "/api/v1/checkpoints/public-key", Some(&audit)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let course = create_course(&ledger, "audit-proof", true).await;
    let user = create_user(&ledger, "proof-pia").await;
    enrol(&ledger, user, course, "PROOF-1", 0, 0).await;
    let first = enrol_ledger::proof::store::checkpoint_now(&db, &key, &file).await.unwrap();
    let other = create_user(&ledger, "proof-paul").await;
    enrol(&ledger, other, course, "PROOF-2", 0, 0).await;
    let second = enrol_ledger::proof::store::checkpoint_now(&db, &key, &file).await.unwrap();
    assert!(second.position > first.position);

    let (status, page) = get(&api, "/api/v1/checkpoints?limit=1", Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["checkpoints"][0]["position"], first.position);
    assert_eq!(page["next_after"], first.position);
    let (_, page) = get(&api, &format!("/api/v1/checkpoints?after={}", first.position), Some(&audit)).await;
    assert_eq!(page["checkpoints"].as_array().unwrap().len(), 1);
    assert_eq!(page["checkpoints"][0], serde_json::to_value(&second).unwrap());
    let (status, latest) = get(&api, "/api/v1/checkpoints/latest", Some(&audit)).await;
    assert_eq!((status, latest), (StatusCode::OK, serde_json::to_value(&second).unwrap()));
    let (status, public) = get(&api, "/api/v1/checkpoints/public-key", Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{public}");
    assert_eq!(public["public_key"], key.public_hex());
    assert_eq!(public["key_id"], key.key_id());

    let position = first.position - 1;
    let path = format!("/api/v1/proofs/inclusion?position={position}&checkpoint={}", second.position);
    let (status, inclusion) = get(&api, &path, Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{inclusion}");
    let mut conn = db.pool.acquire().await.unwrap();
    let cli_same = enrol_ledger::proof::check::prove_inclusion(&mut conn, position, &second).await.unwrap();
    assert_eq!(inclusion, serde_json::to_value(&cli_same).unwrap(), "the prove CLI's JSON");
    let path = format!("/api/v1/proofs/consistency?from={}&to={}", first.position, second.position);
    let (status, consistency) = get(&api, &path, Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{consistency}");
    let cli_same = enrol_ledger::proof::check::prove_consistency(&mut conn, &first, &second).await.unwrap();
    assert_eq!(consistency, serde_json::to_value(&cli_same).unwrap());
    drop(conn);
    for (name, proof) in [("inclusion", &inclusion), ("consistency", &consistency)] {
        let proof_file = dir.path().join(format!("{name}.json"));
        std::fs::write(&proof_file, proof.to_string()).unwrap();
        let args = ["check-proof", proof_file.to_str().unwrap(), "--public-key", &key.public_hex()];
        let out = cli_stdout(&api.test.url, &args).await;
        assert!(out.contains("proof OK"), "{name}: {out}");
    }
    let (status, latest_default) =
        get(&api, &format!("/api/v1/proofs/inclusion?position={position}"), Some(&audit)).await;
    assert_eq!((status, latest_default), (StatusCode::OK, inclusion), "checkpoint defaults to the newest");

    for (bad, expected) in [
        ("/api/v1/proofs/inclusion", StatusCode::BAD_REQUEST),
        ("/api/v1/proofs/inclusion?position=0", StatusCode::BAD_REQUEST),
        ("/api/v1/proofs/inclusion?position=abc", StatusCode::BAD_REQUEST),
        (
            &format!("/api/v1/proofs/inclusion?position={}&checkpoint={}", second.position, first.position),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/proofs/inclusion?position=1&checkpoint=999999", StatusCode::NOT_FOUND),
        ("/api/v1/proofs/consistency", StatusCode::BAD_REQUEST),
        (
            &format!("/api/v1/proofs/consistency?from={}&to={}", second.position, first.position),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/proofs/consistency?from=999999", StatusCode::NOT_FOUND),
        ("/api/v1/checkpoints?limit=0", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = get(&api, bad, Some(&audit)).await;
        assert_eq!(status, expected, "{bad}: {body}");
    }
    let (status, _) = get(&api, "/api/v1/checkpoints", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The verification compares the log with both checkpoints, signatures checked with the
    // recorded key.
    let (status, run) = send(&api, "post", "/api/v1/verify", Some(&audit)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!((run["record"]["ok"].as_bool(), run["checkpoints_checked"].as_i64()), (Some(true), Some(2)), "{run}");
}

/// The document is OpenAPI 3.1, generated from the code, public, and lists every audit route;
/// the reference page renders every path, parameter and schema from it.
async fn audit_api_document_and_reference_page_cover_every_path(backend: Backend) {
    let api = Api::new(backend).await;
    let response =
        api.router.clone().oneshot(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "public, no token");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let served: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&served, document());
    assert_eq!(served["openapi"], "3.1.0");
    let mut paths: Vec<&str> = served["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/v1/as-of",
            "/api/v1/checkpoints",
            "/api/v1/checkpoints/latest",
            "/api/v1/checkpoints/public-key",
            "/api/v1/events",
            "/api/v1/health",
            "/api/v1/history/bookings/{id}",
            "/api/v1/history/courses/{id}",
            "/api/v1/history/users/{id}",
            "/api/v1/proofs/consistency",
            "/api/v1/proofs/inclusion",
            "/api/v1/report",
            "/api/v1/verification",
            "/api/v1/verify",
        ]
    );
    assert_eq!(served["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    // The validator does refuse what the document does not allow.
    for wrong in
        [json!({"after": "0", "next_after": 0, "events": []}), json!({"after": 0, "events": [{"position": 1}]})]
    {
        let refused = std::panic::catch_unwind(|| validate("get", "/api/v1/events", StatusCode::OK, &wrong));
        assert!(refused.is_err(), "{wrong} must not validate");
    }

    let response = api.router.clone().oneshot(Request::get("/api/v1/docs").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(!html.contains("<script"), "no script");
    for (path, item) in served["paths"].as_object().unwrap() {
        assert!(
            html.contains(&format!("{} {path}", item.as_object().unwrap().keys().next().unwrap().to_uppercase())),
            "{path}"
        );
        for op in item.as_object().unwrap().values() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap();
                assert!(html.contains(&format!("<code>{name}</code>")), "{path}: parameter {name}");
            }
            for status in op["responses"].as_object().unwrap().keys() {
                assert!(html.contains(&format!("<th scope=\"row\">{status}</th>")), "{path}: response {status}");
            }
        }
    }
    for schema in served["components"]["schemas"].as_object().unwrap().keys() {
        assert!(html.contains(&format!("id=\"schema-{schema}\"")), "schema {schema}");
    }
}

on_both_backends!(
    audit_api_refuses_without_an_audit_or_admin_token,
    audit_api_pages_every_event_once_in_order,
    audit_api_answers_history_and_as_of_as_the_cli_does,
    audit_api_paging_while_writes_go_on_sees_every_event_once,
    audit_api_verifies_records_and_runs_one_at_a_time,
    audit_api_serves_checkpoints_and_proofs_that_check_proof_accepts,
    audit_api_document_and_reference_page_cover_every_path
);
