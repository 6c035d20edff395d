//! Typed identifiers of the domain, so a course id can never be passed where a user id belongs.
//!
//! The numeric ids keep Moodle's meanings: `InstanceId` is `enrol.id` (one enrolment instance per
//! booking), `UserEnrolmentId` is `user_enrolments.id` (what enrol_semco's web services call
//! `enrolid`).

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

/// A SEMCO booking ID as stored in `enrol.customchar1`: never empty, never `"0"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BookingId(String);

impl BookingId {
    /// Accepts what PHP's `empty()` does not consider empty: anything but `""` and `"0"`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "" | "0" => None,
            _ => Some(Self(raw.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
