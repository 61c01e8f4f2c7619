//! A 3-node Raft cluster on shardwal, over loopback TCP, that survives `kill -9` of its
//! leader: `cargo run --release -p shardwal-raft --example cluster`.
//!
//! The example starts three node processes (this binary with `node ID DIR PORTS`), each
//! with its own shardwal directory, a `ShardLogStore` through the `Send` client and a small
//! KV state machine, on openraft's tokio runtime. Then it:
//! 1. initializes the cluster and writes keys through whichever node leads;
//! 2. kills the leader with SIGKILL and keeps writing (a new leader is elected);
//! 3. restarts the old leader from its log, writes more, and waits until it caught up;
//! 4. checks that all three state machines are identical and hold every write that was
//!    acknowledged to the client. Any divergence makes it exit non-zero.
//!
//! `SHARDWAL_CLUSTER_RUNS=N` repeats the whole scenario N times (default 1);
//! `SHARDWAL_CLUSTER_WRITES=N` sets the writes per phase (default 200);
//! `SHARDWAL_RAFT_CACHE_BYTES=N` sets each node's entry cache budget (0: the leader reads
//! every durable entry it replicates back from its shard). Traffic goes only to 127.0.0.1,
//! and every wait is bounded in time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shardwal_raft::cluster::{run_node, wait_until, AnyResult, Cluster, NodeLog};
use shardwal_raft::types::Put;

/// The node processes are this binary with `node ID DIR PORTS`.
fn node_command(id: u64, dir: &Path, ports: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own path"));
    c.arg("node").arg(id.to_string()).arg(dir).arg(ports);
    c
}

/// What one scenario saw.
struct Outcome {
    acked: usize,
    unknown: usize,
    killed: u64,
}

/// Writes `count` keys of phase `phase`; records the acknowledged ones.
fn write_phase(
    c: &Cluster,
    phase: &str,
    count: usize,
    acked: &mut BTreeMap<Vec<u8>, Vec<u8>>,
) -> usize {
    let mut unknown = 0;
    for i in 0..count {
        let put = Put {
            key: format!("{phase}-{i:05}").into_bytes(),
            value: format!("value {phase} {i}").into_bytes(),
        };
        if c.write(&put) {
            acked.insert(put.key, put.value);
        } else {
            unknown += 1;
        }
    }
    unknown
}

fn scenario(run: usize, writes: usize) -> AnyResult<Outcome> {
    let dir = tempfile::tempdir()?;
    let mut c = Cluster::start(dir.path(), Box::new(node_command))?;
    c.initialize()?;
    let mut acked = BTreeMap::new();
    let mut unknown = write_phase(&c, &format!("r{run}-before"), writes, &mut acked);
    let killed = c.leader().ok_or("no leader to kill")?;
    c.kill(killed)?;
    unknown += write_phase(&c, &format!("r{run}-without"), writes, &mut acked);
    c.spawn(killed)?;
    unknown += write_phase(&c, &format!("r{run}-after"), writes, &mut acked);
    check(&c, &acked)?;
    Ok(Outcome {
        acked: acked.len(),
        unknown,
        killed,
    })
}

/// Waits until the three state machines agree, then checks every acknowledged write.
fn check(c: &Cluster, acked: &BTreeMap<Vec<u8>, Vec<u8>>) -> AnyResult<()> {
    let mut last = Vec::new();
    let agreed = wait_until(Duration::from_secs(30), || {
        last = (1..=3).map(|id| c.dump(id)).collect();
        last.iter().all(|d| d.is_some()) && last.windows(2).all(|w| w[0] == w[1])
    });
    if agreed.is_none() {
        let applied: Vec<_> = last
            .iter()
            .map(|d| d.as_ref().map(|d| (d.0, d.1.len())))
            .collect();
        return Err(format!("state machines still differ after 30 s: {applied:?}").into());
    }
    let (_, map) = last[0].clone().expect("agreed");
    let lost: Vec<_> = acked
        .iter()
        .filter(|(k, v)| map.get(*k) != Some(*v))
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    if !lost.is_empty() {
        return Err(format!(
            "{} acknowledged writes lost, first {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        )
        .into());
    }
    Ok(())
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("node") {
        let ports = args[4]
            .split(',')
            .map(|p| p.parse().expect("port"))
            .collect();
        let id = args[2].parse().expect("node id");
        if let Err(e) = run_node(id, Path::new(&args[3]), ports, NodeLog::Shardwal) {
            eprintln!("node {id}: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    let runs = env_count("SHARDWAL_CLUSTER_RUNS", 1);
    let writes = env_count("SHARDWAL_CLUSTER_WRITES", 200);
    let mut failures = 0;
    for run in 1..=runs {
        let started = Instant::now();
        match scenario(run, writes) {
            Ok(o) => println!(
                "run {run}: killed leader {}, {} acknowledged writes all present on 3 identical state machines ({} unacknowledged), {:.1} s",
                o.killed,
                o.acked,
                o.unknown,
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                failures += 1;
                println!("run {run}: FAILED: {e}");
            }
        }
    }
    println!("cluster: {} passed, {failures} failed", runs - failures);
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
