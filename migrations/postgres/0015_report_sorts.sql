-- The SEMCO enrolment report (app::report) sorted by a person's name or e-mail: the users in
-- the sort's order, ties by id, so a page of the report seeks instead of sorting every user.
-- (The report's sorts on user_enrolments columns have their indexes in the projection schema.)
CREATE INDEX users_report_lastname ON users (lastname, id);
CREATE INDEX users_report_firstname ON users (firstname, id);
CREATE INDEX users_report_email ON users (email, id);
