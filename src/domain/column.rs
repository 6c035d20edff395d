//! What Moodle's columns can hold, so that no value reaches an event or a registry row that
//! Moodle's own database would refuse.
//!
//! Limits come from Moodle 4.5's `lib/db/install.xml`: `char(n)` columns hold n characters
//! (not bytes), `int(10)` times hold 0..=9 999 999 999, grades are `numeric(10,5)`. A value that
//! does not fit is what Moodle answers with `dmlwriteexception` ("Error writing to database")
//! when its INSERT or UPDATE fails; here the check runs last among a command's checks (the
//! write is the last step in Moodle too) and before anything is written.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// The largest `int(10)` time Moodle stores (ten digits).
pub const TIME_MAX: i64 = 9_999_999_999;
/// `numeric(10,5)`: five decimals, so the magnitude after rounding stays below 10^5.
pub const GRADE_DECIMALS: i32 = 5;
/// The first magnitude `numeric(10,5)` cannot hold.
pub const GRADE_LIMIT: f64 = 100_000.0;

/// A Moodle column the ledger fills, named `table.field` as in install.xml.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// The booking ID.
    EnrolCustomchar1,
    UserEnrolmentsTimestart,
    UserEnrolmentsTimeend,
    CourseCompletionsTimecompleted,
    GradeFinalgrade,
    GradeGrademin,
    GradeGrademax,
    GradeGradepass,
    UserUsername,
    UserFirstname,
    UserLastname,
    UserEmail,
    UserIdnumber,
    CourseFullname,
    CourseShortname,
    CourseIdnumber,
    CourseStartdate,
    CourseEnddate,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Self::EnrolCustomchar1 => "enrol.customchar1",
            Self::UserEnrolmentsTimestart => "user_enrolments.timestart",
            Self::UserEnrolmentsTimeend => "user_enrolments.timeend",
            Self::CourseCompletionsTimecompleted => "course_completions.timecompleted",
            Self::GradeFinalgrade => "grade_grades.finalgrade",
            Self::GradeGrademin => "grade_grades.rawgrademin",
            Self::GradeGrademax => "grade_grades.rawgrademax",
            Self::GradeGradepass => "grade_items.gradepass",
            Self::UserUsername => "user.username",
            Self::UserFirstname => "user.firstname",
            Self::UserLastname => "user.lastname",
            Self::UserEmail => "user.email",
            Self::UserIdnumber => "user.idnumber",
            Self::CourseFullname => "course.fullname",
            Self::CourseShortname => "course.shortname",
            Self::CourseIdnumber => "course.idnumber",
            Self::CourseStartdate => "course.startdate",
            Self::CourseEnddate => "course.enddate",
        }
    }

    /// The characters a `char(n)` column holds; `None` for numeric columns.
    pub fn chars_max(self) -> Option<usize> {
        Some(match self {
            Self::EnrolCustomchar1 | Self::UserIdnumber | Self::CourseShortname => 255,
            Self::CourseFullname => 254,
            Self::UserUsername | Self::UserFirstname | Self::UserLastname | Self::UserEmail | Self::CourseIdnumber => {
                100
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value its Moodle column cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ColumnOverflow {
    #[error("{column} holds at most {max} characters, the value has {got}")]
    TooLong { column: Column, max: usize, got: usize },
    #[error("{column} cannot hold the value (out of range or not a finite number)")]
    OutOfRange { column: Column },
}

/// Checks that `value` fits a `char(n)` column.
///
/// # Errors
/// `TooLong` when it has more characters than the column holds.
pub fn text(column: Column, value: &str) -> Result<(), ColumnOverflow> {
    let max = column.chars_max().unwrap_or(usize::MAX);
    // Counting characters is O(n): skip it when even 4 bytes per character would fit.
    if value.len() <= max {
        return Ok(());
    }
    let got = value.chars().count();
    if got > max {
        return Err(ColumnOverflow::TooLong { column, max, got });
    }
    Ok(())
}

/// Checks that a time fits an `int(10)` column: 0 ..= `TIME_MAX`.
///
/// # Errors
/// `OutOfRange` outside that range.
pub fn time(column: Column, value: i64) -> Result<i64, ColumnOverflow> {
    if (0..=TIME_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(ColumnOverflow::OutOfRange { column })
    }
}

/// A grade as Moodle's `numeric(10,5)` stores it: finite, rounded to five decimals (half away
/// from zero, as PostgreSQL and MySQL round on insert), magnitude below 10^5. It cannot be
/// constructed, nor read from a payload, out of that range.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct GradeValue(f64);

impl GradeValue {
    /// Rounds to five decimals and checks the range.
    ///
    /// # Errors
    /// `OutOfRange` for NaN, infinities and magnitudes of 10^5 or more after rounding.
    pub fn new(column: Column, value: f64) -> Result<Self, ColumnOverflow> {
        let scale = 10f64.powi(GRADE_DECIMALS);
        // Below the limit, `value * scale` < 10^10: exact enough for f64 rounding.
        if !value.is_finite() || value.abs() >= GRADE_LIMIT {
            return Err(ColumnOverflow::OutOfRange { column });
        }
        let rounded = (value * scale).round() / scale;
        if rounded.abs() >= GRADE_LIMIT {
            return Err(ColumnOverflow::OutOfRange { column });
        }
        // No negative zero: it would print as "-0.00000".
        Ok(Self(if rounded == 0.0 { 0.0 } else { rounded }))
    }

    pub fn get(self) -> f64 {
        self.0
    }

    /// A value that skips every check, for tests of what happens when one slips through.
    #[cfg(test)]
    pub(crate) fn unchecked(value: f64) -> Self {
        Self(value)
    }
}

impl TryFrom<f64> for GradeValue {
    type Error = ColumnOverflow;

    /// A stored grade must already be what `new` makes of it.
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        let checked = Self::new(Column::GradeFinalgrade, value)?;
        if checked.0 != value && !(value == 0.0 && checked.0 == 0.0) {
            return Err(ColumnOverflow::OutOfRange { column: Column::GradeFinalgrade });
        }
        Ok(checked)
    }
}

impl From<GradeValue> for f64 {
    fn from(value: GradeValue) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // given a grade, when it is made a GradeValue, then it is rounded or refused.
    #[test]
    fn grade_is_rounded_to_five_decimals_half_away_from_zero() {
        let g = |v| GradeValue::new(Column::GradeFinalgrade, v).map(GradeValue::get);
        assert_eq!(g(7.5), Ok(7.5));
        assert_eq!(g(0.123456), Ok(0.12346));
        assert_eq!(g(-0.123456), Ok(-0.12346));
        assert_eq!(g(99999.999994), Ok(99999.99999));
        assert_eq!(g(-99999.99999), Ok(-99999.99999));
        assert_eq!(g(-0.000001), Ok(0.0));
        assert!(g(-0.000001).unwrap().is_sign_positive(), "no negative zero");
    }

    #[test]
    fn grade_out_of_numeric_10_5_is_refused() {
        let refused = |v: f64| GradeValue::new(Column::GradeGrademax, v).is_err();
        for v in [1e308, 100_000.0, -100_000.0, 99999.999995, f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            assert!(refused(v), "{v}");
        }
        assert_eq!(
            GradeValue::new(Column::GradeGrademax, 1e6),
            Err(ColumnOverflow::OutOfRange { column: Column::GradeGrademax })
        );
    }

    #[test]
    fn grade_payload_round_trips_and_an_impossible_one_is_unreadable() {
        let g = GradeValue::new(Column::GradeFinalgrade, 30.12345).unwrap();
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(json, "30.12345");
        assert_eq!(serde_json::from_str::<GradeValue>(&json).unwrap(), g);
        for bad in ["null", "1e308", "100000.0", "0.123456"] {
            assert!(serde_json::from_str::<GradeValue>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_counts_characters_not_bytes() {
        assert_eq!(text(Column::EnrolCustomchar1, &"é".repeat(255)), Ok(()));
        assert_eq!(
            text(Column::EnrolCustomchar1, &"é".repeat(256)),
            Err(ColumnOverflow::TooLong { column: Column::EnrolCustomchar1, max: 255, got: 256 })
        );
        assert_eq!(text(Column::CourseFullname, &"a".repeat(254)), Ok(()));
        assert!(text(Column::CourseFullname, &"a".repeat(255)).is_err());
        assert!(text(Column::UserUsername, &"a".repeat(101)).is_err());
    }

    #[test]
    fn time_fits_int_10() {
        assert_eq!(time(Column::UserEnrolmentsTimeend, 0), Ok(0));
        assert_eq!(time(Column::UserEnrolmentsTimeend, TIME_MAX), Ok(TIME_MAX));
        assert_eq!(
            time(Column::UserEnrolmentsTimeend, TIME_MAX + 1),
            Err(ColumnOverflow::OutOfRange { column: Column::UserEnrolmentsTimeend })
        );
        assert!(time(Column::CourseStartdate, -1).is_err());
    }
}
