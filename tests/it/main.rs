//! The one integration-test binary. Every behaviour test runs on SQLite and on PostgreSQL
//! (`on_both_backends!`), against real databases and, for HTTP, the real router.

mod support;

mod api_doc;
mod as_of;
mod audit_api;
mod audit_pages;
mod browser;
mod cli;
mod concurrency;
mod db_roles;
mod edge;
mod erasure;
mod faults;
mod faults_support;
mod fntable;
mod health;
mod health_browser;
mod history;
mod hr;
mod hr_doc;
mod http;
mod log_integrity;
mod manual_property;
mod ops;
mod private_cluster;
mod proofs;
mod query_plans;
mod reads;
mod rebuild_property;
mod registry_events;
mod registry_rules;
mod report;
mod report_browser;
mod scenario;
mod snapshots;
mod startup;
mod tokens;
mod unbreakable;
mod undo;
mod valid_input;
mod web_signin;
