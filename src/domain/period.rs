//! Enrolment periods and the two overlap rules.
//!
//! `enrol_semco` reproduces the plugin's SQL exactly, inclusive boundaries and its three
//! undetected cases included, because SEMCO must see the same answers as from Moodle.
//! `strict` is true half-open interval overlap, for sites that want the rule the plugin meant.

use serde::{Deserialize, Serialize};

/// Start and end of an enrolment as Unix seconds; 0 means unbounded on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentPeriod {
    pub timestart: i64,
    pub timeend: i64,
}

/// Which overlap check enrol and edit apply (setting `overlap_rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlapRule {
    #[default]
    EnrolSemco,
    Strict,
}

impl OverlapRule {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "enrol_semco" => Some(Self::EnrolSemco),
            "strict" => Some(Self::Strict),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnrolSemco => "enrol_semco",
            Self::Strict => "strict",
        }
    }

    /// Whether `new` conflicts with any of the user's other SEMCO enrolments in the course.
    pub fn conflicts(self, new: EnrolmentPeriod, existing: &[EnrolmentPeriod]) -> bool {
        existing.iter().any(|old| match self {
            Self::EnrolSemco => enrol_semco_overlap(new, *old),
            Self::Strict => strict_overlap(new, *old),
        })
    }
}

/// The plugin's case formula (MOODLE-REFERENCE.md §3.7), comparisons inclusive.
fn enrol_semco_overlap(new: EnrolmentPeriod, old: EnrolmentPeriod) -> bool {
    let (start, end) = (new.timestart, new.timeend);
    let (s, e) = (old.timestart, old.timeend);
    let old_unbounded = s == 0 && e == 0;
    match (start > 0, end > 0) {
        (false, false) => true,
        (true, false) => old_unbounded || (s == 0 && e >= start) || e == 0 || s >= start,
        (false, true) => old_unbounded || (e == 0 && s <= end) || s == 0 || (e > 0 && e <= end),
        (true, true) => {
            old_unbounded || (start <= s && s <= end) || (e > 0 && start <= e && e <= end) || (s <= start && e >= end)
        }
    }
}

/// Half-open `[timestart, timeend)` with 0 as unbounded: touching periods do not overlap.
fn strict_overlap(new: EnrolmentPeriod, old: EnrolmentPeriod) -> bool {
    let upper = |end: i64| if end == 0 { i64::MAX } else { end };
    new.timestart < upper(old.timeend) && old.timestart < upper(new.timeend)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(timestart: i64, timeend: i64) -> EnrolmentPeriod {
        EnrolmentPeriod { timestart, timeend }
    }

    fn semco(new: EnrolmentPeriod, old: EnrolmentPeriod) -> bool {
        OverlapRule::EnrolSemco.conflicts(new, &[old])
    }

    fn strict(new: EnrolmentPeriod, old: EnrolmentPeriod) -> bool {
        OverlapRule::Strict.conflicts(new, &[old])
    }

    #[test]
    fn no_existing_enrolment_never_conflicts() {
        assert!(!OverlapRule::EnrolSemco.conflicts(p(0, 0), &[]));
        assert!(!OverlapRule::Strict.conflicts(p(0, 0), &[]));
    }

    #[test]
    fn unbounded_new_period_conflicts_with_anything() {
        assert!(semco(p(0, 0), p(100, 200)));
        assert!(semco(p(0, 0), p(0, 0)));
    }

    #[test]
    fn touching_periods_overlap_under_enrol_semco_but_not_strict() {
        assert!(semco(p(200, 300), p(100, 200)));
        assert!(semco(p(100, 200), p(200, 300)));
        assert!(!strict(p(200, 300), p(100, 200)));
        assert!(!strict(p(100, 200), p(200, 300)));
    }

    #[test]
    fn disjoint_bounded_periods_do_not_overlap() {
        assert!(!semco(p(300, 400), p(100, 200)));
        assert!(!strict(p(300, 400), p(100, 200)));
    }

    #[test]
    fn open_ended_new_period_cases() {
        assert!(semco(p(100, 0), p(0, 0)));
        assert!(semco(p(100, 0), p(0, 150)));
        assert!(!semco(p(100, 0), p(0, 50)));
        assert!(semco(p(100, 0), p(50, 0)));
        assert!(semco(p(100, 0), p(150, 200)));
    }

    #[test]
    fn open_start_new_period_cases() {
        assert!(semco(p(0, 100), p(50, 0)));
        assert!(!semco(p(0, 100), p(150, 0)));
        assert!(semco(p(0, 100), p(0, 500)));
        assert!(semco(p(0, 100), p(20, 80)));
        assert!(!semco(p(0, 100), p(150, 200)));
    }

    #[test]
    fn bounded_new_period_cases() {
        assert!(semco(p(100, 200), p(0, 0)));
        assert!(semco(p(100, 200), p(150, 300)));
        assert!(semco(p(100, 200), p(50, 150)));
        assert!(semco(p(100, 200), p(50, 250)));
        assert!(!semco(p(100, 200), p(250, 300)));
    }

    // The three gaps of the plugin's formula, replicated on purpose (§3.7).
    #[test]
    fn gap_open_ended_new_inside_existing_bounded_is_not_detected() {
        assert!(!semco(p(150, 0), p(100, 200)));
        assert!(strict(p(150, 0), p(100, 200)));
    }

    #[test]
    fn gap_open_start_new_ending_inside_existing_bounded_is_not_detected() {
        assert!(!semco(p(0, 150), p(100, 200)));
        assert!(strict(p(0, 150), p(100, 200)));
    }

    #[test]
    fn gap_bounded_new_after_start_of_existing_open_ended_is_not_detected() {
        assert!(!semco(p(150, 300), p(100, 0)));
        assert!(strict(p(150, 300), p(100, 0)));
    }

    #[test]
    fn strict_open_periods() {
        assert!(strict(p(0, 0), p(5, 6)));
        assert!(strict(p(100, 0), p(0, 101)));
        assert!(!strict(p(100, 0), p(0, 100)));
    }
}
