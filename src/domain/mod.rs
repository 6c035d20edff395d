//! The pure core: what events a command produces, and how events fold into state.
//!
//! Nothing here does I/O, reads a clock or makes an id: time, actor, new ids and every fact
//! looked up elsewhere (does the course exist, is the booking ID taken, which periods does the
//! user already have) arrive inside the command. Each aggregate is an esrs `Aggregate`.

pub mod column;
pub mod completion;
pub mod config;
pub mod course;
pub mod criteria;
pub mod enrolment;
pub mod error;
pub mod event;
pub mod health;
pub mod ids;
pub mod manual;
pub mod period;
pub mod recompletion;
pub mod undo;

pub use error::{DomainError, ImpossibleEvent};
pub use event::LedgerEvent;

#[cfg(test)]
mod tests;
