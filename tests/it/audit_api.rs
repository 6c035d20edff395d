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

on_both_backends!(audit_api_refuses_without_an_audit_or_admin_token, audit_api_pages_every_event_once_in_order);
