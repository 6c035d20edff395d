//! Issue 8, "Not every change is an event": each registry change made through the real router
//! is an event of its user's or course's stream, with the actor and old → new values, and no
//! personal value in the log.

use enrol_ledger::store::log::{self, StoredEvent};
use enrol_ledger::store::Backend;

use crate::http::Api;
use crate::on_both_backends;

async fn all_events(api: &Api) -> Vec<StoredEvent> {
    let mut conn = api.test.db.pool.acquire().await.unwrap();
    log::read_after(&mut conn, 0, 10_000).await.unwrap()
}

fn payload(event: &StoredEvent) -> serde_json::Value {
    serde_json::from_str(&event.payload).unwrap()
}

fn of_stream<'a>(events: &'a [StoredEvent], stream_type: &str, key: &str) -> Vec<&'a StoredEvent> {
    events.iter().filter(|e| e.stream_type == stream_type && e.stream_key == key).collect()
}

async fn defect_not_every_change_is_an_event(backend: Backend) {
    let api = Api::new(backend).await;
    let (admin, semco) = (api.token("ledger_admin").await, api.token("enrol_semco").await);
    let course = "courses[0][fullname]=Safety+One&courses[0][shortname]=S1&courses[0][categoryid]=1";
    assert!(api.call(&admin, "core_course_create_courses", "json", course).await.contains(r#""id":2"#));
    let user = "users[0][username]=zoe.quist&users[0][firstname]=Zoe&users[0][lastname]=Quist\
                &users[0][email]=zoe.quist%40example.org&users[0][createpassword]=1\
                &users[0][customfields][0][type]=semco_userbirthday&users[0][customfields][0][value]=1971-03-04";
    assert!(api.call(&semco, "core_user_create_users", "json", user).await.contains(r#""id":4"#));
    let update = "users[0][id]=4&users[0][suspended]=1&users[0][auth]=nologin&users[0][lastname]=Quist-Berg";
    assert_eq!(api.call(&semco, "core_user_update_users", "json", update).await, r#"{"warnings":[]}"#);
    let flip = "courses[0][id]=2&courses[0][enablecompletion]=1&courses[0][fullname]=Safety+Two";
    assert_eq!(api.call(&admin, "core_course_update_courses", "json", flip).await, r#"{"warnings":[]}"#);
    let unchanged = "courses[0][id]=2&courses[0][shortname]=S1";
    assert_eq!(api.call(&admin, "core_course_update_courses", "json", unchanged).await, r#"{"warnings":[]}"#);
    assert_eq!(api.call(&semco, "core_user_delete_users", "json", "userids[0]=4").await, "null");

    let events = all_events(&api).await;
    // The installer's steps are events too.
    let install: Vec<String> =
        of_stream(&events, "install", "site").iter().map(|e| payload(e)["step"].as_str().unwrap().to_owned()).collect();
    assert_eq!(install, ["webservices", "role", "service_user", "service", "profile_fields", "semco_token"]);

    let user_stream = of_stream(&events, "user", "4");
    let types: Vec<&str> = user_stream.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["UserRegistered", "UserUpdated", "UserDeleted"]);
    assert!(user_stream.iter().all(|e| e.actor_user_id == Some(3) && e.actor_token_id.is_some()), "{user_stream:?}");
    let updated = payload(user_stream[1]);
    assert_eq!(updated["suspended"], serde_json::json!({"old": false, "new": true}));
    assert_eq!(updated["auth"], serde_json::json!({"old": "manual", "new": "nologin"}));
    assert_eq!(updated["fields"], serde_json::json!(["lastname"]));
    let versions: Vec<i64> = user_stream.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, [1, 2, 3]);

    let course_stream = of_stream(&events, "course", "2");
    let types: Vec<&str> = course_stream.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["CourseCreated", "CourseUpdated"], "an update that changes nothing is no event");
    assert!(course_stream.iter().all(|e| e.actor_user_id == Some(2) && e.actor_token_id.is_some()));
    let created = payload(course_stream[0]);
    assert_eq!(
        (created["record"]["shortname"].as_str(), created["record"]["enablecompletion"].as_bool()),
        (Some("S1"), Some(false))
    );
    let flipped = payload(course_stream[1]);
    assert_eq!(flipped["enablecompletion"], serde_json::json!({"old": false, "new": true}));
    assert_eq!(flipped["fullname"], serde_json::json!({"old": "Safety One", "new": "Safety Two"}));

    // No personal value of the user is anywhere in the log.
    let text: String = events.iter().map(|e| e.payload.clone()).collect();
    for personal in ["zoe", "Zoe", "Quist", "example.org", "1971"] {
        assert!(!text.contains(personal), "{personal} is in the log");
    }
    // The log still verifies and the writer's state loads from it (user stream versions).
    assert!(enrol_ledger::app::audit::verify(&api.test.db).await.unwrap().is_ok());
}

on_both_backends!(defect_not_every_change_is_an_event);
