//! The `shardwal` command line's library: the benchmark harness and the tools behind the
//! `shardwal` binary.
//!
//! Everything that measures lives here, once: the binary, the library's own `benches/` and
//! any future benchmark use the same helpers ([`stats`]) and the same report ([`report`]).
//!
//! - [`bench`](mod@bench): `shardwal bench`, durable appends from S shards × W writers, interleaved round
//!   by round with the device baselines ([`baseline`]), the peers (`peers`, feature `peers`)
//!   and the bare group-commit ceiling of the same geometry ([`ceiling`]), and, with `--via client`, the same writers as tokio tasks behind the `Send` client
//!   ([`client_bench`]); the report prints medians, ratios and an SVG plot ([`plot`]).
//! - [`report`]: medians over the rounds, ratios, the table and `--json`.
//! - [`run`]: what one measured run produces (`RunResult`) and the live meter.
//! - [`stats`]: median, histogram percentiles, load average, CPU time, peak RSS.
//! - [`inspect`], [`verify`]: the read-only tools; [`cut_reader`] is the second process of
//!   `bench --cut-reader`.

pub mod baseline;
pub mod bench;
pub mod ceiling;
pub mod client_bench;
pub mod cut_reader;
pub mod inspect;
#[cfg(feature = "peers")]
pub mod peers;
pub mod plot;
pub mod raft_bench;
pub mod report;
pub mod run;
pub mod stats;
pub mod verify;

/// The error type of the harness: anything that can be shown to the user.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;
