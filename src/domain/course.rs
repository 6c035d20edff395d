//! The course aggregate: per-course settings that are history-worthy (recompletion type).

use super::event::CourseEvent;
use super::ids::CourseId;
use super::recompletion::RecompletionType;
use super::DomainError;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CourseState {
    pub recompletion_type: RecompletionType,
}

/// `ledger_set_course_recompletion`.
#[derive(Debug, Clone)]
pub struct SetRecompletionType {
    pub course_id: CourseId,
    pub course_exists: bool,
    pub recompletion_type: String,
}

pub struct Course;

impl esrs::Aggregate for Course {
    const NAME: &'static str = "course";
    type State = CourseState;
    type Command = SetRecompletionType;
    type Event = CourseEvent;
    type Error = DomainError;

    fn handle_command(state: &Self::State, cmd: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        // The type is a parameter: validated before the course check (WS-CONTRACT §7).
        let new = RecompletionType::parse(&cmd.recompletion_type).ok_or_else(|| DomainError::InvalidSettingValue {
            name: "recompletiontype".into(),
            value: cmd.recompletion_type.clone(),
        })?;
        if !cmd.course_exists {
            return Err(DomainError::CourseNotExist(cmd.course_id));
        }
        let old = state.recompletion_type;
        Ok((old != new)
            .then_some(CourseEvent::RecompletionTypeSet { course_id: cmd.course_id, old, new })
            .into_iter()
            .collect())
    }

    fn apply_event(_state: Self::State, event: Self::Event) -> Self::State {
        match event {
            CourseEvent::RecompletionTypeSet { new, .. } => CourseState { recompletion_type: new },
        }
    }
}
