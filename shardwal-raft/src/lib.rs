//! # shardwal-raft
//!
//! shardwal under [openraft](https://docs.rs/openraft), the Rust Raft engine: a replicated
//! log for services that outgrow one machine. shardwal does not build consensus of its own.
//!
//! What exists so far:
//! - [`rt::GlommioRuntime`]: openraft's `AsyncRuntime` on a glommio executor, so a Raft
//!   group can run natively on the executor of the shard that stores its log (openraft's
//!   `single-threaded` mode). It passes openraft's runtime conformance suite.
//!
//! The log store over a shard, the cluster example and its benchmark are the next steps
//! (see the README's "Replication" section).

#![deny(missing_docs)]

pub mod rt;

pub use rt::GlommioRuntime;
