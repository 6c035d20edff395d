-- Read models folded from the event log. Disposable: dropped and rebuilt from the log whenever
-- PROJECTION_VERSION (src/projection/mod.rs) changes. Columns follow Moodle's tables.
CREATE TABLE enrol (
    id           INTEGER PRIMARY KEY,          -- enrolment instance id
    enrol        TEXT    NOT NULL,             -- 'semco' (one per booking) or 'manual' (one per course)
    status       INTEGER NOT NULL,             -- 0 = ENROL_INSTANCE_ENABLED
    courseid     INTEGER NOT NULL,
    sortorder    INTEGER NOT NULL,
    roleid       INTEGER NOT NULL,
    customchar1  TEXT,                         -- the SEMCO booking ID
    timecreated  INTEGER NOT NULL,
    timemodified INTEGER NOT NULL
);
CREATE INDEX enrol_courseid ON enrol (courseid);
CREATE UNIQUE INDEX enrol_customchar1 ON enrol (customchar1);

CREATE TABLE user_enrolments (
    id           INTEGER PRIMARY KEY,          -- what enrol_semco calls enrolid
    status       INTEGER NOT NULL,             -- 0 active, 1 suspended
    enrolid      INTEGER NOT NULL,             -- enrol.id
    userid       INTEGER NOT NULL,
    timestart    INTEGER NOT NULL,
    timeend      INTEGER NOT NULL,             -- 0 = no end
    modifierid   INTEGER NOT NULL,
    timecreated  INTEGER NOT NULL,
    timemodified INTEGER NOT NULL
);
CREATE INDEX user_enrolments_enrolid ON user_enrolments (enrolid);
CREATE INDEX user_enrolments_userid ON user_enrolments (userid);
-- The report's sorts by enrolment start and end (app::report): seek, ties by id.
CREATE INDEX user_enrolments_timestart ON user_enrolments (timestart, id);
CREATE INDEX user_enrolments_timeend ON user_enrolments (timeend, id);

CREATE TABLE course_completions (
    userid        INTEGER NOT NULL,
    course        INTEGER NOT NULL,
    timecompleted INTEGER NOT NULL,
    finalgrade    REAL,
    grademin      REAL,
    grademax      REAL,
    gradepass     REAL,
    PRIMARY KEY (userid, course)
);

CREATE TABLE recompletion_history (
    id             INTEGER PRIMARY KEY,        -- the log position of the reset
    userid         INTEGER NOT NULL,
    course         INTEGER NOT NULL,
    enrolid        INTEGER NOT NULL,           -- the user enrolment the reset came through
    semcobookingid TEXT,
    timecompleted  INTEGER,                    -- the archived completion; NULL when there was none
    finalgrade     REAL,
    grademin       REAL,
    grademax       REAL,
    gradepass      REAL,
    timereset      INTEGER NOT NULL
);
CREATE INDEX recompletion_history_user_course ON recompletion_history (userid, course);

CREATE TABLE course_recompletion (
    course           INTEGER PRIMARY KEY,
    recompletiontype TEXT    NOT NULL
);

-- Moodle's course_completion_criteria: criteria the ledger judges (type 6, course grade).
CREATE TABLE course_completion_criteria (
    course       INTEGER NOT NULL,
    criteriatype INTEGER NOT NULL,
    gradepass    REAL NOT NULL,
    PRIMARY KEY (course, criteriatype)
);

CREATE TABLE ledger_config (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The SEMCO enrolment report (enrol_semco's enrolreport.php columns); personal data joined from the registry.
CREATE VIEW semco_enrolment_report AS
SELECT u.id            AS moodleuserid,
       p.data          AS semcouserid,
       u.username      AS username,
       u.lastname      AS lastname,
       u.firstname     AS firstname,
       u.email         AS email,
       u.suspended     AS suspended,
       ue.id           AS enrolid,
       c.id            AS courseid,
       c.fullname      AS course,
       e.customchar1   AS semcobookingid,
       ue.timestart    AS enrolstart,
       ue.timeend      AS enrolend,
       ue.status       AS enrolstatus,
       e.enrol         AS enrolmethod
FROM user_enrolments ue
JOIN enrol e ON e.id = ue.enrolid
JOIN users u ON u.id = ue.userid AND u.deleted = 0
JOIN courses c ON c.id = e.courseid
LEFT JOIN user_profile_data p ON p.userid = u.id AND p.shortname = 'semco_userid';
