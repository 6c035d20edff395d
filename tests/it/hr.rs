//! The HR/LMS integration functions (WS-CONTRACT.md §3.2b, service `ledger_hr`) through the real
//! router: success shapes and every error in Moodle's order, JSON and XML, both backends; the
//! completion-status failure of seed 004 ("criteria not defined") and its cure.

use enrol_ledger::api::services;
use enrol_ledger::store::Backend;

use crate::http::{json_error_as_xml, regex_lite_time, Api};

const XML_NULL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n</RESPONSE>\n";

/// WS-CONTRACT.md §3.2b, in site-info order.
pub const HR_FUNCTIONS: [&str; 12] = [
    "core_completion_get_course_completion_status",
    "core_course_get_courses",
    "core_enrol_get_enrolled_users",
    "core_enrol_get_users_courses",
    "core_user_create_users",
    "core_user_get_users",
    "core_user_get_users_by_field",
    "core_user_update_users",
    "core_webservice_get_site_info",
    "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users",
    "gradereport_overview_get_course_grades",
];
use crate::on_both_backends;

/// (service, function, format, params, expected body) in order on a fresh ledger: courses 2
/// (completion on) and 3 (off), users 4 (anna) and 5 (bert).
fn hr_table() -> Vec<(&'static str, &'static str, &'static str, String, String)> {
    let a = services::LEDGER_ADMIN;
    let h = services::LEDGER_HR;
    let user = |n: &str| {
        format!("users[0][username]={n}&users[0][firstname]=F&users[0][lastname]={n}&users[0][email]={n}%40example.org&users[0][createpassword]=1")
    };
    let enrol = |user: i64, course: i64, role: i64| {
        format!("enrolments[0][roleid]={role}&enrolments[0][userid]={user}&enrolments[0][courseid]={course}")
    };
    let moodle = |code: &str, message: &str| {
        format!(r#"{{"exception":"core\\exception\\moodle_exception","errorcode":"{code}","message":"{message}"}}"#)
    };
    let invalid = r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#.to_owned();
    let missing = |table: &str| {
        format!(
            r#"{{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table {table}."}}"#
        )
    };
    let status = |p: &str| format!("courseid={p}");
    let r = |s, f, fmt, p: String, e: String| (s, f, fmt, p, e);
    vec![
        r(a, "core_course_create_courses", "json", "courses[0][fullname]=Safety&courses[0][shortname]=SAFE&courses[0][categoryid]=1&courses[0][enablecompletion]=1".into(), r#"[{"id":2,"shortname":"SAFE"}]"#.into()),
        r(a, "core_course_create_courses", "json", "courses[0][fullname]=Intro&courses[0][shortname]=INTRO&courses[0][categoryid]=1".into(), r#"[{"id":3,"shortname":"INTRO"}]"#.into()),
        r(h, "core_user_create_users", "json", user("anna"), r#"[{"id":4,"username":"anna"}]"#.into()),
        r(h, "core_user_create_users", "json", user("bert"), r#"[{"id":5,"username":"bert"}]"#.into()),
        // enrol_manual_enrol_users: success (null), then each check in order.
        r(h, "enrol_manual_enrol_users", "json", enrol(4, 2, 5), "null".into()),
        r(h, "enrol_manual_enrol_users", "xml", enrol(4, 3, 5) + "&enrolments[0][timestart]=1000&enrolments[0][suspend]=1", XML_NULL.into()),
        r(h, "enrol_manual_enrol_users", "json", enrol(4, 99, 8), invalid.clone()),
        r(h, "enrol_manual_enrol_users", "json", enrol(4, 2, 8), moodle("wsusercannotassign", "You don't have the permission to assign this role (8) to this user (4) in this course (2).")),
        r(h, "enrol_manual_enrol_users", "json", enrol(99, 2, 5), invalid.clone()),
        r(h, "enrol_manual_enrol_users", "json", "enrolments[0][roleid]=5&enrolments[0][userid]=4".into(), invalid.clone()),
        // All or nothing: the second item fails, so bert is not enrolled in course 2 either.
        r(h, "enrol_manual_enrol_users", "json", enrol(5, 2, 5) + "&enrolments[1][roleid]=5&enrolments[1][userid]=5&enrolments[1][courseid]=99", invalid.clone()),
        // Reads.
        r(h, "core_enrol_get_enrolled_users", "json", "courseid=2".into(), r#"[{"id":4,"username":"anna","firstname":"F","lastname":"anna","fullname":"F anna","email":"anna@example.org","idnumber":"","firstaccess":0,"lastaccess":0,"lastcourseaccess":0,"profileimageurlsmall":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f12","profileimageurl":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f1"}]"#.into()),
        r(h, "core_enrol_get_enrolled_users", "json", "courseid=3&options[0][name]=onlyactive&options[0][value]=1".into(), "[]".into()),
        r(h, "core_enrol_get_enrolled_users", "json", "courseid=99".into(), moodle("errorcoursecontextnotvalid", "You cannot execute functions in the course context (course id:99). The error message was: Context does not exist")),
        r(h, "core_enrol_get_users_courses", "json", "userid=4".into(), r#"[{"id":2,"shortname":"SAFE","fullname":"Safety","displayname":"Safety","enrolledusercount":1,"idnumber":"","visible":1,"summary":"","summaryformat":1,"format":"topics","showgrades":true,"lang":"","enablecompletion":true,"completionhascriteria":false,"completionusertracked":true,"category":1,"progress":null,"completed":false,"startdate":0,"enddate":0,"marker":0,"lastaccess":null,"isfavourite":false,"hidden":false,"showactivitydates":true,"showcompletionconditions":true,"timemodified":TIME}]"#.into()),
        r(h, "core_course_get_courses", "json", "options[ids][0]=3".into(), r#"[{"id":3,"shortname":"INTRO","categoryid":1,"categorysortorder":10000,"fullname":"Intro","displayname":"Intro","idnumber":"","summary":"","summaryformat":1,"format":"topics","showgrades":1,"newsitems":5,"startdate":0,"enddate":0,"maxbytes":0,"showreports":0,"visible":1,"groupmode":0,"groupmodeforce":0,"defaultgroupingid":0,"timecreated":TIME,"timemodified":TIME,"enablecompletion":0,"completionnotify":0,"lang":"","forcetheme":"","showactivitydates":true,"showcompletionconditions":true}]"#.into()),
        r(h, "core_user_get_users", "json", "criteria[0][key]=username&criteria[0][value]=anna".into(), r#"{"users":[{"id":4,"username":"anna","firstname":"F","lastname":"anna","fullname":"F anna","email":"anna@example.org","idnumber":"","auth":"manual","suspended":false,"confirmed":true,"lang":"en","profileimageurlsmall":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f12","profileimageurl":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f1"}],"warnings":[]}"#.into()),
        r(h, "core_user_get_users", "json", "criteria[0][key]=city&criteria[0][value]=x".into(), r#"{"users":[],"warnings":[{"item":"city","warningcode":"invalidfieldparameter","message":"The search key 'city' is not supported, look at the web service documentation"}]}"#.into()),
        // Completion status: Moodle's errors in Moodle's order.
        r(h, "core_completion_get_course_completion_status", "json", status("99&userid=4"), missing("course")),
        r(h, "core_completion_get_course_completion_status", "json", status("2&userid=99"), missing("user")),
        r(h, "core_completion_get_course_completion_status", "json", status("3&userid=4"), moodle("cannotviewreport", "Cannot view report")),
        r(h, "core_completion_get_course_completion_status", "json", status("2&userid=5"), moodle("usernotenroled", "User is not enrolled in this course")),
        r(h, "core_completion_get_course_completion_status", "json", status("2&userid=4"), moodle("nocriteriaset", "No completion criteria set for this course")),
        r(h, "ledger_set_course_completion_criteria", "json", "courseid=2&gradepass=50".into(), r#"{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}"#.into()),
        r(a, "ledger_set_course_completion_criteria", "json", "courseid=99&gradepass=50".into(), moodle("coursenotexist", "The given course (99) does not exist.")),
        r(a, "ledger_set_course_completion_criteria", "json", "courseid=2&gradepass=50".into(), r#"{"result":true,"warnings":[]}"#.into()),
        r(h, "core_completion_get_course_completion_status", "json", status("2&userid=4"), r#"{"completionstatus":{"completed":false,"aggregation":1,"completions":[{"type":6,"title":"Course grade","status":"No grade (50.00 required)","complete":false,"timecompleted":null,"details":{"type":"Course grade","criteria":"Required course grade","requirement":"50.00","status":""}}]},"warnings":[]}"#.into()),
        r(h, "gradereport_overview_get_course_grades", "json", "userid=4".into(), r#"{"grades":[{"courseid":2,"grade":"-","rawgrade":null},{"courseid":3,"grade":"-","rawgrade":null}],"warnings":[]}"#.into()),
        r(a, "ledger_record_course_completion", "json", "userid=4&courseid=2&timecompleted=1700000000&finalgrade=85.5".into(), r#"{"result":true,"warnings":[]}"#.into()),
        r(h, "core_completion_get_course_completion_status", "json", status("2&userid=4"), r#"{"completionstatus":{"completed":true,"aggregation":1,"completions":[{"type":6,"title":"Course grade","status":"85.50 (50.00 required)","complete":true,"timecompleted":1700000000,"details":{"type":"Course grade","criteria":"Required course grade","requirement":"50.00","status":"85.50"}}]},"warnings":[]}"#.into()),
        r(h, "core_completion_get_course_completion_status", "xml", status("2&userid=4"), r#"<?xml version="1.0" encoding="UTF-8" ?>
<RESPONSE>
<SINGLE>
<KEY name="completionstatus"><SINGLE>
<KEY name="completed"><VALUE>1</VALUE>
</KEY>
<KEY name="aggregation"><VALUE>1</VALUE>
</KEY>
<KEY name="completions"><MULTIPLE>
<SINGLE>
<KEY name="type"><VALUE>6</VALUE>
</KEY>
<KEY name="title"><VALUE>Course grade</VALUE>
</KEY>
<KEY name="status"><VALUE>85.50 (50.00 required)</VALUE>
</KEY>
<KEY name="complete"><VALUE>1</VALUE>
</KEY>
<KEY name="timecompleted"><VALUE>1700000000</VALUE>
</KEY>
<KEY name="details"><SINGLE>
<KEY name="type"><VALUE>Course grade</VALUE>
</KEY>
<KEY name="criteria"><VALUE>Required course grade</VALUE>
</KEY>
<KEY name="requirement"><VALUE>50.00</VALUE>
</KEY>
<KEY name="status"><VALUE>85.50</VALUE>
</KEY>
</SINGLE>
</KEY>
</SINGLE>
</MULTIPLE>
</KEY>
</SINGLE>
</KEY>
<KEY name="warnings"><MULTIPLE>
</MULTIPLE>
</KEY>
</SINGLE>
</RESPONSE>
"#.into()),
        r(h, "gradereport_overview_get_course_grades", "json", "userid=4".into(), r#"{"grades":[{"courseid":2,"grade":"85.50","rawgrade":"85.50000"},{"courseid":3,"grade":"-","rawgrade":null}],"warnings":[]}"#.into()),
        r(h, "gradereport_overview_get_course_grades", "json", "userid=99".into(), missing("user")),
        // Unenrol: success, then each check in order.
        r(h, "enrol_manual_unenrol_users", "json", "enrolments[0][userid]=4&enrolments[0][courseid]=99".into(), invalid.clone()),
        r(h, "enrol_manual_unenrol_users", "json", "enrolments[0][userid]=99&enrolments[0][courseid]=2".into(), invalid.clone()),
        r(h, "enrol_manual_unenrol_users", "json", "enrolments[0][userid]=4&enrolments[0][courseid]=2".into(), "null".into()),
        r(h, "enrol_manual_unenrol_users", "xml", "enrolments[0][userid]=4&enrolments[0][courseid]=2".into(), XML_NULL.into()),
        r(h, "core_enrol_get_enrolled_users", "json", "courseid=2".into(), "[]".into()),
        r(h, "core_completion_get_course_completion_status", "json", status("2&userid=4"), moodle("usernotenroled", "User is not enrolled in this course")),
        r(h, "core_webservice_get_site_info", "json", "".into(), "SITEINFO".into()),
    ]
}

async fn hr_contract_table_holds(backend: Backend) {
    let api = Api::new(backend).await;
    let admin = api.token(services::LEDGER_ADMIN).await;
    let hr = api.token(services::LEDGER_HR).await;
    for (i, (service, function, format, params, expect)) in hr_table().into_iter().enumerate() {
        let token = if service == services::LEDGER_HR { &hr } else { &admin };
        let body = api.call(token, function, format, &params).await;
        if expect == "SITEINFO" {
            // The token's service decides the list: exactly ledger_hr's functions.
            let info: serde_json::Value = serde_json::from_str(&body).unwrap();
            let names: Vec<&str> =
                info["functions"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
            assert_eq!(names, HR_FUNCTIONS, "row {i}");
            continue;
        }
        assert_eq!(regex_lite_time(&body), expect, "row {i}: {function} {format} {params}");
        // Every JSON error row is checked in XML too: a failed call changes nothing.
        let row = crate::http::Row::new(service, function, format, &params, &expect);
        if let Some(xml) = json_error_as_xml(&row) {
            assert_eq!(api.call(token, function, "xml", &params).await, xml, "row {i} as XML");
        }
    }
    assert!(enrol_ledger::app::audit::verify(&api.test.db).await.unwrap().is_ok());
}

/// Issue 10: every HR integration function answered `invalidrecord` (no such function). Each
/// is found now and runs for a `ledger_hr` token (whatever its answer to empty parameters).
async fn hr_functions_answered_invalidrecord(backend: Backend) {
    let api = Api::new(backend).await;
    let hr = api.token(services::LEDGER_HR).await;
    for function in HR_FUNCTIONS {
        let body = api.call(&hr, function, "json", "").await;
        assert!(!body.contains("external_functions"), "{function}: {body}");
        assert!(!body.contains("accessexception"), "{function}: {body}");
    }
}

/// Seed 004: "Course Completion criteria not defined". A new course answers `nocriteriaset`
/// to an enrolled user's status; once its grade criterion is set, the status is given.
async fn seed_004_completion_criteria_not_defined(backend: Backend) {
    let api = Api::new(backend).await;
    let admin = api.token(services::LEDGER_ADMIN).await;
    let hr = api.token(services::LEDGER_HR).await;
    let rows = hr_table();
    for (service, function, format, params, _) in &rows[..5] {
        let token = if *service == services::LEDGER_HR { &hr } else { &admin };
        api.call(token, function, format, params).await;
    }
    let status = || api.call(&hr, "core_completion_get_course_completion_status", "json", "courseid=2&userid=4");
    assert!(status().await.contains("\"errorcode\":\"nocriteriaset\""));
    api.call(&admin, "ledger_set_course_completion_criteria", "json", "courseid=2&gradepass=40").await;
    assert!(status().await.contains("\"title\":\"Course grade\""));
}

on_both_backends!(
    hr_contract_table_holds,
    hr_functions_answered_invalidrecord,
    seed_004_completion_criteria_not_defined
);
