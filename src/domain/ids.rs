//! Typed identifiers of the domain, so a course id can never be passed where a user id belongs.
//!
//! The numeric ids keep Moodle's meanings: `InstanceId` is `enrol.id` (one enrolment instance per
//! booking), `UserEnrolmentId` is `user_enrolments.id` (what enrol_semco's web services call
//! `enrolid`).

use super::column::{self, Column, ColumnOverflow};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

numeric_id!(
    /// `user.id`: a Moodle user in the registry.
    UserId
);
numeric_id!(
    /// `course.id`.
    CourseId
);
numeric_id!(
    /// `enrol.id`: the enrolment instance dedicated to one SEMCO booking.
    InstanceId
);
numeric_id!(
    /// `user_enrolments.id`: the `enrolid` of enrol_semco's web services.
    UserEnrolmentId
);
numeric_id!(
    /// `role.id`: the role an enrolment assigns.
    RoleId
);

/// A SEMCO booking ID as stored in `enrol.customchar1`: never empty, never `"0"`, at most 255
/// characters. Payloads are read through the same check, so no event can hold another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BookingId(String);

/// Why a text is not a booking ID, in the order enrol_semco meets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BookingIdError {
    /// PHP's `empty()`: the plugin's own check, `bookingidempty`.
    #[error("booking ID is empty")]
    Empty,
    /// `customchar1` cannot hold it: Moodle's database refuses the write.
    #[error(transparent)]
    DoesNotFit(#[from] ColumnOverflow),
}

impl BookingId {
    /// Accepts what PHP's `empty()` does not consider empty (anything but `""` and `"0"`) and
    /// what `enrol.customchar1` can hold.
    ///
    /// # Errors
    /// `Empty` for `""` and `"0"`; `DoesNotFit` beyond 255 characters.
    pub fn parse(raw: &str) -> Result<Self, BookingIdError> {
        match raw {
            "" | "0" => Err(BookingIdError::Empty),
            _ => {
                column::text(Column::EnrolCustomchar1, raw)?;
                Ok(Self(raw.to_owned()))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BookingId {
    type Error = BookingIdError;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<BookingId> for String {
    fn from(id: BookingId) -> Self {
        id.0
    }
}

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // given a raw booking ID, when it is parsed, then it is one or says why not.
    #[test]
    fn booking_id_is_never_empty_and_fits_customchar1() {
        assert_eq!(BookingId::parse(""), Err(BookingIdError::Empty));
        assert_eq!(BookingId::parse("0"), Err(BookingIdError::Empty));
        assert_eq!(BookingId::parse(&"b".repeat(255)).map(|b| b.as_str().len()), Ok(255));
        assert_eq!(
            BookingId::parse(&"b".repeat(256)),
            Err(BookingIdError::DoesNotFit(ColumnOverflow::TooLong {
                column: Column::EnrolCustomchar1,
                max: 255,
                got: 256
            }))
        );
    }

    #[test]
    fn booking_id_payload_is_read_through_the_same_check() {
        let id: BookingId = serde_json::from_str("\"B-1\"").unwrap();
        assert_eq!(id.as_str(), "B-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"B-1\"");
        assert!(serde_json::from_str::<BookingId>("\"0\"").is_err());
        assert!(serde_json::from_str::<BookingId>(&format!("\"{}\"", "b".repeat(256))).is_err());
    }
}
