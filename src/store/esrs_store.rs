//! esrs's `EventStore` for the ledger's log, so esrs tooling can load any aggregate's stream.
//!
//! Appends do not go through `persist`: the single writer (`app::writer`) owns positions, the
//! hash chain and group commit, which esrs's per-aggregate store cannot provide (no global
//! order, one transaction per command). `persist` therefore refuses, as does `delete`: the log
//! is append-only.
