//! Moodle 4.5's REST wire format: request variables to a parameter tree, strict parameter
//! validation with Moodle's debuginfo texts, and the JSON/XML response and error writers.

pub mod encode;
pub mod params;
pub mod request;

#[cfg(test)]
mod fuzz;
