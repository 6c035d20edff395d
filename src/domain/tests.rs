//! Given/when/then tests of the aggregates: given these events, when this command, then these
//! events or this error. No I/O.
