//! # shardwal-raft
//!
//! shardwal under [openraft](https://docs.rs/openraft), the Rust Raft engine: a replicated
//! log for services that outgrow one machine. shardwal does not build consensus of its own.
//!
//! What exists so far:
//! - [`ShardLogStore`]: openraft's `RaftLogStorage` + `RaftLogReader` over one shard, either
//!   on the shard's own executor (backend `Shard`, with [`GlommioRuntime`]) or through the
//!   `Send` client from any runtime (backend [`ClientShard`], for example openraft's tokio
//!   runtime). Entries, vote, committed id, truncations and purges are records of
//!   the same shard log ([`codec`], versioned); `IOFlushed` callbacks complete in order from
//!   the group commits, so many Raft appends share one fdatasync; `save_vote`,
//!   `truncate_after` and `purge` are durable before they return. Reads use an index of
//!   LSNs (8 bytes per live entry), a cache of the newest entries within a byte budget
//!   ([`DEFAULT_CACHE_BYTES`]; it always holds what is not durable yet) and, for older
//!   entries, a forward read of the shard (see [`store`]'s "Reads" for the cost). It
//!   passes openraft's storage suite (`openraft::testing::log::Suite`) under both
//!   runtimes, with and without a cache.
//! - [`GlommioRuntime`]: openraft's `AsyncRuntime` on a glommio executor, so a Raft group
//!   runs natively on the executor of the shard that stores its log (openraft's
//!   `single-threaded` mode). It passes openraft's runtime conformance suite.
//! - [`kv::KvStateMachine`], [`types::KvConfig`] (glommio) and [`types::KvTokioConfig`]
//!   (tokio): a small KV state machine and type configurations for tests and examples.
//!
//! - [`cluster`]: a 3-node loopback cluster (node processes, wire protocol) for the example
//!   and `shardwal bench --raft`; with feature `memstore`, its nodes can keep the Raft log
//!   in openraft-memstore's `MemLogStore` instead (the no-durability ceiling).
//!
//! openraft's `single-threaded` feature is on for the whole build (cargo unifies features):
//! under tokio, Raft and the store run in a `LocalSet` (openraft's `TokioRuntime` does that
//! itself in that mode).
//!
//! One Raft group per shard: open one store per shard (on that shard's executor) and run
//! one `Raft` there; several shards are several groups.

#![deny(missing_docs)]

pub mod backend;
pub mod cluster;
pub mod codec;
pub mod kv;
pub mod rt;
pub mod store;
pub mod types;

pub use backend::{ClientShard, LogBackend, MemoryBackend};
pub use rt::GlommioRuntime;
pub use store::{ReadPathStats, ShardLogStore, DEFAULT_CACHE_BYTES};
