DROP VIEW IF EXISTS semco_enrolment_report;
DROP TABLE IF EXISTS enrol;
DROP TABLE IF EXISTS user_enrolments;
DROP TABLE IF EXISTS course_completions;
DROP TABLE IF EXISTS recompletion_history;
DROP TABLE IF EXISTS course_recompletion;
DROP TABLE IF EXISTS ledger_config;
DROP TABLE IF EXISTS course_completion_criteria;
