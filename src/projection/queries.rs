//! The named read queries over the projection tables, shared by the API and the plan checks in
//! `tests/it/query_plans.rs` (which assert, on both backends, that each is answered from an
//! index on tables large enough for the planner to care).

/// `enrol_semco_get_enrolments`: one course's SEMCO user enrolments, by `enrolid`. `$1` is the
/// course id.
pub const COURSE_ENROLMENTS: &str = "SELECT ue.id, ue.userid, e.customchar1, ue.timestart, ue.timeend, ue.status \
     FROM user_enrolments ue JOIN enrol e ON e.id = ue.enrolid \
     WHERE e.courseid = $1 AND e.enrol = 'semco' ORDER BY ue.id";

/// The SEMCO enrolment report of one course (the view `semco_enrolment_report`). `$1` is the
/// course id.
pub const COURSE_REPORT: &str = "SELECT * FROM semco_enrolment_report WHERE courseid = $1 ORDER BY enrolid";
