//! The writer's incremental projection writes: what one event does to the projection rows
//! (`RowWrite`), and a batch's writes merged per row (`PendingWrites`), so each row is
//! written once per batch whatever number of events touched it.
//!
//! Rows the writer cannot rebuild from its own state (a `user_enrolments` row's
//! `timecreated`, say) are changed with a `Patch`: only the columns the event changed.

use std::collections::BTreeMap;

use super::state::{CompletionRow, CriteriaRow, EnrolRow, RecompletionRow, RowKey, UserEnrolmentRow};
use crate::domain::recompletion::RecompletionType;

/// A whole projection row, written with an upsert.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Enrol(EnrolRow),
    UserEnrolment(UserEnrolmentRow),
    Completion(CompletionRow),
    Recompletion(RecompletionRow),
    CourseRecompletion { course: i64, kind: RecompletionType },
    Config { name: String, value: String },
    Criteria(CriteriaRow),
}

impl Row {
    pub fn key(&self) -> RowKey {
        match self {
            Self::Enrol(r) => RowKey::Enrol(r.id),
            Self::UserEnrolment(r) => RowKey::UserEnrolment(r.id),
            Self::Completion(r) => RowKey::Completion(r.userid, r.course),
            Self::Recompletion(r) => RowKey::Recompletion(r.id),
            Self::CourseRecompletion { course, .. } => RowKey::CourseRecompletion(*course),
            Self::Config { name, .. } => RowKey::Config(name.clone()),
            Self::Criteria(r) => RowKey::Criteria(r.course, r.criteriatype),
        }
    }
}

/// Some columns of an existing row; a row that does not exist is left alone (as the fold does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Patch {
    /// `enrol_semco_edit_enrolment`: `None` leaves the column as it is.
    UserEnrolment {
        id: i64,
        timestart: Option<i64>,
        timeend: Option<i64>,
        status: Option<i64>,
        modifierid: i64,
        timemodified: i64,
    },
    /// A booking ID moved: only `customchar1` changes (`timemodified` stays, like the plugin).
    EnrolBooking { id: i64, customchar1: String },
}

impl Patch {
    pub fn key(&self) -> RowKey {
        match self {
            Self::UserEnrolment { id, .. } => RowKey::UserEnrolment(*id),
            Self::EnrolBooking { id, .. } => RowKey::Enrol(*id),
        }
    }

    /// This patch followed by `later`, as one patch of the same row.
    fn then(self, later: Patch) -> Patch {
        match (self, later) {
            (
                Self::UserEnrolment { id, timestart, timeend, status, .. },
                Self::UserEnrolment { timestart: s2, timeend: e2, status: st2, modifierid, timemodified, .. },
            ) => Self::UserEnrolment {
                id,
                timestart: s2.or(timestart),
                timeend: e2.or(timeend),
                status: st2.or(status),
                modifierid,
                timemodified,
            },
            (_, later) => later,
        }
    }

    /// A whole row with this patch applied.
    fn apply_to(&self, row: &mut Row) {
        match (self, row) {
            (
                Self::UserEnrolment { timestart, timeend, status, modifierid, timemodified, .. },
                Row::UserEnrolment(r),
            ) => {
                r.timestart = timestart.unwrap_or(r.timestart);
                r.timeend = timeend.unwrap_or(r.timeend);
                r.status = status.unwrap_or(r.status);
                r.modifierid = *modifierid;
                r.timemodified = *timemodified;
            }
            (Self::EnrolBooking { customchar1, .. }, Row::Enrol(r)) => r.customchar1 = Some(customchar1.clone()),
            _ => {}
        }
    }
}

/// What one event does to one projection row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowWrite {
    Put(Row),
    Patch(Patch),
    Delete(RowKey),
}

/// The net effect of a batch's row writes on each row it touched.
#[derive(Debug, Clone, PartialEq)]
pub enum Pending {
    Put(Row),
    Patch(Patch),
    Delete,
}

/// A batch's row writes, merged per row in the order they were pushed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingWrites {
    pub rows: BTreeMap<RowKey, Pending>,
}

impl PendingWrites {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn push(&mut self, write: RowWrite) {
        let (key, next) = match write {
            RowWrite::Put(row) => (row.key(), Pending::Put(row)),
            RowWrite::Patch(patch) => (patch.key(), Pending::Patch(patch)),
            RowWrite::Delete(key) => (key, Pending::Delete),
        };
        let merged = match (self.rows.remove(&key), next) {
            (Some(Pending::Put(mut row)), Pending::Patch(patch)) => {
                patch.apply_to(&mut row);
                Pending::Put(row)
            }
            (Some(Pending::Patch(earlier)), Pending::Patch(patch)) => Pending::Patch(earlier.then(patch)),
            // The row is gone: a patch finds nothing to change.
            (Some(Pending::Delete), Pending::Patch(_)) => Pending::Delete,
            (_, next) => next,
        };
        self.rows.insert(key, merged);
    }

    pub fn extend(&mut self, writes: impl IntoIterator<Item = RowWrite>) {
        for write in writes {
            self.push(write);
        }
    }
}

impl PendingWrites {
    /// What the tables hold after these writes, given what they held before (a model of
    /// `tables::write_changes`, for tests that compare with the fold).
    pub fn apply_to(&self, rows: &mut BTreeMap<RowKey, Row>) {
        for (key, change) in &self.rows {
            match change {
                Pending::Put(row) => {
                    rows.insert(key.clone(), row.clone());
                }
                Pending::Patch(patch) => {
                    if let Some(row) = rows.get_mut(key) {
                        patch.apply_to(row);
                    }
                }
                Pending::Delete => {
                    rows.remove(key);
                }
            }
        }
    }
}

/// Given row writes pushed in order, then each row's net effect.
#[cfg(test)]
mod tests {
    use super::*;

    fn ue(id: i64) -> UserEnrolmentRow {
        UserEnrolmentRow {
            id,
            status: 0,
            enrolid: id,
            userid: 3,
            timestart: 10,
            timeend: 20,
            modifierid: 1,
            timecreated: 5,
            timemodified: 5,
        }
    }

    fn edit(id: i64, timestart: Option<i64>, status: Option<i64>, at: i64) -> RowWrite {
        RowWrite::Patch(Patch::UserEnrolment { id, timestart, timeend: None, status, modifierid: 9, timemodified: at })
    }

    #[test]
    fn a_patch_after_a_put_changes_the_put_row() {
        let mut pending = PendingWrites::default();
        pending.push(RowWrite::Put(Row::UserEnrolment(ue(1))));
        pending.push(edit(1, Some(11), None, 7));
        let expected = UserEnrolmentRow { timestart: 11, modifierid: 9, timemodified: 7, ..ue(1) };
        assert_eq!(pending.rows[&RowKey::UserEnrolment(1)], Pending::Put(Row::UserEnrolment(expected)));
    }

    #[test]
    fn two_patches_merge_later_columns_win_and_unset_ones_stay() {
        let mut pending = PendingWrites::default();
        pending.push(edit(1, Some(11), Some(1), 7));
        pending.push(edit(1, Some(12), None, 8));
        let merged = Patch::UserEnrolment {
            id: 1,
            timestart: Some(12),
            timeend: None,
            status: Some(1),
            modifierid: 9,
            timemodified: 8,
        };
        assert_eq!(pending.rows[&RowKey::UserEnrolment(1)], Pending::Patch(merged));
    }

    #[test]
    fn a_delete_wins_over_earlier_writes_and_a_later_patch_finds_nothing() {
        let mut pending = PendingWrites::default();
        pending.push(RowWrite::Put(Row::UserEnrolment(ue(1))));
        pending.push(RowWrite::Delete(RowKey::UserEnrolment(1)));
        pending.push(edit(1, Some(11), None, 7));
        assert_eq!(pending.rows[&RowKey::UserEnrolment(1)], Pending::Delete);
        pending.push(RowWrite::Put(Row::UserEnrolment(ue(1))));
        assert_eq!(pending.rows[&RowKey::UserEnrolment(1)], Pending::Put(Row::UserEnrolment(ue(1))));
    }

    #[test]
    fn a_booking_patch_after_a_put_moves_the_booking_of_the_put_row() {
        let enrol = EnrolRow {
            enrol: "semco",
            id: 4,
            courseid: 2,
            sortorder: 0,
            roleid: 5,
            customchar1: Some("A".into()),
            timecreated: 1,
            timemodified: 1,
        };
        let mut pending = PendingWrites::default();
        pending.push(RowWrite::Put(Row::Enrol(enrol.clone())));
        pending.push(RowWrite::Patch(Patch::EnrolBooking { id: 4, customchar1: "B".into() }));
        let moved = EnrolRow { customchar1: Some("B".into()), ..enrol };
        assert_eq!(pending.rows[&RowKey::Enrol(4)], Pending::Put(Row::Enrol(moved)));
    }
}
