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

/// The columns of the SEMCO enrolment report (`app::report`), in `ReportRow::from_sql`'s order.
pub const REPORT_SELECT: &str = "SELECT ue.id, u.id, psu.data, u.username, u.lastname, u.firstname, u.email, \
     CAST(u.suspended AS BIGINT), e.courseid, c.fullname, e.customchar1, ue.timestart, ue.timeend, \
     CAST(ue.status AS BIGINT), cc.timecompleted, cc.finalgrade, pco.data, pbd.data, ppb.data, ptn.data";

/// The report's rows: every user enrolment of a SEMCO instance whose user is not deleted (as
/// the plugin), with its course, completion and the SEMCO profile fields (each join is one
/// primary-key probe).
pub const REPORT_FROM: &str = "FROM user_enrolments ue \
     JOIN enrol e ON e.id = ue.enrolid AND e.enrol = 'semco' \
     JOIN users u ON u.id = ue.userid AND u.deleted = 0 \
     JOIN courses c ON c.id = e.courseid \
     LEFT JOIN user_profile_data psu ON psu.userid = ue.userid AND psu.shortname = 'semco_userid' \
     LEFT JOIN user_profile_data pco ON pco.userid = ue.userid AND pco.shortname = 'semco_usercompany' \
     LEFT JOIN user_profile_data pbd ON pbd.userid = ue.userid AND pbd.shortname = 'semco_userbirthday' \
     LEFT JOIN user_profile_data ppb ON ppb.userid = ue.userid AND ppb.shortname = 'semco_userplaceofbirth' \
     LEFT JOIN user_profile_data ptn ON ptn.userid = ue.userid AND ptn.shortname = 'semco_branchtoken' \
     LEFT JOIN course_completions cc ON cc.userid = ue.userid AND cc.course = e.courseid";
