//! The `shardwal` command line: `bench` measures durable appends against the device's own
//! limits (and, with the `peers` feature, other logs) in one run; `verify` reads every record
//! of a closed log directory back and checks it; `inspect` shows the shared header (owner,
//! positions, cut, pins) and the segment files, also while a writer runs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shardwal_cli::{bench, cut_reader, inspect, verify};

#[derive(Parser)]
#[command(
    name = "shardwal",
    version,
    about = "A durable thread-per-core write-ahead log: benchmark and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Durable appends from S shards x W writer tasks, beside the device's own limits.
    Bench(Box<bench::BenchArgs>),
    /// Read every record of every shard in a closed log directory and check it.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
    /// Show a log directory's owner, shard positions, current cut, reader pins and segments
    /// (read-only; works while a writer runs).
    Inspect {
        /// The log directory.
        dir: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One node of the `bench --raft` cluster (started by the bench itself).
    #[command(hide = true)]
    RaftNode {
        /// Node id, 1-based.
        id: u64,
        /// The node's log directory.
        dir: PathBuf,
        /// Every node's port, comma-separated.
        ports: String,
        /// Where the Raft log lives: shardwal or memory.
        log: String,
    },
    /// Take consistent cuts from a log's shared header for a while and report how many (the
    /// second process of `bench --cut-reader`).
    #[command(hide = true)]
    CutReader {
        /// The log directory.
        dir: PathBuf,
        /// How long to take cuts, in seconds.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => bench::bench(&bench::BenchArgs::parse_from(["shardwal"])),
        Some(Command::Bench(args)) => bench::bench(&args),
        Some(Command::Verify { dir }) => verify::run(&dir),
        Some(Command::Inspect { dir, json }) => inspect::run(&dir, json),
        Some(Command::CutReader { dir, seconds }) => cut_reader::run(&dir, seconds),
        Some(Command::RaftNode {
            id,
            dir,
            ports,
            log,
        }) => raft_node(id, &dir, &ports, &log),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardwal: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one node of the `bench --raft` cluster until it is killed.
fn raft_node(
    id: u64,
    dir: &std::path::Path,
    ports: &str,
    log: &str,
) -> shardwal_cli::AnyResult<()> {
    use shardwal_raft::cluster::{run_node, NodeLog};
    let ports = ports
        .split(',')
        .map(|p| p.parse::<u16>())
        .collect::<Result<Vec<_>, _>>()?;
    run_node(id, dir, ports, NodeLog::parse(log)?)
}
