//! The completion aggregate: one stream per (user, course), like Moodle's `course_completions`.
//!
//! A reset comes through a SEMCO user enrolment; the writer resolves the enrolment and hands
//! it in (`None` when the id names no live user enrolment, so the error comes out in order).

use super::column::{self, Column, GradeValue};
use super::event::{CompletionEvent, CourseCompletion, Grade};
use super::ids::{BookingId, CourseId, UserEnrolmentId, UserId};
use super::recompletion::RecompletionFacts;
use super::DomainError;

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompletionState {
    pub current: Option<CourseCompletion>,
}

/// A live user enrolment as the reset sees it.
#[derive(Debug, Clone)]
pub struct ResetTarget {
    pub user_enrolment_id: UserEnrolmentId,
    pub user_id: UserId,
    pub course_id: CourseId,
    pub booking_id: BookingId,
    pub user_exists: bool,
}

/// Grade parameters of `ledger_record_course_completion` as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct GradeInput {
    pub finalgrade: Option<f64>,
    pub grademin: Option<f64>,
    pub grademax: Option<f64>,
    pub gradepass: Option<f64>,
}

impl GradeInput {
    /// The grade as Moodle stores it: bounds default to 0–100 and pass 0, each rounded to
    /// numeric(10,5) or refused.
    fn recorded(self, finalgrade: f64) -> Result<Grade, column::ColumnOverflow> {
        Ok(Grade {
            finalgrade: GradeValue::new(Column::GradeFinalgrade, finalgrade)?,
            grademin: GradeValue::new(Column::GradeGrademin, self.grademin.unwrap_or(0.0))?,
            grademax: GradeValue::new(Column::GradeGrademax, self.grademax.unwrap_or(100.0))?,
            gradepass: GradeValue::new(Column::GradeGradepass, self.gradepass.unwrap_or(0.0))?,
        })
    }
}

#[derive(Debug, Clone)]
pub enum CompletionCommand {
    /// `ledger_record_course_completion`.
    Record {
        user_id: UserId,
        user_exists: bool,
        course_id: CourseId,
        course_exists: bool,
        timecompleted: i64,
        grade: GradeInput,
    },
    /// `enrol_semco_reset_course_completion`.
    Reset { plugin_enabled: bool, requested_id: i64, target: Option<ResetTarget>, recompletion: RecompletionFacts },
}

pub struct Completion;

impl esrs::Aggregate for Completion {
    const NAME: &'static str = "completion";
    type State = CompletionState;
    type Command = CompletionCommand;
    type Event = CompletionEvent;
    type Error = DomainError;

    fn handle_command(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        match command {
            CompletionCommand::Record { user_id, user_exists, course_id, course_exists, timecompleted, grade } => {
                // Parameter validation first, then course before user (WS-CONTRACT §7).
                if timecompleted <= 0 {
                    return Err(DomainError::TimeCompletedInvalid);
                }
                if !course_exists {
                    return Err(DomainError::CourseNotExist(course_id));
                }
                if !user_exists {
                    return Err(DomainError::UserNotExist(user_id));
                }
                // What the database would refuse, last: numeric(10,5) grades, an int(10) time.
                let timecompleted = column::time(Column::CourseCompletionsTimecompleted, timecompleted)?;
                let grade = grade.finalgrade.map(|finalgrade| grade.recorded(finalgrade)).transpose()?;
                Ok(vec![CompletionEvent::CompletionRecorded {
                    user_id,
                    course_id,
                    completion: CourseCompletion { timecompleted, grade },
                }])
            }
            CompletionCommand::Reset { plugin_enabled, requested_id, target, recompletion } => {
                if !plugin_enabled {
                    return Err(DomainError::PluginNotEnabled);
                }
                if !recompletion.available {
                    return Err(DomainError::RecompletionNotInstalled);
                }
                let target = target.ok_or(DomainError::EnrolNoUserInstance(requested_id))?;
                if !target.user_exists {
                    return Err(DomainError::UserNotExist(target.user_id));
                }
                recompletion.require_on_demand(target.course_id)?;
                Ok(vec![CompletionEvent::CompletionReset {
                    user_id: target.user_id,
                    course_id: target.course_id,
                    user_enrolment_id: target.user_enrolment_id,
                    archived: state.current,
                }])
            }
        }
    }

    fn apply_event(_state: Self::State, event: Self::Event) -> Self::State {
        match event {
            CompletionEvent::CompletionRecorded { completion, .. } => CompletionState { current: Some(completion) },
            CompletionEvent::CompletionReset { .. } => CompletionState { current: None },
        }
    }
}
