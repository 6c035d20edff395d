//! The configuration aggregate: the ledger's five settings, changed only by events so that an
//! auditor sees when the SEMCO role or a rule changed.

use super::event::ConfigEvent;
use super::ids::RoleId;
use super::period::OverlapRule;
use super::DomainError;

/// The SEMCO role on a fresh install: Moodle's `student`.
pub const DEFAULT_ROLE: RoleId = RoleId(5);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub enabled: bool,
    pub role: RoleId,
    pub recompletion: bool,
    pub overlap_rule: OverlapRule,
    pub allow_accounts_same_email: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            role: DEFAULT_ROLE,
            recompletion: true,
            overlap_rule: OverlapRule::EnrolSemco,
            allow_accounts_same_email: false,
        }
    }
}

/// The setting names, in the order `ledger_get_config` lists them.
pub const SETTING_NAMES: [&str; 5] = ["enabled", "role", "recompletion", "overlap_rule", "allowaccountssameemail"];

impl Settings {
    /// The stored text of a setting, as `ledger_get_config` returns it.
    pub fn get(&self, name: &str) -> Option<String> {
        let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
        Some(match name {
            "enabled" => flag(self.enabled),
            "role" => self.role.to_string(),
            "recompletion" => flag(self.recompletion),
            "overlap_rule" => self.overlap_rule.as_str().to_owned(),
            "allowaccountssameemail" => flag(self.allow_accounts_same_email),
            _ => return None,
        })
    }

    /// Sets a setting from its canonical text; `None` when the text is not valid for it.
    fn set(&mut self, name: &str, value: &str) -> Option<()> {
        let flag = |v: &str| match v {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        };
        match name {
            "enabled" => self.enabled = flag(value)?,
            "role" => self.role = RoleId(value.parse().ok()?),
            "recompletion" => self.recompletion = flag(value)?,
            "overlap_rule" => self.overlap_rule = OverlapRule::parse(value)?,
            "allowaccountssameemail" => self.allow_accounts_same_email = flag(value)?,
            _ => return None,
        }
        Some(())
    }
}

/// `ledger_set_config`; `known_roles` are the role ids that exist.
#[derive(Debug, Clone)]
pub struct SetConfig {
    pub name: String,
    pub value: String,
    pub known_roles: Vec<RoleId>,
}

pub struct Config;

impl esrs::Aggregate for Config {
    const NAME: &'static str = "config";
    type State = Settings;
    type Command = SetConfig;
    type Event = ConfigEvent;
    type Error = DomainError;

    fn handle_command(state: &Self::State, cmd: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let old = state.get(&cmd.name).ok_or_else(|| DomainError::UnknownSetting(cmd.name.clone()))?;
        let invalid = || DomainError::InvalidSettingValue { name: cmd.name.clone(), value: cmd.value.clone() };
        let mut next = state.clone();
        next.set(&cmd.name, &cmd.value).ok_or_else(invalid)?;
        if cmd.name == "role" && !cmd.known_roles.contains(&next.role) {
            return Err(invalid());
        }
        // Canonical text, so "05" can never be stored for role 5.
        let new = next.get(&cmd.name).unwrap_or_default();
        if new != cmd.value {
            return Err(invalid());
        }
        Ok((old != new).then_some(ConfigEvent::ConfigChanged { name: cmd.name, old, new }).into_iter().collect())
    }

    fn apply_event(mut state: Self::State, event: Self::Event) -> Self::State {
        match event {
            ConfigEvent::ConfigChanged { name, new, .. } => {
                // Only validated values reach the log; an unknown name from a future version is ignored.
                let _ = state.set(&name, &new);
                state
            }
        }
    }
}
