//! Web services (as Moodle's `external_services`) and which functions each may call.

/// The plugin's service: exactly the functions of enrol_semco's db/services.php.
pub const ENROL_SEMCO: &str = "enrol_semco";
pub const LEDGER_ADMIN: &str = "ledger_admin";
pub const LEDGER_LMS: &str = "ledger_lms";
pub const LEDGER_AUDIT: &str = "ledger_audit";
pub const ALL: [&str; 4] = [ENROL_SEMCO, LEDGER_ADMIN, LEDGER_LMS, LEDGER_AUDIT];

/// The SEMCO service user the plugin's installer creates; the other services act as the admin.
pub const SEMCO_SERVICE_USER_ID: i64 = 3;
pub use crate::registry::rules::ADMIN_USER_ID;

const SEMCO_FUNCTIONS: [&str; 11] = [
    "core_course_get_courses_by_field",
    "core_user_create_users",
    "core_user_delete_users",
    "core_user_get_users_by_field",
    "core_user_update_users",
    "enrol_semco_enrol_user",
    "enrol_semco_unenrol_user",
    "enrol_semco_edit_enrolment",
    "enrol_semco_get_enrolments",
    "enrol_semco_get_course_completions",
    "enrol_semco_reset_course_completion",
];
const LMS_FUNCTIONS: [&str; 3] =
    ["ledger_record_course_completion", "core_course_get_courses_by_field", "core_webservice_get_site_info"];
const AUDIT_FUNCTIONS: [&str; 3] =
    ["enrol_semco_get_enrolments", "enrol_semco_get_course_completions", "core_webservice_get_site_info"];

/// Whether `service` may call `function` (`ledger_admin` may call every known function).
pub fn allows(service: &str, function: &str) -> bool {
    match service {
        ENROL_SEMCO => SEMCO_FUNCTIONS.contains(&function),
        LEDGER_ADMIN => super::functions::find(function).is_some(),
        LEDGER_LMS => LMS_FUNCTIONS.contains(&function),
        LEDGER_AUDIT => AUDIT_FUNCTIONS.contains(&function),
        _ => false,
    }
}

/// The user a new token of `service` is bound to.
pub fn service_user(service: &str) -> i64 {
    if service == ENROL_SEMCO {
        SEMCO_SERVICE_USER_ID
    } else {
        ADMIN_USER_ID
    }
}

/// The functions of a service, in the order `core_webservice_get_site_info` lists them.
pub fn functions(service: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = super::functions::NAMES.iter().copied().filter(|f| allows(service, f)).collect();
    names.sort_unstable();
    names
}
