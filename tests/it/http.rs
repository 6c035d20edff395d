//! The REST endpoint through the real router: a data-driven contract table (JSON and XML),
//! the service × function access matrix, and arbitrary input never escaping the envelope.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use enrol_ledger::api::{self, functions, services, tokens};
use enrol_ledger::store::Backend;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::on_both_backends;
use crate::support::*;

pub struct Api {
    pub router: Router,
    pub test: TestDb,
}

impl Api {
    pub async fn new(backend: Backend) -> Self {
        let test = TestDb::new(backend).await;
        let ledger = test.ledger().await;
        let settings = api::Settings { base_url: "http://moodle.example".into(), debug: false };
        Self { router: api::router(ledger, settings), test }
    }

    pub async fn token(&self, service: &str) -> String {
        tokens::create(&self.test.db, service, services::service_user(service), 0, "").await.unwrap()
    }

    /// POSTs a form body; returns status and body text.
    pub async fn post(&self, body: &str) -> (StatusCode, String) {
        let request = Request::post("/webservice/rest/server.php")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn call(&self, token: &str, function: &str, format: &str, params: &str) -> String {
        let sep = if params.is_empty() { "" } else { "&" };
        let (status, body) =
            self.post(&format!("wstoken={token}&wsfunction={function}&moodlewsrestformat={format}{sep}{params}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

fn semco_error(code: &str, message: &str) -> String {
    format!(r#"{{"exception":"core\\exception\\moodle_exception","errorcode":"{code}","message":"{message}"}}"#)
}

fn xml_semco_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"core\\exception\\moodle_exception\">\n<ERRORCODE>{code}</ERRORCODE>\n<MESSAGE>{message}</MESSAGE>\n</EXCEPTION>\n"
    )
}

fn invalid_parameter_json() -> &'static str {
    r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#
}

const RESULT_TRUE: &str = r#"{"result":true,"warnings":[]}"#;
const XML_RESULT_TRUE: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<SINGLE>\n<KEY name=\"result\"><VALUE>1</VALUE>\n</KEY>\n<KEY name=\"warnings\"><MULTIPLE>\n</MULTIPLE>\n</KEY>\n</SINGLE>\n</RESPONSE>\n";

/// One row of the contract table: who calls what, and the exact body expected.
struct Row {
    service: &'static str,
    function: &'static str,
    format: &'static str,
    params: String,
    expect: String,
}

fn row(
    service: &'static str,
    function: &'static str,
    format: &'static str,
    params: &str,
    expect: impl Into<String>,
) -> Row {
    Row { service, function, format, params: params.to_owned(), expect: expect.into() }
}

/// The table runs in order on a fresh ledger: course 2, users 4 and 5, enrolid 1, ...
fn contract_table() -> Vec<Row> {
    use services::{ENROL_SEMCO as S, LEDGER_ADMIN as A, LEDGER_AUDIT as AU, LEDGER_LMS as L};
    let user = |n: &str| {
        format!(
            "users[0][username]={n}&users[0][firstname]=F&users[0][lastname]=L&users[0][email]={n}%40example.org&users[0][createpassword]=1&users[0][customfields][0][type]=semco_userid&users[0][customfields][0][value]=S-{n}"
        )
    };
    vec![
        row(A, "core_course_create_courses", "json", "courses[0][fullname]=Course+One&courses[0][shortname]=C1&courses[0][categoryid]=1&courses[0][enablecompletion]=1", r#"[{"id":2,"shortname":"C1"}]"#),
        row(A, "core_course_create_courses", "json", "courses[0][fullname]=X&courses[0][shortname]=C9&courses[0][categoryid]=7", r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table course_categories."}"#),
        row(S, "core_user_create_users", "json", &user("anna"), r#"[{"id":4,"username":"anna"}]"#),
        row(S, "core_user_create_users", "json", &user("bert"), r#"[{"id":5,"username":"bert"}]"#),
        row(S, "core_user_create_users", "json", &user("anna"), invalid_parameter_json()),
        // enrol_semco_enrol_user: success and every check in order.
        row(S, "enrol_semco_enrol_user", "json", "userid=4&courseid=2&semcobookingid=B-1001&timestart=1700000000&timeend=0&suspend=0", r#"{"enrolid":1,"userid":4,"courseid":2,"semcobookingid":"B-1001","warnings":[]}"#),
        row(S, "enrol_semco_enrol_user", "json", "userid=4&courseid=2&semcobookingid=B-1001", semco_error("bookingidduplicate", "There is already an enrolment instance with this SEMCO booking ID (B-1001).")),
        row(S, "enrol_semco_enrol_user", "xml", "userid=4&courseid=2&semcobookingid=B-1001", xml_semco_error("bookingidduplicate", "There is already an enrolment instance with this SEMCO booking ID (B-1001).")),
        row(S, "enrol_semco_enrol_user", "json", "userid=4&courseid=99&semcobookingid=B-2", semco_error("coursenotexist", "The given course (99) does not exist.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=99&courseid=2&semcobookingid=B-2", semco_error("usernotexist", "The given user (99) does not exist.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=5&courseid=2&semcobookingid=0", semco_error("bookingidempty", "The SEMCO booking ID field must not be empty.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=5&courseid=2&semcobookingid=B-2&timestart=-1", semco_error("timestartinvalid", "The Timestart field must be greater than or equal to zero.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=5&courseid=2&semcobookingid=B-2&timeend=-1", semco_error("timeendinvalid", "The Timeend field must be greater than or equal to zero.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=5&courseid=2&semcobookingid=B-2&timestart=20&timeend=10", semco_error("timestartendorder", "The Timestart field must not be greater than the Timeend field.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=4&courseid=2&semcobookingid=B-2&timestart=1600000000&timeend=1800000000", semco_error("bookingoverlap", "There is already an enrolment instance with an enrolment period which overlaps with the given enrolment period. However, overlapping enrolment periods are not supported.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=5&courseid=2&semcobookingid=B-2&requirerecompletion=1", semco_error("localrecompletionnotenabled", "Course recompletion is not enabled at all in the course's recompletion settings. Please go to http:\\/\\/moodle.example\\/local\\/recompletion\\/recompletion.php?id=2 and set the 'Recompletion type' to 'On demand'.")),
        row(S, "enrol_semco_enrol_user", "json", "userid=5&courseid=2&semcobookingid=B-2&timestart=", r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected"}"#),
        row(S, "enrol_semco_enrol_user", "json", "userid=5&courseid=2&semcobookingid=B-2&suspend=1", r#"{"enrolid":2,"userid":5,"courseid":2,"semcobookingid":"B-2","warnings":[]}"#),
        // get_enrolments
        row(S, "enrol_semco_get_enrolments", "json", "courseid=2", r#"[{"enrolid":1,"userid":4,"semcobookingid":"B-1001","timestart":1700000000,"timeend":0,"suspend":false},{"enrolid":2,"userid":5,"semcobookingid":"B-2","timestart":0,"timeend":0,"suspend":true}]"#),
        row(S, "enrol_semco_get_enrolments", "json", "courseid=98", semco_error("coursenotexist", "The given course (98) does not exist.")),
        // edit: quirks
        row(S, "enrol_semco_edit_enrolment", "json", "enrolid=2&timestart=5", RESULT_TRUE),
        row(S, "enrol_semco_get_enrolments", "xml", "courseid=2", "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<RESPONSE>\n<MULTIPLE>\n<SINGLE>\n<KEY name=\"enrolid\"><VALUE>1</VALUE>\n</KEY>\n<KEY name=\"userid\"><VALUE>4</VALUE>\n</KEY>\n<KEY name=\"semcobookingid\"><VALUE>B-1001</VALUE>\n</KEY>\n<KEY name=\"timestart\"><VALUE>1700000000</VALUE>\n</KEY>\n<KEY name=\"timeend\"><VALUE>0</VALUE>\n</KEY>\n<KEY name=\"suspend\"><VALUE>0</VALUE>\n</KEY>\n</SINGLE>\n<SINGLE>\n<KEY name=\"enrolid\"><VALUE>2</VALUE>\n</KEY>\n<KEY name=\"userid\"><VALUE>5</VALUE>\n</KEY>\n<KEY name=\"semcobookingid\"><VALUE>B-2</VALUE>\n</KEY>\n<KEY name=\"timestart\"><VALUE>5</VALUE>\n</KEY>\n<KEY name=\"timeend\"><VALUE>0</VALUE>\n</KEY>\n<KEY name=\"suspend\"><VALUE>0</VALUE>\n</KEY>\n</SINGLE>\n</MULTIPLE>\n</RESPONSE>\n"),
        row(S, "enrol_semco_edit_enrolment", "json", "enrolid=2&semcobookingid=B-2", semco_error("bookingidduplicatemustchange", "There is already an enrolment instance with this SEMCO booking ID (B-2). If you want to edit the enrolment without changing the SEMCO booking ID, simply do not pass the booking ID as parameter. If you want to edit the enrolment and change the SEMCO booking ID, make sure that you do not set it to an ID which exists somewhere else in the system already.")),
        row(S, "enrol_semco_edit_enrolment", "xml", "enrolid=2&semcobookingid=B-3&suspend=1", XML_RESULT_TRUE),
        row(S, "enrol_semco_edit_enrolment", "json", "enrolid=77&suspend=1", semco_error("enrolnouserinstance", "The given user enrolment instance (77) does not exist.")),
        // completions
        row(S, "enrol_semco_get_course_completions", "json", "enrolmentids[0]=1&enrolmentids[]=2", r#"[{"enrolid":1,"userid":4,"semcobookingid":"B-1001","canbecompleted":true,"completed":false,"timecompleted":null,"finalgrade":null,"finalgraderaw":null,"grademinraw":null,"grademaxraw":null,"gradepassraw":null,"passed":null},{"enrolid":2,"userid":5,"semcobookingid":"B-3","canbecompleted":true,"completed":false,"timecompleted":null,"finalgrade":null,"finalgraderaw":null,"grademinraw":null,"grademaxraw":null,"gradepassraw":null,"passed":null}]"#),
        row(L, "ledger_record_course_completion", "json", "userid=4&courseid=2&timecompleted=1700003600&finalgrade=30&gradepass=30", RESULT_TRUE),
        row(L, "ledger_record_course_completion", "json", "userid=4&courseid=2&timecompleted=0", invalid_parameter_json()),
        row(L, "ledger_record_course_completion", "json", "userid=4&courseid=55&timecompleted=5", semco_error("coursenotexist", "The given course (55) does not exist.")),
        row(AU, "enrol_semco_get_course_completions", "json", "enrolmentids[0]=1", r#"[{"enrolid":1,"userid":4,"semcobookingid":"B-1001","canbecompleted":true,"completed":true,"timecompleted":1700003600,"finalgrade":"30.00","finalgraderaw":"30.00000","grademinraw":"0.00000","grademaxraw":"100.00000","gradepassraw":"30.00000","passed":true}]"#),
        row(S, "enrol_semco_get_course_completions", "json", "enrolmentids[0]=1&enrolmentids[1]=66", semco_error("enrolnouserinstance", "The given user enrolment instance (66) does not exist.")),
        // reset
        row(S, "enrol_semco_reset_course_completion", "json", "enrolid=1", semco_error("localrecompletionnotenabled", "Course recompletion is not enabled at all in the course's recompletion settings. Please go to http:\\/\\/moodle.example\\/local\\/recompletion\\/recompletion.php?id=2 and set the 'Recompletion type' to 'On demand'.")),
        row(A, "ledger_set_course_recompletion", "json", "courseid=2&recompletiontype=period", RESULT_TRUE),
        row(S, "enrol_semco_reset_course_completion", "json", "enrolid=1", semco_error("localrecompletionnotondemand", "Course recompletion is not set to 'On demand' in the course's recompletion settings. Please go to http:\\/\\/moodle.example\\/local\\/recompletion\\/recompletion.php?id=2 and set the 'Recompletion type' to 'On demand'.")),
        row(A, "ledger_set_course_recompletion", "json", "courseid=2&recompletiontype=ondemand", RESULT_TRUE),
        row(S, "enrol_semco_reset_course_completion", "json", "enrolid=1", RESULT_TRUE),
        row(S, "enrol_semco_get_course_completions", "json", "enrolmentids[0]=1", r#"[{"enrolid":1,"userid":4,"semcobookingid":"B-1001","canbecompleted":true,"completed":false,"timecompleted":null,"finalgrade":null,"finalgraderaw":null,"grademinraw":null,"grademaxraw":null,"gradepassraw":null,"passed":null}]"#),
        // config
        row(A, "ledger_set_config", "json", "name=overlap_rule&value=bogus", invalid_parameter_json()),
        row(A, "ledger_set_config", "json", "name=recompletion&value=0", RESULT_TRUE),
        row(S, "enrol_semco_reset_course_completion", "json", "enrolid=1", semco_error("localrecompletionnotinstalled", "The local_recompletion plugin is not installed or too old. Please install \\/ update local_recompletion to allow this webservice function to do its job.")),
        row(A, "ledger_get_config", "json", "", r#"[{"name":"enabled","value":"1"},{"name":"role","value":"5"},{"name":"recompletion","value":"0"},{"name":"overlap_rule","value":"enrol_semco"},{"name":"allowaccountssameemail","value":"0"}]"#),
        row(A, "ledger_set_config", "json", "name=enabled&value=0", RESULT_TRUE),
        // Disabled: no `semco` enrolment methods are listed, core functions still work.
        row(S, "core_course_get_courses_by_field", "json", "field=shortname&value=C1", r#"{"courses":[{"id":2,"fullname":"Course One","displayname":"Course One","shortname":"C1","categoryid":1,"categoryname":"Category 1","summary":"","summaryformat":1,"enrollmentmethods":[],"idnumber":"","format":"topics","startdate":0,"enddate":0,"visible":true,"enablecompletion":true,"timecreated":TIME,"timemodified":TIME}],"warnings":[]}"#),
        row(S, "enrol_semco_get_enrolments", "json", "courseid=2", semco_error("semcopluginnotenabled", "The SEMCO enrolment plugin is not enabled currently.")),
        row(S, "enrol_semco_unenrol_user", "json", "enrolid=1", semco_error("semcopluginnotenabled", "The SEMCO enrolment plugin is not enabled currently.")),
        row(A, "ledger_set_config", "json", "name=enabled&value=1", RESULT_TRUE),
        // unenrol, user deletion, orphans
        row(S, "enrol_semco_unenrol_user", "json", "enrolid=1", RESULT_TRUE),
        row(S, "enrol_semco_unenrol_user", "xml", "enrolid=1", xml_semco_error("enrolnouserinstance", "The given user enrolment instance (1) does not exist.")),
        row(S, "core_user_delete_users", "json", "userids[0]=5", "null"),
        row(S, "core_user_delete_users", "xml", "userids[0]=5", "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"dml_missing_record_exception\">\n<ERRORCODE>invaliduser</ERRORCODE>\n<MESSAGE>Invalid user</MESSAGE>\n</EXCEPTION>\n"),
        row(S, "enrol_semco_get_enrolments", "json", "courseid=2", "[]"),
        row(S, "core_course_get_courses_by_field", "json", "field=id&value=2", r#"{"courses":[{"id":2,"fullname":"Course One","displayname":"Course One","shortname":"C1","categoryid":1,"categoryname":"Category 1","summary":"","summaryformat":1,"enrollmentmethods":["semco"],"idnumber":"","format":"topics","startdate":0,"enddate":0,"visible":true,"enablecompletion":true,"timecreated":TIME,"timemodified":TIME}],"warnings":[]}"#),
        row(A, "ledger_cleanup_orphans", "json", "", r#"{"removed":1,"warnings":[]}"#),
        row(S, "enrol_semco_enrol_user", "json", "userid=4&courseid=2&semcobookingid=B-3", r#"{"enrolid":3,"userid":4,"courseid":2,"semcobookingid":"B-3","warnings":[]}"#),
        row(S, "core_user_get_users_by_field", "json", "field=username&values[0]=anna&values[1]=bert", r#"[{"id":4,"username":"anna","firstname":"F","lastname":"L","fullname":"F L","email":"anna@example.org","idnumber":"","auth":"manual","suspended":false,"confirmed":true,"lang":"en","profileimageurlsmall":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f12","profileimageurl":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f1","customfields":[{"type":"text","value":"S-anna","displayvalue":"S-anna","name":"SEMCO User ID","shortname":"semco_userid"}]}]"#),
        // core_user_update_users: changes and per-user warnings
        row(S, "core_user_update_users", "json", "users[0][id]=4&users[0][firstname]=Kim&users[0][customfields][0][type]=semco_userid&users[0][customfields][0][value]=S-9&users[1][id]=2&users[1][firstname]=X&users[2][id]=999&users[3][id]=5&users[4][id]=4&users[4][email]=bad", r#"{"warnings":[{"item":"user","itemid":2,"warningcode":"usernotupdatedadmin","message":"Cannot update admin accounts"},{"item":"user","itemid":999,"warningcode":"invaliduserid","message":"Invalid user ID"},{"item":"user","itemid":5,"warningcode":"usernotupdateddeleted","message":"error\/usernotupdateddeleted"},{"item":"user","itemid":4,"warningcode":"useremailinvalid","message":"error\/useremailinvalid"}]}"#),
        // Another live user's username is refused by the unique index (a warning); the guest is protected.
        row(S, "core_user_update_users", "json", "users[0][id]=4&users[0][username]=admin&users[1][id]=1&users[1][lastname]=X", r#"{"warnings":[{"item":"user","itemid":4,"warningcode":"dmlwriteexception","message":"Error writing to database"},{"item":"user","itemid":1,"warningcode":"usernotupdatedguest","message":"error\/usernotupdatedguest"}]}"#),
        row(S, "core_user_get_users_by_field", "json", "field=id&values[0]=4", r#"[{"id":4,"username":"anna","firstname":"Kim","lastname":"L","fullname":"Kim L","email":"anna@example.org","idnumber":"","auth":"manual","suspended":false,"confirmed":true,"lang":"en","profileimageurlsmall":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f12","profileimageurl":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f1","customfields":[{"type":"text","value":"S-9","displayvalue":"S-9","name":"SEMCO User ID","shortname":"semco_userid"}]}]"#),
        // more check-order errors
        row(S, "enrol_semco_edit_enrolment", "json", "enrolid=3&semcobookingid=0", semco_error("bookingidempty", "The SEMCO booking ID field must not be empty.")),
        row(S, "enrol_semco_edit_enrolment", "json", "enrolid=3&timestart=20&timeend=10", semco_error("timestartendorder", "The Timestart field must not be greater than the Timeend field.")),
        row(S, "enrol_semco_get_course_completions", "json", &(0..101).map(|i| format!("enrolmentids[{i}]=3")).collect::<Vec<_>>().join("&"), semco_error("getcoursecompletionsmaxrequest", "You passed more than the maximum amount of enrolment IDs (which is 100).")),
        row(S, "enrol_semco_unenrol_user", "json", "enrolid=3", RESULT_TRUE),
        row(S, "enrol_semco_enrol_user", "json", "userid=4&courseid=2&semcobookingid=B-9&timestart=1&timeend=2&requirerecompletion=1", semco_error("localrecompletionnotexpectable", "The local_recompletion plugin is not installed or too old. Please install \\/ update local_recompletion before you use the requirerecompletion parameter of this webservice function.")),
        row(L, "core_webservice_get_site_info", "json", "", r#"{"sitename":"enrol-ledger","username":"admin","firstname":"Admin","lastname":"User","fullname":"Admin User","lang":"en","userid":2,"siteurl":"http:\/\/moodle.example","userpictureurl":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f1","functions":[{"name":"core_course_get_courses_by_field","version":"2024100700"},{"name":"core_webservice_get_site_info","version":"2024100700"},{"name":"ledger_record_course_completion","version":"2024100700"}],"downloadfiles":0,"uploadfiles":0,"release":"4.5.6 (Build: 20250811)","version":"2024100706","userissiteadmin":false}"#),
        // registry errors
        row(S, "core_user_create_users", "json", "users[0][username]=carl&users[0][firstname]=+&users[0][lastname]=L&users[0][email]=c%40example.org&users[0][createpassword]=1", invalid_parameter_json()),
        row(S, "core_user_create_users", "json", "users[0][username]=carl&users[0][firstname]=C&users[0][lastname]=L&users[0][email]=c%40example.org", invalid_parameter_json()),
        row(S, "core_user_create_users", "json", "users[0][username]=carl&users[0][firstname]=C&users[0][lastname]=L&users[0][email]=not-an-address&users[0][createpassword]=1", invalid_parameter_json()),
        row(S, "core_user_create_users", "json", "users[0][username]=carl&users[0][firstname]=C&users[0][lastname]=L&users[0][email]=ANNA%40example.org&users[0][createpassword]=1", invalid_parameter_json()),
        row(S, "core_user_create_users", "json", "users[0][username]=carl&users[0][firstname]=C&users[0][lastname]=L&users[0][email]=c%40example.org&users[0][createpassword]=1&users[0][auth]=webservice", invalid_parameter_json()),
        row(S, "core_user_create_users", "json", "users[0][username]=carl&users[0][firstname]=C&users[0][lastname]=L&users[0][email]=c%40b.1c&users[0][createpassword]=1", invalid_parameter_json()),
        row(S, "core_user_create_users", "json", "users[0][username]=carl&users[0][firstname]=C&users[0][lastname]=L&users[0][email]=c%40example.org&users[0][createpassword]=1&users[0][auth]=mnet", invalid_parameter_json()),
        row(S, "core_user_create_users", "json", "users[0][username]=Carl&users[0][firstname]=C&users[0][lastname]=L&users[0][email]=c%40example.org&users[0][createpassword]=1", invalid_parameter_json()),
        row(A, "core_course_create_courses", "json", "courses[0][fullname]=Again&courses[0][shortname]=C1&courses[0][categoryid]=1", semco_error("shortnametaken", "Short name is already used for another course (C1)")),
        row(A, "core_course_update_courses", "json", "courses[0][id]=2&courses[0][summary]=Updated&courses[1][id]=77&courses[2][id]=2&courses[2][categoryid]=3", r#"{"warnings":[{"item":"course","itemid":77,"warningcode":"invalidrecord","message":"Can't find data record in database table course."},{"item":"course","itemid":2,"warningcode":"invalidrecord","message":"Can't find data record in database table course_categories."}]}"#),
        row(S, "core_user_get_users_by_field", "json", "field=lastname&values[0]=L", r#"{"exception":"core\\exception\\coding_exception","errorcode":"codingerror","message":"Coding error detected, it must be fixed by a programmer: invalid field parameter"}"#),
        row(S, "core_course_get_courses_by_field", "json", "field=fullname&value=x", invalid_parameter_json()),
        row(A, "ledger_set_config", "json", "name=colour&value=1", invalid_parameter_json()),
        row(A, "ledger_set_config", "json", "name=role&value=42", invalid_parameter_json()),
        row(A, "ledger_set_course_recompletion", "json", "courseid=3&recompletiontype=ondemand", semco_error("coursenotexist", "The given course (3) does not exist.")),
        row(A, "ledger_set_course_recompletion", "json", "courseid=2&recompletiontype=sometimes", invalid_parameter_json()),
        row(L, "ledger_record_course_completion", "json", "userid=444&courseid=2&timecompleted=5", semco_error("usernotexist", "The given user (444) does not exist.")),
        row(A, "core_webservice_get_site_info", "json", "serviceshortnames[0]=x&foo=1", invalid_parameter_json()),
        row(S, "", "json", "", invalid_parameter_json()),
        // dispatch errors
        row(S, "core_webservice_get_site_info", "json", "", r#"{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}"#),
        row(S, "no_such_function", "json", "", r#"{"exception":"dml_missing_record_exception","errorcode":"invalidrecord","message":"Can't find data record in database table external_functions."}"#),
        row(S, "enrol_semco_unenrol_user", "json", "enrolid=1&foo=1", invalid_parameter_json()),
        // A nologin service user is refused, until its auth is restored.
        row(A, "core_user_update_users", "json", "users[0][id]=3&users[0][auth]=nologin", r#"{"warnings":[]}"#),
        row(S, "enrol_semco_get_enrolments", "json", "courseid=2", semco_error("wsaccessusernologin", "Refused web service access for nologin authentication username: semcowebservice")),
        row(A, "core_user_update_users", "json", "users[0][id]=3&users[0][auth]=webservice", r#"{"warnings":[]}"#),
        // A suspended service user is refused, until reactivated.
        row(A, "core_user_update_users", "json", "users[0][id]=3&users[0][suspended]=1", r#"{"warnings":[]}"#),
        row(S, "enrol_semco_get_enrolments", "json", "courseid=2", semco_error("wsaccessusersuspended", "Refused web service access for suspended username: semcowebservice")),
        row(A, "core_user_update_users", "json", "users[0][id]=3&users[0][suspended]=0", r#"{"warnings":[]}"#),
        row(S, "enrol_semco_get_enrolments", "json", "courseid=2", "[]"),
        // Deleting the SEMCO service user deletes its tokens: SEMCO's token stops working.
        row(A, "core_user_delete_users", "json", "userids[0]=3", "null"),
        row(S, "enrol_semco_get_enrolments", "json", "courseid=2", r#"{"exception":"core\\exception\\moodle_exception","errorcode":"invalidtoken","message":"Invalid token - token not found"}"#),
        row(A, "core_user_delete_users", "json", "userids[0]=2", semco_error("useradminodelete", "Administrator accounts cannot be deleted.")),
        // Moodle's delete_user keeps the guest without an error.
        row(A, "core_user_delete_users", "json", "userids[0]=1", "null"),
        row(A, "core_user_get_users_by_field", "json", "field=username&values[0]=guest", r#"[{"id":1,"username":"guest","firstname":"Guest user","lastname":" ","fullname":"Guest user  ","email":"root@localhost","idnumber":"","auth":"manual","suspended":false,"confirmed":true,"lang":"en","profileimageurlsmall":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f12","profileimageurl":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f1"}]"#),
        row(A, "core_user_delete_users", "json", "userids[0]=4&userids[1]=1234", r#"{"exception":"dml_missing_record_exception","errorcode":"invaliduser","message":"Invalid user"}"#),
        // All or nothing: user 4 was not deleted with the unknown 1234.
        row(A, "core_user_get_users_by_field", "json", "field=id&values[0]=4&values[1]=3", r#"[{"id":4,"username":"anna","firstname":"Kim","lastname":"L","fullname":"Kim L","email":"anna@example.org","idnumber":"","auth":"manual","suspended":false,"confirmed":true,"lang":"en","profileimageurlsmall":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f12","profileimageurl":"http:\/\/moodle.example\/theme\/image.php\/boost\/core\/1\/u\/f1","customfields":[{"type":"text","value":"S-9","displayvalue":"S-9","name":"SEMCO User ID","shortname":"semco_userid"}]}]"#),
    ]
}

async fn contract_table_holds(backend: Backend) {
    let api = Api::new(backend).await;
    let mut tokens = std::collections::HashMap::new();
    for service in services::ALL {
        tokens.insert(service, api.token(service).await);
    }
    for (i, row) in contract_table().into_iter().enumerate() {
        let body = api.call(&tokens[row.service], row.function, row.format, &row.params).await;
        // Creation times are the server's clock.
        let body = regex_lite_time(&body);
        assert_eq!(body, row.expect, "row {i}: {} {} {}", row.function, row.format, row.params);
        // Every error row is checked in XML too: a failed call changes nothing, so it can be repeated.
        if let Some(xml) = json_error_as_xml(&row) {
            let body = api.call(&tokens[row.service], row.function, "xml", &row.params).await;
            assert_eq!(body, xml, "row {i} as XML: {} {}", row.function, row.params);
        }
    }
    assert!(enrol_ledger::app::audit::verify(&api.test.db).await.unwrap().is_ok());
}

/// The XML envelope of a JSON error row, written out independently of the encoder.
fn json_error_as_xml(row: &Row) -> Option<String> {
    if row.format != "json" {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(&row.expect).ok()?;
    let class = value.get("exception")?.as_str()?;
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let code =
        value["errorcode"].as_str().map(|c| format!("<ERRORCODE>{}</ERRORCODE>\n", escape(c))).unwrap_or_default();
    let message = escape(value["message"].as_str()?);
    Some(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"{}\">\n{code}<MESSAGE>{message}</MESSAGE>\n</EXCEPTION>\n",
        escape(class)
    ))
}

/// Replaces `"timecreated":N` and `"timemodified":N` values with `TIME`.
fn regex_lite_time(body: &str) -> String {
    let mut out = body.to_owned();
    for key in ["\"timecreated\":", "\"timemodified\":"] {
        let mut result = String::new();
        let mut rest = out.as_str();
        while let Some(at) = rest.find(key) {
            result.push_str(&rest[..at + key.len()]);
            rest = &rest[at + key.len()..];
            let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
            result.push_str("TIME");
            rest = &rest[digits..];
        }
        result.push_str(rest);
        out = result;
    }
    out
}

async fn tokens_and_envelopes(backend: Backend) {
    let api = Api::new(backend).await;
    let (status, body) =
        api.post("wstoken=0123456789abcdef0123456789abcdef&wsfunction=enrol_semco_get_enrolments&courseid=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"core\\exception\\moodle_exception\">\n<ERRORCODE>invalidtoken</ERRORCODE>\n<MESSAGE>Invalid token - token not found</MESSAGE>\n</EXCEPTION>\n");
    let (_, body) = api.post("wsfunction=x&moodlewsrestformat=json").await;
    assert_eq!(
        body,
        r#"{"exception":"core\\exception\\moodle_exception","errorcode":"invalidtoken","message":"Invalid token - token not found"}"#
    );
    // An expired token: access exception once, then it is gone.
    let past = chrono::Utc::now().timestamp() - 10;
    let expired = tokens::create(&api.test.db, "enrol_semco", 3, past, "").await.unwrap();
    let body = api.call(&expired, "enrol_semco_get_enrolments", "json", "courseid=1").await;
    assert_eq!(
        body,
        r#"{"exception":"webservice_access_exception","errorcode":"accessexception","message":"Access control exception"}"#
    );
    let body = api.call(&expired, "enrol_semco_get_enrolments", "json", "courseid=1").await;
    assert!(body.contains("invalidtoken"), "{body}");
    // IP restriction: router tests have no client address, so a restricted token is refused.
    let restricted = tokens::create(&api.test.db, "enrol_semco", 3, 0, "10.0.0.0/8").await.unwrap();
    let body = api.call(&restricted, "enrol_semco_get_enrolments", "json", "courseid=1").await;
    assert!(body.contains("accessexception"), "{body}");
    // Headers.
    let token = api.token("enrol_semco").await;
    let request = Request::get(format!("/webservice/rest/server.php?wstoken={token}&wsfunction=enrol_semco_get_enrolments&courseid=1&moodlewsrestformat=json"))
        .body(Body::empty())
        .unwrap();
    let response = api.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("access-control-allow-origin").is_none(), "CORS only when configured (issue 9)");
}

async fn every_service_reaches_only_its_functions(backend: Backend) {
    let api = Api::new(backend).await;
    for service in services::ALL {
        let token = api.token(service).await;
        for function in functions::names() {
            let body = api.call(&token, function, "json", "").await;
            let refused = body.contains("\"errorcode\":\"accessexception\"");
            assert_eq!(refused, !services::allows(service, function), "{service} {function}: {body}");
            assert_eq!(
                services::allows(service, function),
                expected_allowed(service, function),
                "{service} {function}"
            );
        }
    }
}

/// WS-CONTRACT.md §2, written out independently of `services.rs`.
fn expected_allowed(service: &str, function: &str) -> bool {
    match service {
        "enrol_semco" => {
            function.starts_with("enrol_semco_")
                || matches!(
                    function,
                    "core_course_get_courses_by_field"
                        | "core_user_create_users"
                        | "core_user_delete_users"
                        | "core_user_get_users_by_field"
                        | "core_user_update_users"
                )
        }
        "ledger_admin" => true,
        "ledger_lms" => matches!(
            function,
            "ledger_record_course_completion" | "core_course_get_courses_by_field" | "core_webservice_get_site_info"
        ),
        "ledger_audit" => matches!(
            function,
            "enrol_semco_get_enrolments" | "enrol_semco_get_course_completions" | "core_webservice_get_site_info"
        ),
        _ => false,
    }
}

/// Arbitrary bodies and parameter names always get a Moodle envelope, never a crash.
async fn arbitrary_input_always_gets_an_envelope(backend: Backend) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let api = Api::new(backend).await;
    let token = api.token("ledger_admin").await;
    let mut runner = TestRunner::deterministic();
    let bytes = proptest::collection::vec(proptest::num::u8::ANY, 0..300);
    let names = proptest::sample::select(functions::names().collect::<Vec<_>>());
    let keys = "[a-z\\[\\]0-9]{0,20}";
    for _ in 0..150 {
        let raw = bytes.new_tree(&mut runner).unwrap().current();
        let function = names.new_tree(&mut runner).unwrap().current();
        let key = keys.new_tree(&mut runner).unwrap().current();
        let value: String = "[ -~]{0,12}".new_tree(&mut runner).unwrap().current();
        let mut body = format!("wstoken={token}&wsfunction={function}&moodlewsrestformat=json&{key}=").into_bytes();
        body.extend(url_escape(&value).bytes());
        body.push(b'&');
        body.extend(&raw);
        let request = Request::post("/webservice/rest/server.php")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let response = api.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&text).expect("a JSON document");
        if let Some(error) = json.as_object().filter(|o| o.contains_key("exception")) {
            assert!(error.contains_key("message"), "{json}");
        }
    }
    let huge = format!("wstoken={token}&wsfunction=ledger_get_config&x={}", "a".repeat(2 * 1024 * 1024));
    let (status, body) = api.post(&huge).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<ERRORCODE>invalidparameter</ERRORCODE>"), "{body}");
    let many: String = (0..1001).map(|i| format!("&v{i}=1")).collect();
    // An unreadable request is answered in the query string's format: none here, so XML.
    let (_, body) =
        api.post(&format!("wstoken={token}&wsfunction=ledger_get_config&moodlewsrestformat=json{many}")).await;
    assert!(body.contains("<ERRORCODE>invalidparameter</ERRORCODE>"), "{body}");
    assert!(enrol_ledger::app::audit::verify(&api.test.db).await.unwrap().is_ok());
}

fn url_escape(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// With `--debug`, errors carry Moodle's debuginfo (JSON key and XML element); the message is unchanged.
async fn debug_mode_adds_debuginfo(backend: Backend) {
    let test = TestDb::new(backend).await;
    let ledger = test.ledger().await;
    let settings = api::Settings { base_url: "http://moodle.example".into(), debug: true };
    let api = Api { router: api::router(ledger, settings), test };
    let token = api.token("enrol_semco").await;
    let body =
        api.call(&token, "enrol_semco_enrol_user", "json", "userid=4&courseid=2&semcobookingid=B&timestart=").await;
    assert_eq!(
        body,
        r#"{"exception":"core\\exception\\invalid_parameter_exception","errorcode":"invalidparameter","message":"Invalid parameter value detected","debuginfo":"timestart => Invalid parameter value detected: Invalid external api parameter: the value is \"\", the server was expecting \"int\" type"}"#
    );
    let body = api.call(&token, "enrol_semco_unenrol_user", "xml", "enrolid=1&foo=1").await;
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<EXCEPTION class=\"core\\exception\\invalid_parameter_exception\">\n<ERRORCODE>invalidparameter</ERRORCODE>\n<MESSAGE>Invalid parameter value detected</MESSAGE>\n<DEBUGINFO>Unexpected keys (foo) detected in parameter array.</DEBUGINFO>\n</EXCEPTION>\n"
    );
    let user = "users[0][username]=semcowebservice&users[0][firstname]=A&users[0][lastname]=B&users[0][email]=a%40example.org&users[0][createpassword]=1";
    let body = api.call(&token, "core_user_create_users", "json", user).await;
    assert!(body.ends_with(r#""debuginfo":"Username already exists: semcowebservice"}"#), "{body}");
    let body = api.call(&token, "core_webservice_get_site_info", "json", "").await;
    assert!(
        body.contains(r#""debuginfo":"Access to the function core_webservice_get_site_info() is not allowed."#),
        "{body}"
    );
}

on_both_backends!(
    debug_mode_adds_debuginfo,
    contract_table_holds,
    tokens_and_envelopes,
    every_service_reaches_only_its_functions,
    arbitrary_input_always_gets_an_envelope
);
