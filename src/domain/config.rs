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
    /// Which optional columns the SEMCO enrolment report shows (ids of
    /// `OPTIONAL_REPORT_COLUMNS`, in that order). Setting `report_columns`: the ids
    /// comma-separated, empty for none. Absent in older logs and snapshots: all of them.
    #[serde(default = "all_optional_report_columns")]
    pub report_columns: Vec<String>,
    /// The report's initial sort. Setting `report_sort`: `COLUMN asc|desc`.
    #[serde(default)]
    pub report_sort: ReportSort,
}

/// The report columns a manager may hide (the plugin's 2026 optional columns), in display
/// order: full name with the initials bar, course completion status, date and grade, and the
/// SEMCO profile fields company, birthday, place of birth and tenant.
pub const OPTIONAL_REPORT_COLUMNS: [&str; 8] = [
    "fullname",
    "completionstatus",
    "timecompleted",
    "grade",
    "semcousercompany",
    "semcouserbirthday",
    "semcouserplaceofbirth",
    "semcobranchtoken",
];

/// The report's columns that are always shown (MOODLE-REFERENCE §4.4), each sortable.
pub const BASE_REPORT_COLUMNS: [&str; 14] = [
    "moodleuserid",
    "semcouserid",
    "username",
    "lastname",
    "firstname",
    "email",
    "suspended",
    "enrolid",
    "courseid",
    "course",
    "semcobookingid",
    "enrolstart",
    "enrolend",
    "enrolstatus",
];

fn all_optional_report_columns() -> Vec<String> {
    OPTIONAL_REPORT_COLUMNS.iter().map(|c| (*c).to_owned()).collect()
}

/// The report's initial sort: a column of `BASE_REPORT_COLUMNS` or `OPTIONAL_REPORT_COLUMNS`
/// and a direction. Default: enrolment id ascending (the plugin sorts by `ue.id`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportSort {
    pub column: String,
    pub descending: bool,
}

impl Default for ReportSort {
    fn default() -> Self {
        Self { column: "enrolid".to_owned(), descending: false }
    }
}

impl ReportSort {
    /// The canonical text: `COLUMN asc` or `COLUMN desc`.
    pub fn as_text(&self) -> String {
        format!("{} {}", self.column, if self.descending { "desc" } else { "asc" })
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (column, direction) = text.split_once(' ')?;
        let known = BASE_REPORT_COLUMNS.contains(&column) || OPTIONAL_REPORT_COLUMNS.contains(&column);
        let descending = match direction {
            "asc" => false,
            "desc" => true,
            _ => return None,
        };
        known.then(|| Self { column: column.to_owned(), descending })
    }
}

/// `report_columns` text → the ids, refusing unknown or repeated ones and any other order than
/// `OPTIONAL_REPORT_COLUMNS`' (so each set has one text).
fn parse_report_columns(text: &str) -> Option<Vec<String>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let ids: Vec<&str> = text.split(',').collect();
    let positions: Option<Vec<usize>> =
        ids.iter().map(|id| OPTIONAL_REPORT_COLUMNS.iter().position(|c| c == id)).collect();
    let positions = positions?;
    positions.windows(2).all(|w| w[0] < w[1]).then(|| ids.iter().map(|id| (*id).to_owned()).collect())
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            enabled: true,
            role: DEFAULT_ROLE,
            recompletion: true,
            overlap_rule: OverlapRule::EnrolSemco,
            allow_accounts_same_email: false,
            report_columns: all_optional_report_columns(),
            report_sort: ReportSort::default(),
        }
    }
}

/// The setting names, in the order `ledger_get_config` lists them.
pub const SETTING_NAMES: [&str; 5] = ["enabled", "role", "recompletion", "overlap_rule", "allowaccountssameemail"];

/// The report's display settings (set like the others, through `SetConfig`: the /settings page
/// or `ledger_set_config`); `ledger_get_config` keeps listing the five above only.
pub const REPORT_SETTING_NAMES: [&str; 2] = ["report_columns", "report_sort"];

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
            "report_columns" => self.report_columns.join(","),
            "report_sort" => self.report_sort.as_text(),
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
            "report_columns" => self.report_columns = parse_report_columns(value)?,
            "report_sort" => self.report_sort = ReportSort::parse(value)?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use esrs::Aggregate;

    fn set(name: &str, value: &str) -> SetConfig {
        SetConfig { name: name.into(), value: value.into(), known_roles: vec![RoleId(5)] }
    }

    // given the defaults, when report_columns is set to two columns in display order, then one
    // ConfigChanged from all columns to those two; folded, the settings show only them.
    #[test]
    fn report_columns_change_is_an_event() {
        let events = Config::handle_command(&Settings::default(), set("report_columns", "fullname,grade")).unwrap();
        assert_eq!(
            events,
            vec![ConfigEvent::ConfigChanged {
                name: "report_columns".into(),
                old: OPTIONAL_REPORT_COLUMNS.join(","),
                new: "fullname,grade".into()
            }]
        );
        let state = events.into_iter().fold(Settings::default(), Config::apply_event);
        assert_eq!(state.report_columns, vec!["fullname".to_owned(), "grade".to_owned()]);
        let none = Config::handle_command(&state, set("report_columns", "")).unwrap();
        assert_eq!(none.into_iter().fold(state, Config::apply_event).report_columns, Vec::<String>::new());
    }

    // given any settings, when report_columns names an unknown, repeated or out-of-order
    // column, or report_sort an unknown column or direction, then the value is refused.
    #[test]
    fn report_settings_refuse_bad_values() {
        for (name, value) in [
            ("report_columns", "colour"),
            ("report_columns", "grade,fullname"),
            ("report_columns", "grade,grade"),
            ("report_columns", "fullname,"),
            ("report_sort", "lastname"),
            ("report_sort", "lastname up"),
            ("report_sort", "password asc"),
            ("report_sort", "lastname  asc"),
        ] {
            assert!(
                matches!(
                    Config::handle_command(&Settings::default(), set(name, value)),
                    Err(DomainError::InvalidSettingValue { .. })
                ),
                "{name}={value}"
            );
        }
    }

    // given the default sort (enrolid asc), when report_sort is set to lastname desc, then the
    // event carries old and new text and the fold gives the typed sort.
    #[test]
    fn report_sort_change_is_an_event() {
        let events = Config::handle_command(&Settings::default(), set("report_sort", "lastname desc")).unwrap();
        assert_eq!(
            events,
            vec![ConfigEvent::ConfigChanged {
                name: "report_sort".into(),
                old: "enrolid asc".into(),
                new: "lastname desc".into()
            }]
        );
        let state = events.into_iter().fold(Settings::default(), Config::apply_event);
        assert_eq!(state.report_sort, ReportSort { column: "lastname".into(), descending: true });
    }

    // given settings serialised before the report settings existed, when they are read, then
    // the report settings have their defaults.
    #[test]
    fn old_settings_decode_with_report_defaults() {
        let old = r#"{"enabled":true,"role":5,"recompletion":false,"overlap_rule":"enrol_semco","allow_accounts_same_email":false}"#;
        let settings: Settings = serde_json::from_str(old).unwrap();
        assert_eq!(settings.report_columns, all_optional_report_columns());
        assert_eq!(settings.report_sort, ReportSort::default());
        assert!(!settings.recompletion);
    }
}
