//! The one integration-test binary. Every behaviour test runs on SQLite and on PostgreSQL
//! (`on_both_backends!`), against real databases and, for HTTP, the real router.

mod support;

mod api_doc;
mod as_of;
mod cli;
mod concurrency;
mod db_roles;
mod edge;
mod erasure;
mod faults;
mod faults_support;
mod http;
mod log_integrity;
mod private_cluster;
mod query_plans;
mod reads;
mod rebuild_property;
mod registry_events;
mod registry_rules;
mod scenario;
mod snapshots;
mod startup;
mod tokens;
mod unbreakable;
mod valid_input;
