//! Course recompletion settings: local_recompletion's `recompletiontype`, kept by the ledger itself.

use serde::{Deserialize, Serialize};

/// `''` (disabled), `period`, `ondemand`, `schedule`: local_recompletion's constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecompletionType {
    #[default]
    #[serde(rename = "")]
    Disabled,
    Period,
    OnDemand,
    Schedule,
}

impl RecompletionType {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "" => Some(Self::Disabled),
            "period" => Some(Self::Period),
            "ondemand" => Some(Self::OnDemand),
            "schedule" => Some(Self::Schedule),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "",
            Self::Period => "period",
            Self::OnDemand => "ondemand",
            Self::Schedule => "schedule",
        }
    }
}

/// What enrol and reset need to know about recompletion, looked up by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecompletionFacts {
    /// The ledger's `recompletion` setting: stands for "local_recompletion is installed".
    pub available: bool,
    pub course_type: RecompletionType,
}

impl RecompletionFacts {
    /// The course-level checks shared by enrol (`requirerecompletion`) and reset, in their order.
    pub fn require_on_demand(self, course: super::ids::CourseId) -> Result<(), super::DomainError> {
        match self.course_type {
            RecompletionType::Disabled => Err(super::DomainError::RecompletionNotEnabled(course)),
            RecompletionType::OnDemand => Ok(()),
            _ => Err(super::DomainError::RecompletionNotOnDemand(course)),
        }
    }
}
