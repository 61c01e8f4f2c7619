//! The `shardwal` command line: `bench` measures durable appends against the device's own
//! limits (and, with the `peers` feature, other logs) in one run; `verify` reads every record
//! of a closed log directory back and checks it; `inspect` shows the shared header (owner,
//! positions, cut, pins) and the segment files, also while a writer runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shardwal::{Lsn, ShardId};

mod baseline;
mod bench;
mod cut_reader;
mod inspect;
#[cfg(feature = "peers")]
mod peers;
mod plot;
mod run;

use run::AnyResult;

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
    Bench(bench::BenchArgs),
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
        Some(Command::Verify { dir }) => verify(&dir),
        Some(Command::Inspect { dir, json }) => inspect::run(&dir, json),
        Some(Command::CutReader { dir, seconds }) => cut_reader::run(&dir, seconds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardwal: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads every shard of `dir` back with the offline reader.
fn verify(dir: &Path) -> AnyResult<()> {
    let mut shard = 0u32;
    let mut total = 0u64;
    loop {
        let sdir = shardwal::format::shard_dir(dir, ShardId(shard));
        if !sdir.is_dir() {
            break;
        }
        let mut count = 0u64;
        let mut first = None;
        let mut last = Lsn::ZERO;
        for record in shardwal::LogReader::open_all(dir, ShardId(shard))? {
            let record = record?;
            first.get_or_insert(record.lsn);
            last = record.lsn;
            count += 1;
        }
        println!(
            "shard {shard}: {count} records, lsn {} ..= {last}",
            first.unwrap_or(Lsn::ZERO)
        );
        total += count;
        shard += 1;
    }
    if shard == 0 {
        return Err(format!("{}: no shard directories (shard-NNNN) found", dir.display()).into());
    }
    println!("{shard} shard(s), {total} records, all checksums valid");
    Ok(())
}
