//! esrs's `EventStore` for the ledger's log, so esrs tooling can load any aggregate's stream.
//!
//! Appends do not go through `persist`: the single writer (`app::writer`) owns positions, the
//! hash chain and group commit, which esrs's per-aggregate store cannot provide (no global
//! order, one transaction per command). `persist` therefore refuses, as does `delete`: the log
//! is append-only.

use std::marker::PhantomData;

use async_trait::async_trait;
use esrs::store::{EventStore, EventStoreLockGuard, StoreEvent, UnlockOnDrop};
use esrs::{Aggregate, AggregateState};
use uuid::Uuid;

use super::log::{self, StoredEvent};
use super::{Db, StoreError};
use crate::domain::completion::Completion;
use crate::domain::config::Config;
use crate::domain::course::Course;
use crate::domain::enrolment::Enrolment;
use crate::domain::event::{CompletionEvent, ConfigEvent, CourseEvent, EnrolmentEvent};
use crate::domain::LedgerEvent;

/// An aggregate whose events are one branch of `LedgerEvent`.
pub trait LedgerAggregate: Aggregate {
    fn pick(event: LedgerEvent) -> Option<Self::Event>;
}

impl LedgerAggregate for Enrolment {
    fn pick(event: LedgerEvent) -> Option<EnrolmentEvent> {
        match event {
            LedgerEvent::Enrolment(e) => Some(e),
            _ => None,
        }
    }
}
impl LedgerAggregate for Completion {
    fn pick(event: LedgerEvent) -> Option<CompletionEvent> {
        match event {
            LedgerEvent::Completion(e) => Some(e),
            _ => None,
        }
    }
}
impl LedgerAggregate for Course {
    fn pick(event: LedgerEvent) -> Option<CourseEvent> {
        match event {
            LedgerEvent::Course(e) => Some(e),
            _ => None,
        }
    }
}
impl LedgerAggregate for Config {
    fn pick(event: LedgerEvent) -> Option<ConfigEvent> {
        match event {
            LedgerEvent::Config(e) => Some(e),
            _ => None,
        }
    }
}

/// Read access to one aggregate type's streams through esrs's `EventStore` trait.
pub struct LedgerStore<A> {
    db: Db,
    aggregate: PhantomData<fn() -> A>,
}

impl<A> LedgerStore<A> {
    pub fn new(db: Db) -> Self {
        Self { db, aggregate: PhantomData }
    }
}

/// No lock is needed: only the single writer appends.
struct NoLock;
impl UnlockOnDrop for NoLock {}

fn store_event<E>(stored: &StoredEvent, payload: E) -> StoreEvent<E> {
    StoreEvent {
        // The event's own id: v5 of its stream and version, stable across exports.
        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{}#{}", stored.stream_id, stored.stream_version).as_bytes()),
        aggregate_id: stored.stream_id.parse().unwrap_or_default(),
        payload,
        occurred_on: chrono::DateTime::from_timestamp_micros(stored.recorded_at).unwrap_or_default(),
        sequence_number: i32::try_from(stored.stream_version).unwrap_or(i32::MAX),
        version: i32::try_from(stored.schema_version).ok(),
    }
}

#[async_trait]
impl<A> EventStore for LedgerStore<A>
where
    A: LedgerAggregate + Send + Sync,
    A::Event: Send + Sync,
    A::State: Send,
{
    type Aggregate = A;
    type Error = StoreError;

    async fn lock(&self, _aggregate_id: Uuid) -> Result<EventStoreLockGuard, StoreError> {
        Ok(EventStoreLockGuard::new(NoLock))
    }

    async fn by_aggregate_id(&self, aggregate_id: Uuid) -> Result<Vec<StoreEvent<A::Event>>, StoreError> {
        let rows = log::read_stream(&self.db, &aggregate_id.to_string()).await?;
        let mut events = Vec::with_capacity(rows.len());
        for stored in rows.iter().filter(|s| s.stream_type == A::NAME) {
            if let Some(payload) = A::pick(stored.event()?) {
                events.push(store_event(stored, payload));
            }
        }
        Ok(events)
    }

    async fn persist(
        &self,
        _state: &mut AggregateState<A::State>,
        _events: Vec<A::Event>,
    ) -> Result<Vec<StoreEvent<A::Event>>, StoreError> {
        Err(StoreError::AppendOnly("appends go through the single writer (app::writer::Ledger::submit)"))
    }

    async fn publish(&self, _store_events: &[StoreEvent<A::Event>]) {}

    async fn delete(&self, _aggregate_id: Uuid) -> Result<(), StoreError> {
        Err(StoreError::AppendOnly("events are never deleted"))
    }
}
