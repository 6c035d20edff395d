//! The writer's open enrolment streams (live and orphaned SEMCO instances) and the indexes its
//! decisions read, in as little memory as they can take (issue 7: at 555,000 live enrolments
//! one `HashMap` per index and a `String` per booking ID were about 550 bytes per enrolment).
//!
//! One `Open` record per instance, in a `projection::rowmap::RowMap` (pages of ids, each
//! holding only its present records, packed; an ordered map grown one insert at a time kept its
//! nodes half full: the writer's state folded from a 1M-event log took 138 MiB, with pages
//! 99 MiB); every index is an ordered set of small keys that points back at it, so there is
//! no second copy of a booking ID or a period:
//! - `bookings`: (keyed hash of the booking ID, instance); a lookup reads the few instances of
//!   one hash and compares the record's booking ID, so a hash collision cannot mislead it;
//! - `live`: (user, course, instance) of live enrolments: one user's, and one user's in one
//!   course, are ranges;
//! - `by_course`: (course, sortorder, instance) of open instances, for the next sortorder;
//! - `by_user_enrolment`: user enrolment id → instance of live enrolments;
//! - `orphans`: instances emptied by a user deletion.
//!
//! Ordered maps built from sorted input (`from_sorted`, a snapshot load) are packed full, and
//! none of them doubles its capacity as a hash map does. Every step is O(log n).
//!
//! Ids (instance, user enrolment, user, course) are held as `u32`: the ledger assigns all four
//! itself, in order from 1, so they reach 2^32 only after four billion creations; a record
//! that does not fit is refused (`TooLarge`) rather than cut. That halves every index entry
//! (587,205 open streams: 108 MiB with `i64` ids, 74 MiB with these). The booking index keeps
//! 32 bits of the keyed hash: collisions are expected among many IDs and cost only a second
//! comparison, as every lookup compares the record's booking ID anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::BuildHasher;

use compact_str::CompactString;

use crate::domain::enrolment::{EnrolmentState, LiveEnrolment};
use crate::domain::ids::{BookingId, CourseId, InstanceId, RoleId, UserEnrolmentId, UserId};
use crate::domain::period::EnrolmentPeriod;
use crate::projection::rowmap::RowMap;

/// One open instance: a live enrolment, or an orphan that still holds its booking ID. The
/// booking ID is stored inline when it is short (up to 24 bytes), as SEMCO's are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub user_enrolment_id: u32,
    pub user_id: u32,
    pub course_id: u32,
    pub timestart: i64,
    pub timeend: i64,
    pub role_id: i64,
    pub booking: CompactString,
    /// The stream's version (its number of events).
    pub version: u32,
    pub sortorder: u32,
    /// Live (else orphaned: only `course_id`, `booking`, `version` and `sortorder` mean anything).
    pub live: bool,
    pub suspended: bool,
}

/// Why an open stream cannot be held: its version, sortorder or one of its ids is beyond `u32`
/// (four billion events in one instance's stream, instances in one course, or ids handed out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl Open {
    /// The record of an open stream, or `None` for a state that is not open.
    ///
    /// # Errors
    /// `TooLarge` when the version, the sortorder or an id does not fit.
    pub fn of(state: &EnrolmentState, version: i64, sortorder: i64) -> Result<Option<Self>, TooLarge> {
        let version = small(version)?;
        let sortorder = small(sortorder)?;
        Ok(match state {
            EnrolmentState::Live(live) => Some(Self {
                user_enrolment_id: small(live.user_enrolment_id.0)?,
                user_id: small(live.user_id.0)?,
                course_id: small(live.course_id.0)?,
                timestart: live.period.timestart,
                timeend: live.period.timeend,
                role_id: live.role_id.0,
                booking: CompactString::from(live.booking_id.as_str()),
                version,
                sortorder,
                live: true,
                suspended: live.suspended,
            }),
            EnrolmentState::Orphaned { course_id, booking_id, .. } => Some(Self {
                user_enrolment_id: 0,
                user_id: 0,
                course_id: small(course_id.0)?,
                timestart: 0,
                timeend: 0,
                role_id: 0,
                booking: CompactString::from(booking_id.as_str()),
                version,
                sortorder,
                live: false,
                suspended: false,
            }),
            EnrolmentState::New | EnrolmentState::Closed => None,
        })
    }

    /// The booking ID; records are made from validated events and snapshots whose IDs are
    /// checked on load, so it parses.
    fn booking_id(&self) -> BookingId {
        BookingId::parse(&self.booking).expect("an open stream's booking ID was valid when it was recorded")
    }

    /// The stream's state, as the domain folds it.
    pub fn state(&self, instance: i64) -> EnrolmentState {
        match self.live_enrolment(instance) {
            Some(live) => EnrolmentState::Live(live),
            None => EnrolmentState::Orphaned {
                instance_id: InstanceId(instance),
                course_id: CourseId(i64::from(self.course_id)),
                booking_id: self.booking_id(),
            },
        }
    }

    /// The live enrolment, or `None` for an orphan.
    pub fn live_enrolment(&self, instance: i64) -> Option<LiveEnrolment> {
        self.live.then(|| LiveEnrolment {
            instance_id: InstanceId(instance),
            user_enrolment_id: UserEnrolmentId(i64::from(self.user_enrolment_id)),
            user_id: UserId(i64::from(self.user_id)),
            course_id: CourseId(i64::from(self.course_id)),
            booking_id: self.booking_id(),
            period: self.period(),
            suspended: self.suspended,
            role_id: RoleId(self.role_id),
        })
    }

    pub fn period(&self) -> EnrolmentPeriod {
        EnrolmentPeriod { timestart: self.timestart, timeend: self.timeend }
    }
}

/// `value` as a `u32`, or `TooLarge`.
fn small(value: i64) -> Result<u32, TooLarge> {
    u32::try_from(value).map_err(|_| TooLarge)
}

/// An id asked about: one beyond `u32` is held by no record.
fn key(id: i64) -> Option<u32> {
    u32::try_from(id).ok()
}

/// The open enrolment streams and their indexes (see the module's documentation).
#[derive(Debug, Clone, Default)]
pub struct OpenStreams {
    records: RowMap<Open>,
    bookings: BTreeSet<(u32, u32)>,
    live: BTreeSet<(u32, u32, u32)>,
    by_course: BTreeSet<(u32, u32, u32)>,
    by_user_enrolment: BTreeMap<u32, u32>,
    orphans: BTreeSet<u32>,
    /// The key of the booking ID hash: drawn per process, so that no client can pick IDs that
    /// share one hash (the sets are rebuilt at every start, the key is never stored).
    hasher: std::collections::hash_map::RandomState,
}

impl OpenStreams {
    /// Builds the streams and their indexes from records in ascending instance order (a
    /// snapshot), every map packed full. Records out of order, repeated or with an instance
    /// beyond `u32` are refused.
    pub fn from_sorted(records: Vec<(i64, Open)>) -> Result<Self, String> {
        if let Some(pair) = records.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
            return Err(format!("open streams out of order: instance {} before {}", pair[0].0, pair[1].0));
        }
        let records: Vec<(u32, Open)> = records
            .into_iter()
            .map(|(instance, open)| {
                let instance = key(instance).ok_or(format!("open streams: instance {instance} is beyond u32"))?;
                Ok((instance, open))
            })
            .collect::<Result<_, String>>()?;
        let hasher = std::collections::hash_map::RandomState::new();
        let mut bookings = Vec::with_capacity(records.len());
        let mut live = Vec::with_capacity(records.len());
        let mut by_course = Vec::with_capacity(records.len());
        let mut by_user_enrolment = Vec::with_capacity(records.len());
        let mut orphans = Vec::new();
        for (instance, open) in &records {
            bookings.push((booking_hash(&hasher, &open.booking), *instance));
            by_course.push((open.course_id, open.sortorder, *instance));
            if open.live {
                live.push((open.user_id, open.course_id, *instance));
                by_user_enrolment.push((open.user_enrolment_id, *instance));
            } else {
                orphans.push(*instance);
            }
        }
        bookings.sort_unstable();
        live.sort_unstable();
        by_course.sort_unstable();
        by_user_enrolment.sort_unstable();
        let streams = Self {
            records: records.into_iter().map(|(instance, open)| (i64::from(instance), open)).collect(),
            bookings: bookings.into_iter().collect(),
            live: live.into_iter().collect(),
            by_course: by_course.into_iter().collect(),
            by_user_enrolment: by_user_enrolment.into_iter().collect(),
            orphans: orphans.into_iter().collect(),
            hasher,
        };
        streams.check_unique()?;
        Ok(streams)
    }

    /// No booking ID and no user enrolment is held twice (what the writer's rules keep).
    fn check_unique(&self) -> Result<(), String> {
        let live = self.records.values().filter(|open| open.live).count();
        if self.by_user_enrolment.len() != live {
            return Err("two open streams hold one user enrolment".into());
        }
        let mut group: Vec<&str> = Vec::new();
        let mut group_hash = None;
        for &(hash, instance) in &self.bookings {
            if group_hash != Some(hash) {
                group.clear();
                group_hash = Some(hash);
            }
            let booking = self.record(instance).booking.as_str();
            if group.contains(&booking) {
                return Err(format!("two open streams hold one booking ID (one is instance {instance})"));
            }
            group.push(booking);
        }
        Ok(())
    }

    /// The record an index entry points at (every index entry has one).
    fn record(&self, instance: u32) -> &Open {
        self.records.get(&i64::from(instance)).expect("every index entry points at a record")
    }

    /// How many of the open streams hold a live user enrolment.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, instance: i64) -> Option<&Open> {
        self.records.get(&i64::from(key(instance)?))
    }

    pub fn contains(&self, instance: i64) -> bool {
        self.get(instance).is_some()
    }

    /// The records in ascending instance order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Open)> + '_ {
        self.records.iter()
    }

    /// The open instance holding this booking ID.
    pub fn holding(&self, booking: &str) -> Option<i64> {
        let hash = booking_hash(&self.hasher, booking);
        self.bookings
            .range((hash, 0)..=(hash, u32::MAX))
            .map(|&(_, instance)| instance)
            .find(|instance| self.records.get(&i64::from(*instance)).is_some_and(|open| open.booking == booking))
            .map(i64::from)
    }

    pub fn booking_taken(&self, booking: &str) -> bool {
        self.holding(booking).is_some()
    }

    /// Instances emptied by a user deletion, in ascending order.
    pub fn orphans(&self) -> impl Iterator<Item = i64> + '_ {
        self.orphans.iter().map(|&instance| i64::from(instance))
    }

    /// Instances of the user's live enrolments in the course, oldest first.
    pub fn live_in(&self, user: i64, course: i64) -> impl DoubleEndedIterator<Item = i64> + '_ {
        // An id beyond u32 is held by nobody: no range at all.
        let range = match (key(user), key(course)) {
            (Some(user), Some(course)) => Some(self.live.range((user, course, 0)..=(user, course, u32::MAX))),
            _ => None,
        };
        range.into_iter().flatten().map(|&(_, _, instance)| i64::from(instance))
    }

    /// Instances of one user's live enrolments in every course.
    pub fn live_of_user(&self, user: i64) -> impl Iterator<Item = i64> + '_ {
        let range = key(user).map(|user| self.live.range((user, 0, 0)..=(user, u32::MAX, u32::MAX)));
        range.into_iter().flatten().map(|&(_, _, instance)| i64::from(instance))
    }

    /// The course's highest sortorder among its open instances.
    pub fn highest_sortorder(&self, course: i64) -> Option<u32> {
        let course = key(course)?;
        self.by_course.range((course, 0, 0)..=(course, u32::MAX, u32::MAX)).next_back().map(|&(_, s, _)| s)
    }

    /// The instance of a live user enrolment.
    pub fn instance_of(&self, user_enrolment_id: i64) -> Option<i64> {
        self.by_user_enrolment.get(&key(user_enrolment_id)?).map(|&instance| i64::from(instance))
    }

    /// Puts an instance's record in (replacing its old one), keeping the indexes in step.
    ///
    /// # Errors
    /// `TooLarge` when the instance is beyond `u32`; nothing is changed then.
    pub fn put(&mut self, instance: i64, open: Open) -> Result<(), TooLarge> {
        let instance = small(instance)?;
        self.remove_key(instance);
        self.bookings.insert((booking_hash(&self.hasher, &open.booking), instance));
        self.by_course.insert((open.course_id, open.sortorder, instance));
        if open.live {
            self.live.insert((open.user_id, open.course_id, instance));
            self.by_user_enrolment.insert(open.user_enrolment_id, instance);
        } else {
            self.orphans.insert(instance);
        }
        self.records.insert(i64::from(instance), open);
        Ok(())
    }

    /// Takes an instance's record out with its index entries.
    pub fn remove(&mut self, instance: i64) -> Option<Open> {
        self.remove_key(key(instance)?)
    }

    fn remove_key(&mut self, instance: u32) -> Option<Open> {
        let open = self.records.remove(&i64::from(instance))?;
        self.bookings.remove(&(booking_hash(&self.hasher, &open.booking), instance));
        self.by_course.remove(&(open.course_id, open.sortorder, instance));
        if open.live {
            self.live.remove(&(open.user_id, open.course_id, instance));
            self.by_user_enrolment.remove(&open.user_enrolment_id);
        } else {
            self.orphans.remove(&instance);
        }
        Some(open)
    }

    /// Every index entry as (name, entry) in a canonical order, for the state's dump: two
    /// streams with equal records must have equal indexes.
    pub fn index_dump(&self) -> serde_json::Value {
        let mut bookings: Vec<(&str, u32)> =
            self.bookings.iter().map(|(_, instance)| (self.record(*instance).booking.as_str(), *instance)).collect();
        bookings.sort_unstable();
        serde_json::json!({
            "bookings": bookings,
            "live": self.live,
            "by_course": self.by_course,
            "by_user_enrolment": self.by_user_enrolment,
            "orphans": self.orphans,
        })
    }
}

/// 32 bits of the keyed hash of a booking ID (the booking index's key).
fn booking_hash(hasher: &std::collections::hash_map::RandomState, booking: &str) -> u32 {
    (hasher.hash_one(booking) >> 32) as u32
}

/// The bytes of one record in a snapshot: instance, user enrolment, user, course, timestart,
/// timeend, role (`i64` each), version, sortorder (`u32`), flags (bit 0 live, bit 1 suspended),
/// the booking ID's length (`u16`) and its UTF-8 bytes; little-endian throughout.
const FIXED_BYTES: usize = 7 * 8 + 2 * 4 + 1 + 2;

impl OpenStreams {
    /// Appends every record, in ascending instance order, to `out` (a snapshot's section).
    pub fn write_records(&self, out: &mut Vec<u8>) {
        out.reserve(self.records.len() * (FIXED_BYTES + 16));
        for (instance, open) in self.records.iter() {
            for value in [
                instance,
                i64::from(open.user_enrolment_id),
                i64::from(open.user_id),
                i64::from(open.course_id),
                open.timestart,
                open.timeend,
                open.role_id,
            ] {
                out.extend_from_slice(&value.to_le_bytes());
            }
            out.extend_from_slice(&open.version.to_le_bytes());
            out.extend_from_slice(&open.sortorder.to_le_bytes());
            out.push(u8::from(open.live) | (u8::from(open.suspended) << 1));
            let booking = open.booking.as_bytes();
            let length = u16::try_from(booking.len()).expect("a booking ID fits customchar1 (255 characters)");
            out.extend_from_slice(&length.to_le_bytes());
            out.extend_from_slice(booking);
        }
    }

    /// Reads what `write_records` wrote back into streams, checking every record: a valid
    /// booking ID, known flags, ascending instances, nothing held twice, no bytes left over.
    pub fn read_records(mut bytes: &[u8]) -> Result<Self, String> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
            if bytes.len() < n {
                return Err("open streams: the section ends inside a record".into());
            }
            let (head, rest) = bytes.split_at(n);
            *bytes = rest;
            Ok(head)
        }
        fn int(bytes: &mut &[u8]) -> Result<i64, String> {
            Ok(i64::from_le_bytes(take(bytes, 8)?.try_into().expect("eight bytes")))
        }
        fn word(bytes: &mut &[u8]) -> Result<u32, String> {
            Ok(u32::from_le_bytes(take(bytes, 4)?.try_into().expect("four bytes")))
        }
        let mut records = Vec::with_capacity(bytes.len() / (FIXED_BYTES + 8));
        while !bytes.is_empty() {
            let instance = int(&mut bytes)?;
            let (user_enrolment_id, user_id, course_id) = (int(&mut bytes)?, int(&mut bytes)?, int(&mut bytes)?);
            let (timestart, timeend, role_id) = (int(&mut bytes)?, int(&mut bytes)?, int(&mut bytes)?);
            let (version, sortorder) = (word(&mut bytes)?, word(&mut bytes)?);
            let flags = take(&mut bytes, 1)?[0];
            if flags > 3 {
                return Err(format!("open streams: instance {instance} has unknown flags {flags}"));
            }
            let length = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().expect("two bytes"));
            let booking = std::str::from_utf8(take(&mut bytes, usize::from(length))?)
                .map_err(|_| format!("open streams: instance {instance}'s booking ID is not UTF-8"))?;
            BookingId::parse(booking).map_err(|e| format!("open streams: instance {instance}: {e}"))?;
            let id = |value: i64| {
                small(value).map_err(|TooLarge| format!("open streams: instance {instance}: id {value} is beyond u32"))
            };
            let open = Open {
                user_enrolment_id: id(user_enrolment_id)?,
                user_id: id(user_id)?,
                course_id: id(course_id)?,
                timestart,
                timeend,
                role_id,
                booking: CompactString::from(booking),
                version,
                sortorder,
                live: flags & 1 == 1,
                suspended: flags & 2 == 2,
            };
            records.push((instance, open));
        }
        Self::from_sorted(records)
    }
}

/// Given open streams, when records are put and removed, then every index answers as a scan of
/// the records would.
#[cfg(test)]
mod tests {
    use super::*;

    fn live(ue: u32, user: u32, course: u32, booking: &str, sortorder: u32) -> Open {
        Open {
            user_enrolment_id: ue,
            user_id: user,
            course_id: course,
            timestart: 10,
            timeend: 20,
            role_id: 5,
            booking: booking.into(),
            version: 1,
            sortorder,
            live: true,
            suspended: false,
        }
    }

    fn orphan_of(open: &Open) -> Open {
        Open { live: false, user_enrolment_id: 0, user_id: 0, version: open.version + 1, ..open.clone() }
    }

    #[test]
    fn indexes_follow_puts_and_removes() {
        let mut streams = OpenStreams::default();
        streams.put(1, live(11, 7, 2, "B-1", 0)).unwrap();
        streams.put(2, live(12, 7, 2, "a booking ID longer than twenty-four bytes", 1)).unwrap();
        streams.put(3, live(13, 8, 3, "B-3", 0)).unwrap();
        assert_eq!(streams.holding("B-1"), Some(1));
        assert_eq!(streams.holding("a booking ID longer than twenty-four bytes"), Some(2));
        assert_eq!(streams.holding("B-9"), None);
        assert_eq!(streams.live_in(7, 2).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(streams.live_of_user(8).collect::<Vec<_>>(), vec![3]);
        assert_eq!(streams.highest_sortorder(2), Some(1));
        assert_eq!(streams.instance_of(12), Some(2));
        let orphan = orphan_of(streams.get(2).unwrap());
        streams.put(2, orphan).unwrap();
        assert_eq!(streams.live_in(7, 2).collect::<Vec<_>>(), vec![1]);
        assert_eq!(streams.instance_of(12), None);
        assert_eq!(streams.orphans().collect::<Vec<_>>(), vec![2]);
        assert_eq!(streams.holding("a booking ID longer than twenty-four bytes"), Some(2), "an orphan keeps it");
        assert_eq!(streams.highest_sortorder(2), Some(1));
        streams.remove(2);
        assert_eq!((streams.highest_sortorder(2), streams.orphans().count()), (Some(0), 0));
        assert!(!streams.booking_taken("a booking ID longer than twenty-four bytes"));
        assert_eq!(streams.highest_sortorder(9), None);
    }

    // given streams built one put at a time, when the same records are built from sorted
    // input, then both have the same indexes; out of order or a shared booking is refused.
    #[test]
    fn from_sorted_builds_the_same_indexes_and_refuses_what_cannot_be() {
        let mut streams = OpenStreams::default();
        let records = vec![(1, live(11, 7, 2, "B-1", 0)), (4, live(12, 7, 2, "B-4", 1)), (5, live(13, 8, 3, "B-5", 0))];
        for (instance, open) in records.clone() {
            streams.put(instance, open).unwrap();
        }
        let orphan = orphan_of(streams.get(4).unwrap());
        streams.put(4, orphan.clone()).unwrap();
        let mut sorted = records.clone();
        sorted[1].1 = orphan;
        let built = OpenStreams::from_sorted(sorted).unwrap();
        assert_eq!(built.index_dump(), streams.index_dump());
        assert_eq!(built.iter().collect::<Vec<_>>(), streams.iter().collect::<Vec<_>>());
        let reversed: Vec<_> = records.iter().rev().cloned().collect();
        assert!(OpenStreams::from_sorted(reversed).unwrap_err().contains("out of order"));
        let shared = vec![(1, live(11, 7, 2, "B-1", 0)), (2, live(12, 8, 2, "B-1", 1))];
        assert!(OpenStreams::from_sorted(shared).unwrap_err().contains("one booking ID"));
        let mut bytes = Vec::new();
        built.write_records(&mut bytes);
        let back = OpenStreams::read_records(&bytes).unwrap();
        assert_eq!((back.index_dump(), back.iter().collect::<Vec<_>>()), (built.index_dump(), built.iter().collect()));
        for cut in [1, FIXED_BYTES, bytes.len() - 1] {
            assert!(OpenStreams::read_records(&bytes[..cut]).unwrap_err().contains("ends inside"), "cut at {cut}");
        }
        let same_ue = vec![(1, live(11, 7, 2, "B-1", 0)), (2, live(11, 8, 2, "B-2", 1))];
        assert!(OpenStreams::from_sorted(same_ue).unwrap_err().contains("one user enrolment"));
    }

    // given a state with a version or sortorder beyond u32, when it is made a record, then it
    // is refused rather than cut.
    #[test]
    fn versions_sortorders_and_ids_beyond_u32_are_refused() {
        let state = EnrolmentState::Orphaned {
            instance_id: InstanceId(1),
            course_id: CourseId(2),
            booking_id: BookingId::parse("B-1").unwrap(),
        };
        assert_eq!(Open::of(&state, i64::from(u32::MAX) + 1, 0), Err(TooLarge));
        let beyond = i64::from(u32::MAX) + 1;
        let orphan_of_course = |course| EnrolmentState::Orphaned {
            instance_id: InstanceId(1),
            course_id: CourseId(course),
            booking_id: BookingId::parse("B-1").unwrap(),
        };
        assert_eq!(Open::of(&orphan_of_course(beyond), 1, 0), Err(TooLarge), "a course id beyond u32");
        let mut streams = OpenStreams::default();
        assert_eq!(streams.put(beyond, live(1, 2, 3, "B-1", 0)), Err(TooLarge), "an instance beyond u32");
        assert!(streams.is_empty() && !streams.booking_taken("B-1"), "a refused put changes nothing");
        streams.put(1, live(1, 2, 3, "B-1", 0)).unwrap();
        // Ids beyond u32 (or negative) are held by nobody; they never alias a small one.
        assert_eq!(streams.get(beyond + 1), None);
        assert_eq!(streams.live_in(beyond + 2, 3).count() + streams.live_in(2, beyond + 3).count(), 0);
        assert_eq!((streams.live_of_user(-1).count(), streams.instance_of(beyond + 1)), (0, None));
        assert_eq!(streams.highest_sortorder(beyond + 3), None);
        assert_eq!(streams.live_in(2, 3).collect::<Vec<_>>(), vec![1]);
        assert_eq!(Open::of(&state, 1, -1), Err(TooLarge));
        let open = Open::of(&state, 3, 4).unwrap().unwrap();
        assert_eq!(open.state(1), state);
        assert_eq!(Open::of(&EnrolmentState::Closed, 1, 0), Ok(None));
    }
}
