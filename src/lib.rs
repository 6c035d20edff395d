//! enrol-ledger: an event-sourced ledger of Moodle course enrolments.
//!
//! `domain` decides (pure), `store` keeps the log, `projection` folds it into read models,
//! `registry` holds mutable personal data, `app` runs the single writer, `api` speaks HTTP, `web` renders the pages.

pub mod api;
pub mod app;
pub mod cli;
pub mod domain;
pub mod projection;
pub mod proof;
pub mod registry;
pub mod store;
pub mod web;
