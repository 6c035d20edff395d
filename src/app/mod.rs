//! Use cases around the pure core: the single writer (decide, append, project in one
//! transaction) and the audit operations (rebuild, verify, history, as-of, export).

pub mod asof;
pub mod audit;
pub mod command;
pub mod decide;
pub mod erasure;
pub mod health;
pub mod history;
pub mod open;
pub mod outbox;
pub mod report;
pub mod rows;
pub mod snapshot;
pub mod state;
pub mod token_events;
pub mod undo;
pub mod verification;
pub mod verify_run;
pub mod writer;

pub use command::{LedgerError, Outcome, Request};
pub use writer::Ledger;
