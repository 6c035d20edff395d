//! Course completion criteria (Moodle's `course_completion_criteria`) of the kinds the ledger
//! can judge from recorded completions, and the pure computation of
//! `core_completion_get_course_completion_status`'s rows.
//!
//! One kind so far: Moodle's type 6 (`COMPLETION_CRITERIA_TYPE_GRADE`), "course grade with a
//! pass grade": complete when the recorded course grade reaches the pass grade.

use super::column::{Column, GradeValue};
use super::event::{CourseCompletion, CriteriaEvent};
use super::ids::CourseId;
use super::DomainError;

/// `COMPLETION_CRITERIA_TYPE_GRADE`.
pub const TYPE_GRADE: i64 = 6;
/// `COMPLETION_AGGREGATION_ALL` (1 all, 2 any).
pub const AGGREGATION_ALL: i64 = 1;
/// `$CFG->grade_decimalpoints` on a fresh site.
pub const DECIMAL_POINTS: usize = 2;

/// A course's criteria. Empty = none set (a new course, "nocriteriaset").
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Criteria {
    /// Type 6: the pass grade of the course total; `None` = not a criterion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<GradeValue>,
}

impl Criteria {
    pub fn is_empty(&self) -> bool {
        self.grade.is_none()
    }
}

/// `ledger_set_course_completion_criteria`: `gradepass` 0 or absent removes the grade criterion
/// (Moodle stores it only for a non-empty pass grade).
#[derive(Debug, Clone)]
pub struct SetCriteria {
    pub course_id: CourseId,
    pub course_exists: bool,
    pub gradepass: Option<f64>,
}

pub struct CompletionCriteria;

impl esrs::Aggregate for CompletionCriteria {
    const NAME: &'static str = "criteria";
    type State = Criteria;
    type Command = SetCriteria;
    type Event = CriteriaEvent;
    type Error = DomainError;

    fn handle_command(state: &Self::State, cmd: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        if !cmd.course_exists {
            return Err(DomainError::CourseNotExist(cmd.course_id));
        }
        let grade = match cmd.gradepass {
            Some(pass) if pass != 0.0 => Some(GradeValue::new(Column::GradeGradepass, pass)?),
            _ => None,
        };
        let new = Criteria { grade };
        Ok((*state != new)
            .then_some(CriteriaEvent::CompletionCriteriaSet { course_id: cmd.course_id, old: *state, new })
            .into_iter()
            .collect())
    }

    fn apply_event(_state: Self::State, event: Self::Event) -> Self::State {
        match event {
            CriteriaEvent::CompletionCriteriaSet { new, .. } => new,
        }
    }
}

/// What Moodle checks before it answers a status, in its order, and the facts for each.
#[derive(Debug, Clone)]
pub struct StatusFacts {
    /// The course's `enablecompletion` (the site's is always on here).
    pub completion_enabled: bool,
    /// The user has an active enrolment in the course (`is_tracked_user`).
    pub tracked: bool,
    pub criteria: Criteria,
    /// The completion the LMS recorded, if any.
    pub completion: Option<CourseCompletion>,
}

/// Why no status is given, in Moodle's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatusRefusal {
    #[error("completion is not enabled for the course")]
    CannotViewReport,
    #[error("the user is not enrolled")]
    UserNotEnrolled,
    #[error("the course has no completion criteria")]
    NoCriteriaSet,
}

/// `details` of a status row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub kind: String,
    pub criteria: String,
    pub requirement: String,
    pub status: String,
}

/// One `completions[]` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub kind: i64,
    pub title: String,
    pub status: String,
    pub complete: bool,
    /// `null` until the criterion is complete.
    pub timecompleted: Option<i64>,
    pub details: Details,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionStatus {
    pub completed: bool,
    pub aggregation: i64,
    pub completions: Vec<StatusRow>,
}

/// PHP's `format_float($value, 2)` with the English decimal point.
pub fn format_float(value: f64) -> String {
    format!("{value:.DECIMAL_POINTS$}")
}

/// `core_completion_get_course_completion_status` from the facts.
///
/// # Errors
/// The first of Moodle's refusals that applies.
pub fn status(facts: &StatusFacts) -> Result<CompletionStatus, StatusRefusal> {
    if !facts.completion_enabled {
        return Err(StatusRefusal::CannotViewReport);
    }
    if !facts.tracked {
        return Err(StatusRefusal::UserNotEnrolled);
    }
    if facts.criteria.is_empty() {
        return Err(StatusRefusal::NoCriteriaSet);
    }
    let mut rows = Vec::new();
    if let Some(pass) = facts.criteria.grade {
        let grade = facts.completion.and_then(|c| c.grade).map(|g| g.finalgrade.get());
        let required = format!("{} required", format_float(pass.get()));
        // Moodle: a grade of 0 (or none) reads "No grade"; the detail shows 0.00 though.
        let shown = match grade {
            Some(g) if g != 0.0 => format_float(g),
            _ => "No grade".to_owned(),
        };
        let complete = grade.is_some_and(|g| pass.get() <= g);
        rows.push(StatusRow {
            kind: TYPE_GRADE,
            title: "Course grade".into(),
            status: format!("{shown} ({required})"),
            complete,
            timecompleted: if complete { facts.completion.map(|c| c.timecompleted) } else { None },
            details: Details {
                kind: "Course grade".into(),
                criteria: "Required course grade".into(),
                requirement: format_float(pass.get()),
                status: grade.map(format_float).unwrap_or_default(),
            },
        });
    }
    Ok(CompletionStatus { completed: facts.completion.is_some(), aggregation: AGGREGATION_ALL, completions: rows })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Grade;
    use esrs::Aggregate;

    fn pass(v: f64) -> Criteria {
        Criteria { grade: Some(GradeValue::new(Column::GradeGradepass, v).unwrap()) }
    }

    fn completed(time: i64, grade: Option<f64>) -> CourseCompletion {
        let g = |v| GradeValue::new(Column::GradeFinalgrade, v).unwrap();
        CourseCompletion {
            timecompleted: time,
            grade: grade.map(|v| Grade { finalgrade: g(v), grademin: g(0.0), grademax: g(100.0), gradepass: g(0.0) }),
        }
    }

    fn facts() -> StatusFacts {
        StatusFacts { completion_enabled: true, tracked: true, criteria: pass(50.0), completion: None }
    }

    #[test]
    fn refusals_come_in_moodles_order() {
        let none =
            StatusFacts { completion_enabled: false, tracked: false, criteria: Criteria::default(), completion: None };
        assert_eq!(status(&none), Err(StatusRefusal::CannotViewReport));
        let none = StatusFacts { completion_enabled: true, ..none };
        assert_eq!(status(&none), Err(StatusRefusal::UserNotEnrolled));
        let none = StatusFacts { tracked: true, ..none };
        assert_eq!(status(&none), Err(StatusRefusal::NoCriteriaSet), "seed 004's 'criteria not defined'");
    }

    #[test]
    fn given_a_pass_grade_and_no_completion_then_not_complete_and_no_grade() {
        let status = status(&facts()).unwrap();
        assert!(!status.completed);
        assert_eq!(status.aggregation, 1);
        let row = &status.completions[0];
        assert_eq!((row.kind, row.title.as_str(), row.complete, row.timecompleted), (6, "Course grade", false, None));
        assert_eq!(row.status, "No grade (50.00 required)");
        assert_eq!(
            row.details,
            Details {
                kind: "Course grade".into(),
                criteria: "Required course grade".into(),
                requirement: "50.00".into(),
                status: String::new()
            }
        );
    }

    #[test]
    fn given_a_recorded_passing_grade_then_complete_at_its_time() {
        let status =
            status(&StatusFacts { completion: Some(completed(1_700_000_000, Some(85.5))), ..facts() }).unwrap();
        assert!(status.completed);
        let row = &status.completions[0];
        assert!(row.complete);
        assert_eq!(row.timecompleted, Some(1_700_000_000));
        assert_eq!(row.status, "85.50 (50.00 required)");
        assert_eq!(row.details.status, "85.50");
    }

    #[test]
    fn given_a_failing_grade_then_the_criterion_is_not_complete() {
        let status = status(&StatusFacts { completion: Some(completed(5, Some(20.0))), ..facts() }).unwrap();
        assert!(!status.completions[0].complete);
        assert_eq!(status.completions[0].timecompleted, None);
    }

    #[test]
    fn setting_criteria_is_an_event_only_on_change() {
        let set = |gradepass| SetCriteria { course_id: CourseId(2), course_exists: true, gradepass };
        let events = CompletionCriteria::handle_command(&Criteria::default(), set(Some(50.0))).unwrap();
        assert_eq!(
            events,
            vec![CriteriaEvent::CompletionCriteriaSet {
                course_id: CourseId(2),
                old: Criteria::default(),
                new: pass(50.0)
            }]
        );
        assert!(CompletionCriteria::handle_command(&pass(50.0), set(Some(50.0))).unwrap().is_empty());
        let removed = CompletionCriteria::handle_command(&pass(50.0), set(Some(0.0))).unwrap();
        assert!(matches!(removed[..], [CriteriaEvent::CompletionCriteriaSet { new: Criteria { grade: None }, .. }]));
        let missing = SetCriteria { course_exists: false, ..set(Some(1.0)) };
        assert_eq!(
            CompletionCriteria::handle_command(&Criteria::default(), missing),
            Err(DomainError::CourseNotExist(CourseId(2)))
        );
        assert!(matches!(
            CompletionCriteria::handle_command(&Criteria::default(), set(Some(1e9))),
            Err(DomainError::DoesNotFit(_))
        ));
    }
}
