//! Muting health checks (issue 11 item 3): a manager mutes one check by its id with a reason,
//! or unmutes it. The state is the small set of muted checks (stream `health/site`).

use std::collections::BTreeMap;

use super::event::{ChangedBy, HealthEvent};
use super::DomainError;

/// The id of every health check (`app::health` evaluates them), in the order they are shown.
pub const CHECK_IDS: [&str; 15] = [
    "semco_service",
    "semco_service_user",
    "semco_token",
    "semco_token_expiry",
    "semco_token_ip",
    "semco_role",
    "plugin_enabled",
    "semco_profile_fields",
    "recompletion",
    "database_durability",
    "writer",
    "last_verify",
    "last_checkpoint",
    "projection_version",
    "disk_space",
];

/// The longest mute reason kept (characters).
pub const MUTE_REASON_MAX: usize = 500;

/// The muted checks: check id → the reason it was muted with.
pub type Muted = BTreeMap<String, String>;

/// Mute or unmute one check; `known_checks` are the check ids that exist.
#[derive(Debug, Clone)]
pub enum MuteCommand {
    Mute { check: String, reason: String, by: ChangedBy, known_checks: Vec<String> },
    Unmute { check: String, by: ChangedBy },
}

pub struct HealthMutes;

impl esrs::Aggregate for HealthMutes {
    const NAME: &'static str = "health";
    type State = Muted;
    type Command = MuteCommand;
    type Event = HealthEvent;
    type Error = DomainError;

    fn handle_command(state: &Self::State, cmd: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        match cmd {
            MuteCommand::Mute { check, reason, by, known_checks } => {
                if !known_checks.contains(&check) {
                    return Err(DomainError::UnknownHealthCheck(check));
                }
                let reason = reason.trim().to_owned();
                if reason.is_empty() || reason.chars().count() > MUTE_REASON_MAX {
                    return Err(DomainError::MuteReasonInvalid);
                }
                // Muting a muted check with the same reason changes nothing: no event.
                if state.get(&check) == Some(&reason) {
                    return Ok(Vec::new());
                }
                Ok(vec![HealthEvent::CheckMuted { check, reason, by }])
            }
            // Unmuting a check that is not muted changes nothing (any id: a check that a later
            // version no longer has can still be unmuted).
            MuteCommand::Unmute { check, by } => {
                Ok(state.contains_key(&check).then_some(HealthEvent::CheckUnmuted { check, by }).into_iter().collect())
            }
        }
    }

    fn apply_event(mut state: Self::State, event: Self::Event) -> Self::State {
        match event {
            HealthEvent::CheckMuted { check, reason, .. } => {
                state.insert(check, reason);
            }
            HealthEvent::CheckUnmuted { check, .. } => {
                state.remove(&check);
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esrs::Aggregate;

    fn by() -> ChangedBy {
        ChangedBy { via: "web".into(), account_id: Some(1), account: "maria".into() }
    }

    fn mute(check: &str, reason: &str) -> MuteCommand {
        MuteCommand::Mute {
            check: check.into(),
            reason: reason.into(),
            by: by(),
            known_checks: vec!["semco_token_ip".into(), "disk_space".into()],
        }
    }

    // given nothing muted, when a manager mutes a known check with a reason, then one CheckMuted
    // event names the check, the reason and the account; folded, the check is muted.
    #[test]
    fn muting_a_known_check_records_who_and_why() {
        let events =
            HealthMutes::handle_command(&Muted::new(), mute("semco_token_ip", " SEMCO has no fixed IP ")).unwrap();
        assert_eq!(
            events,
            vec![HealthEvent::CheckMuted {
                check: "semco_token_ip".into(),
                reason: "SEMCO has no fixed IP".into(),
                by: by()
            }]
        );
        let state = events.into_iter().fold(Muted::new(), HealthMutes::apply_event);
        assert_eq!(state.get("semco_token_ip").map(String::as_str), Some("SEMCO has no fixed IP"));
    }

    // given any state, when the check is unknown or the reason empty, then the command is refused.
    #[test]
    fn muting_needs_a_known_check_and_a_reason() {
        assert!(matches!(
            HealthMutes::handle_command(&Muted::new(), mute("nope", "x")),
            Err(DomainError::UnknownHealthCheck(c)) if c == "nope"
        ));
        assert!(matches!(
            HealthMutes::handle_command(&Muted::new(), mute("disk_space", "  ")),
            Err(DomainError::MuteReasonInvalid)
        ));
        let long = "x".repeat(MUTE_REASON_MAX + 1);
        assert!(matches!(
            HealthMutes::handle_command(&Muted::new(), mute("disk_space", &long)),
            Err(DomainError::MuteReasonInvalid)
        ));
    }

    // given a muted check, when it is muted again with the same reason, then nothing happens;
    // when it is unmuted, then one CheckUnmuted; unmuting it again gives nothing.
    #[test]
    fn mute_and_unmute_are_idempotent() {
        let state = Muted::from([("disk_space".to_owned(), "small disk".to_owned())]);
        assert!(HealthMutes::handle_command(&state, mute("disk_space", "small disk")).unwrap().is_empty());
        assert_eq!(HealthMutes::handle_command(&state, mute("disk_space", "other")).unwrap().len(), 1);
        let unmute = || MuteCommand::Unmute { check: "disk_space".into(), by: by() };
        let events = HealthMutes::handle_command(&state, unmute()).unwrap();
        assert_eq!(events, vec![HealthEvent::CheckUnmuted { check: "disk_space".into(), by: by() }]);
        let state = events.into_iter().fold(state, HealthMutes::apply_event);
        assert!(state.is_empty());
        assert!(HealthMutes::handle_command(&state, unmute()).unwrap().is_empty());
    }
}
