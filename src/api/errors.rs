//! The one place where ledger failures become Moodle errors (code, English message, class).

use super::wire::encode::{WsError, DML_MISSING_RECORD_EXCEPTION, MOODLE_EXCEPTION};
use crate::app::command::RegistryError;
use crate::app::LedgerError;
use crate::domain::DomainError;

/// The maximum number of enrolment IDs `enrol_semco_get_course_completions` accepts.
pub const COMPLETIONS_IDS_MAX: usize = 100;

fn semco(code: &str, message: impl Into<String>) -> WsError {
    WsError::new(MOODLE_EXCEPTION, code, message)
}

const DUPLICATE_MUST_CHANGE: &str = "If you want to edit the enrolment without changing the SEMCO booking ID, \
simply do not pass the booking ID as parameter. If you want to edit the enrolment and change the SEMCO booking ID, \
make sure that you do not set it to an ID which exists somewhere else in the system already.";
const RECOMPLETION_TOO_OLD: &str = "The local_recompletion plugin is not installed or too old.";

/// The URL enrol_semco's recompletion errors point to.
pub fn recompletion_settings_url(base_url: &str, course: i64) -> String {
    format!("{}/local/recompletion/recompletion.php?id={course}", base_url.trim_end_matches('/'))
}

pub fn domain_error(error: &DomainError, base_url: &str) -> WsError {
    use DomainError::*;
    match error {
        PluginNotEnabled => semco("semcopluginnotenabled", "The SEMCO enrolment plugin is not enabled currently."),
        RecompletionNotInstalled => semco(
            "localrecompletionnotinstalled",
            format!("{RECOMPLETION_TOO_OLD} Please install / update local_recompletion to allow this webservice function to do its job."),
        ),
        CourseNotExist(id) => semco("coursenotexist", format!("The given course ({id}) does not exist.")),
        EnrolNoUserInstance(id) => {
            semco("enrolnouserinstance", format!("The given user enrolment instance ({id}) does not exist."))
        }
        UserNotExist(id) => semco("usernotexist", format!("The given user ({id}) does not exist.")),
        BookingIdEmpty => semco("bookingidempty", "The SEMCO booking ID field must not be empty."),
        BookingIdDuplicate(b) => {
            semco("bookingidduplicate", format!("There is already an enrolment instance with this SEMCO booking ID ({b})."))
        }
        BookingIdDuplicateMustChange(b) => semco(
            "bookingidduplicatemustchange",
            format!("There is already an enrolment instance with this SEMCO booking ID ({b}). {DUPLICATE_MUST_CHANGE}"),
        ),
        TimestartInvalid => semco("timestartinvalid", "The Timestart field must be greater than or equal to zero."),
        TimeendInvalid => semco("timeendinvalid", "The Timeend field must be greater than or equal to zero."),
        TimestartEndOrder => semco("timestartendorder", "The Timestart field must not be greater than the Timeend field."),
        BookingOverlap => semco(
            "bookingoverlap",
            "There is already an enrolment instance with an enrolment period which overlaps with the given enrolment period. However, overlapping enrolment periods are not supported.",
        ),
        RecompletionNotExpectable => semco(
            "localrecompletionnotexpectable",
            format!("{RECOMPLETION_TOO_OLD} Please install / update local_recompletion before you use the requirerecompletion parameter of this webservice function."),
        ),
        RecompletionNotEnabled(course) => semco(
            "localrecompletionnotenabled",
            format!(
                "Course recompletion is not enabled at all in the course's recompletion settings. Please go to {} and set the 'Recompletion type' to 'On demand'.",
                recompletion_settings_url(base_url, course.0)
            ),
        ),
        RecompletionNotOnDemand(course) => semco(
            "localrecompletionnotondemand",
            format!(
                "Course recompletion is not set to 'On demand' in the course's recompletion settings. Please go to {} and set the 'Recompletion type' to 'On demand'.",
                recompletion_settings_url(base_url, course.0)
            ),
        ),
        TimeCompletedInvalid => WsError::invalid_parameter("timecompleted must be greater than 0"),
        UnknownSetting(name) => WsError::invalid_parameter(format!("Unknown setting: {name}")),
        InvalidSettingValue { name, value } => {
            WsError::invalid_parameter(format!("Invalid value \"{value}\" for {name}"))
        }
        UnknownHealthCheck(check) => WsError::invalid_parameter(format!("Unknown health check: {check}")),
        MuteReasonInvalid => WsError::invalid_parameter("A muted check needs a reason (at most 500 characters)"),
        Manual(error) => manual_error(error),
        NotUndoable { position, why } => WsError::invalid_parameter(format!(
            "The event at position {position} cannot be undone: {why}"
        )),
        DoesNotFit(_) => dml_write(),
    }
}

/// enrol_manual's refusals, with that plugin's strings.
fn manual_error(error: &crate::domain::manual::ManualError) -> WsError {
    use crate::domain::manual::ManualError::*;
    match error {
        ContextNotExist(_) => WsError::invalid_parameter("Context does not exist"),
        CannotAssignRole { role, user, course } => semco(
            "wsusercannotassign",
            format!("You don't have the permission to assign this role ({role}) to this user ({user}) in this course ({course})."),
        ),
        NoInstance(course) => semco(
            "wsnoinstance",
            format!("Manual enrolment plugin instance doesn't exist or is disabled for the course (id = {course})"),
        ),
        UserNotExist(user) => WsError::invalid_parameter(format!("User id not exist: {user}")),
        DoesNotFit(_) => dml_write(),
    }
}

/// Moodle's `dml_missing_record_exception` for a `MUST_EXIST` read of `table`.
pub fn missing_record(table: &str) -> WsError {
    WsError::new(
        DML_MISSING_RECORD_EXCEPTION,
        "invalidrecord",
        format!("Can't find data record in database table {table}."),
    )
}

/// `core_enrol_get_enrolled_users` for a course without a context.
pub fn course_context_not_valid(course: i64) -> WsError {
    semco(
        "errorcoursecontextnotvalid",
        format!(
            "You cannot execute functions in the course context (course id:{course}). The error message was: Context does not exist"
        ),
    )
}

/// Why `core_completion_get_course_completion_status` gives no status, in Moodle's words.
pub fn status_refusal(refusal: crate::domain::criteria::StatusRefusal) -> WsError {
    use crate::domain::criteria::StatusRefusal::*;
    match refusal {
        CannotViewReport => semco("cannotviewreport", "Cannot view report"),
        UserNotEnrolled => semco("usernotenroled", "User is not enrolled in this course"),
        NoCriteriaSet => semco("nocriteriaset", "No completion criteria set for this course"),
    }
}

pub fn registry_error(error: &RegistryError) -> WsError {
    use RegistryError::*;
    match error {
        // core_user_delete_users reads the user with MUST_EXIST and deleted = 0.
        UserMissing(_) | UserDeleted(_) => WsError::new(DML_MISSING_RECORD_EXCEPTION, "invaliduser", "Invalid user"),
        AdminProtected => semco("useradminodelete", "Administrator accounts cannot be deleted."),
        SelfDelete => semco("usernotdeletederror", "User not deleted - error"),
        ShortnameTaken(name) => {
            semco("shortnametaken", format!("Short name is already used for another course ({name})"))
        }
        IdnumberTaken(idnumber) => {
            semco("courseidnumbertaken", format!("ID number is already used for another course ({idnumber})"))
        }
        DoesNotFit(_) => dml_write(),
        CategoryMissing(_) => WsError::new(
            DML_MISSING_RECORD_EXCEPTION,
            "invalidrecord",
            "Can't find data record in database table course_categories.",
        ),
        // core_course_create_courses: validate_context() of a missing category context throws
        // invalid_parameter_exception, caught and rethrown with its message.
        CategoryContextInvalid(id) => semco(
            "errorcatcontextnotvalid",
            format!("You cannot execute functions in the category context (category id:{id}). The context error message was: Invalid parameter value detected"),
        ),
        CourseMissing(_) => WsError::new(
            DML_MISSING_RECORD_EXCEPTION,
            "invalidrecord",
            "Can't find data record in database table course.",
        ),
        // The remaining ones are Moodle's invalid_parameter_exception with the text as debuginfo.
        FieldBlank(_) | InvalidAuth(_) | UsernameExists(_) | InvalidLang(_) | PasswordRequired | EmailInvalid(_)
        | EmailExists(_) | GuestProtected => WsError::invalid_parameter(error.to_string()),
    }
}

/// The warning (warningcode, message) of one user or course an update call refused; Moodle
/// catches the exception per item and reports its code and message. Codes without a language
/// string come out as "error/<code>", as Moodle prints them.
pub fn registry_warning(error: &RegistryError) -> (String, String) {
    use RegistryError::*;
    let (code, message) = match error {
        UserMissing(_) => ("invaliduserid", "Invalid user ID".to_owned()),
        AdminProtected => ("usernotupdatedadmin", "Cannot update admin accounts".to_owned()),
        UserDeleted(_) => ("usernotupdateddeleted", "error/usernotupdateddeleted".to_owned()),
        GuestProtected => ("usernotupdatedguest", "error/usernotupdatedguest".to_owned()),
        EmailInvalid(_) => ("useremailinvalid", "error/useremailinvalid".to_owned()),
        EmailExists(_) => ("useremailduplicate", "Duplicate address".to_owned()),
        // user_update_user does not look: the unique index on (mnethostid, username) refuses the row.
        UsernameExists(_) => ("dmlwriteexception", DML_WRITE_MESSAGE.to_owned()),
        CourseMissing(_) => ("invalidrecord", "Can't find data record in database table course.".to_owned()),
        other => {
            let error = registry_error(other);
            return (error.errorcode.unwrap_or_default(), error.message);
        }
    };
    (code.to_owned(), message)
}

/// Moodle's `dml_write_exception` message.
const DML_WRITE_MESSAGE: &str = "Error writing to database";

/// Maps any ledger failure; a storage failure is logged with the request id and answered with
/// Moodle's generic database write error, never with internal text.
pub fn ledger_error(error: &LedgerError, base_url: &str, request_id: &str) -> WsError {
    match error {
        LedgerError::Domain(DomainError::DoesNotFit(cause))
        | LedgerError::Registry(RegistryError::DoesNotFit(cause)) => {
            tracing::info!(request_id, %cause, "refused: Moodle's database could not hold a value");
            dml_write()
        }
        LedgerError::Domain(e) => domain_error(e, base_url),
        LedgerError::Registry(e) => registry_error(e),
        LedgerError::EventRoundTrip { event_type, reason } => {
            tracing::error!(request_id, event_type, %reason, "event failed its round trip; the request was not applied");
            dml_write()
        }
        LedgerError::Unavailable(_) | LedgerError::OutcomeUnknown(_) | LedgerError::Timeout(_) => {
            tracing::error!(request_id, cause = %error, "write failed");
            dml_write()
        }
    }
}

/// Moodle's answer when its database refuses a write (`dml_write_exception`).
pub fn dml_write() -> WsError {
    WsError::new("dml_write_exception", "dmlwriteexception", DML_WRITE_MESSAGE)
}

pub fn completions_max() -> WsError {
    semco(
        "getcoursecompletionsmaxrequest",
        format!("You passed more than the maximum amount of enrolment IDs (which is {COMPLETIONS_IDS_MAX})."),
    )
}

/// `enrol_semco_check_user_existence_by_field`'s refusals (MOODLE-REFERENCE.md §3.8).
pub fn lookup_error(error: &crate::registry::lookup::LookupError) -> WsError {
    use crate::registry::lookup::LookupError::*;
    match error {
        InvalidField(field) => semco(
            "checkuserexistenceinvalidfield",
            format!("The given field ({field}) is not valid. Allowed values are: idnumber, username, email."),
        ),
        ValueNotClean { field, value, cleaned } => WsError::invalid_parameter(format!(
            "The field '{field}' value is invalid: {value} (cleaned value: {cleaned})"
        )),
        UsersByFieldValueNotClean { field, value, cleaned } => WsError::invalid_parameter(format!(
            "The field '{field}' value is invalid: {value}(cleaned value: {cleaned})"
        )),
    }
}
