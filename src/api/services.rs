//! Web services (as Moodle's `external_services`). Which functions each may call is in the
//! function table (`functions::FunctionDef::services`), nowhere else.

/// The plugin's service: exactly the functions of enrol_semco's db/services.php.
pub const ENROL_SEMCO: &str = "enrol_semco";
pub const LEDGER_ADMIN: &str = "ledger_admin";
pub const LEDGER_LMS: &str = "ledger_lms";
pub const LEDGER_AUDIT: &str = "ledger_audit";
pub const ALL: [&str; 4] = [ENROL_SEMCO, LEDGER_ADMIN, LEDGER_LMS, LEDGER_AUDIT];

/// The SEMCO service user the plugin's installer creates; the other services act as the admin.
pub const SEMCO_SERVICE_USER_ID: i64 = 3;
pub use crate::registry::rules::ADMIN_USER_ID;

/// Whether `service` may call `function`: only the function's own table entry says so.
pub fn allows(service: &str, function: &str) -> bool {
    super::functions::find(function).is_some_and(|f| f.in_service(service))
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
    let mut names: Vec<&'static str> =
        super::functions::all().filter(|f| f.in_service(service)).map(|f| f.name).collect();
    names.sort_unstable();
    names
}
