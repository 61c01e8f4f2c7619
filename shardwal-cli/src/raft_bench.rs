//! `shardwal bench --raft`: replicated durable writes on a 3-node openraft cluster over
//! loopback TCP (`shardwal_raft::cluster`), each node a `shardwal raft-node` process with
//! its own shardwal log, beside the same cluster whose nodes keep the Raft log in memory,
//! interleaved round by round: in openraft-memstore's `MemLogStore` (openraft's own
//! in-memory store, the no-durability ceiling; under memstore's type configuration, see
//! `shardwal_raft::cluster`) and/or in shardwal's store on an in-memory backend.
//!
//! C clients (tokio tasks, one kept connection each) write 256-byte values to the leader
//! and wait until each write is committed and applied. The leader's records per fdatasync
//! come from its shared header: durable LSN and publications (one per group commit) before
//! and after the window.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardwal::HeaderView;
use shardwal_raft::cluster::{AsyncConn, Cluster, Msg, NodeLog, Reply};
use shardwal_raft::types::Put;

use crate::run::{Meter, RunKind, RunResult};
use crate::stats::{cpu_seconds, SharedHistogram};
use crate::AnyResult;

/// The label of a replication run.
pub fn label(clients: usize, log: NodeLog) -> String {
    match log {
        NodeLog::Shardwal => format!("raft 3 nodes, {clients} clients"),
        NodeLog::Memory => format!("raft 3 nodes, {clients} clients (memory log)"),
        NodeLog::Memstore => format!("raft 3 nodes, {clients} clients (memstore)"),
    }
}

/// The node processes: this binary's hidden `raft-node` command.
fn node_command(log: NodeLog) -> shardwal_raft::cluster::NodeCommand {
    Box::new(move |id: u64, dir: &Path, ports: &str| {
        let mut c = Command::new(std::env::current_exe().expect("own path"));
        c.arg("raft-node")
            .arg(id.to_string())
            .arg(dir)
            .arg(ports)
            .arg(log.name());
        c
    })
}

/// The leader's (durable LSN, publications) from its shared header (shardwal nodes only).
fn leader_position(cluster: &Cluster, leader: u64) -> Option<(u64, u64)> {
    let view = HeaderView::open(&cluster.node_dir(leader)).ok()?;
    let p = view.positions().ok()?.into_iter().next()?;
    Some((p.durable_lsn.0, p.publishes))
}

/// One run: a fresh cluster in `dir`, `clients` writers for `seconds`.
pub fn run(dir: &Path, clients: usize, log: NodeLog, seconds: f64) -> AnyResult<RunResult> {
    assert!(clients > 0 && seconds > 0.0);
    std::fs::create_dir_all(dir)?;
    let cluster = Cluster::start(dir, node_command(log))?;
    let leader = cluster.initialize()?;
    let warm = Put {
        key: b"warm".to_vec(),
        value: vec![1; 256],
    };
    if !cluster.write(&warm) {
        return Err("the cluster took no write".into());
    }
    let label = label(clients, log);
    let before = leader_position(&cluster, leader);
    let latency = SharedHistogram::new();
    let meter = Meter::start(&label, seconds);
    let failed = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_seconds();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let ports: Vec<u16> = (1..=3).map(|id| cluster.port(id)).collect();
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (samples, counter) = (latency.writer(), meter.counter());
                let client = BenchClient {
                    id: c,
                    ports: ports.clone(),
                    target: leader,
                    retries: retries.clone(),
                };
                tokio::spawn(client.run(deadline, samples, counter))
            })
            .collect();
        for t in tasks {
            if t.await.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
        }
    });
    let retries = retries.load(Ordering::Relaxed);
    if retries > 0 {
        eprintln!("{label}: {retries} writes were retried (leader change or overload)");
    }
    let mut r = RunResult::new(label, RunKind::Replicated, seconds);
    r.cpu_seconds = cpu_seconds() - cpu0;
    r.timeline = meter.finish();
    r.latency_ns = latency.snapshot();
    r.ops = r.latency_ns.len();
    r.bytes = r.ops * 256;
    if let (Some(b), Some(a)) = (before, leader_position(&cluster, leader)) {
        r.fdatasyncs = a.1 - b.1;
        r.flushes = r.fdatasyncs;
        // Records per fdatasync counts every record of the leader's log (entries and the
        // store's own), from its durable LSN.
        r.leader_records = Some(a.0 - b.0);
    }
    if failed.load(Ordering::Relaxed) {
        return Err(format!("{}: a write failed (leader change mid-run?)", r.label).into());
    }
    Ok(r)
}

/// One closed-loop client: write, wait for the answer, repeat until the deadline. A write
/// that fails (a leader change, a time-out under overload) is retried, on the leader the
/// refusal names or after 20 ms; a retried write's latency counts from its first try.
struct BenchClient {
    id: usize,
    ports: Vec<u16>,
    target: u64,
    retries: Arc<std::sync::atomic::AtomicU64>,
}

impl BenchClient {
    async fn run(
        mut self,
        deadline: Instant,
        mut samples: crate::stats::LatencySamples,
        counter: Arc<std::sync::atomic::AtomicU64>,
    ) {
        let mut conns: Vec<AsyncConn> = self.ports.iter().map(|&p| AsyncConn::new(p)).collect();
        let mut i = 0u64;
        while Instant::now() < deadline {
            let put = Put {
                key: format!("c{}-{i}", self.id).into_bytes(),
                value: vec![self.id as u8; 256],
            };
            let t = Instant::now();
            while Instant::now() < deadline {
                let conn = &mut conns[self.target as usize - 1];
                // `Some(Some(leader))`: go there; `Some(None)`: wait and retry; `None`: done.
                let retry = match conn.call(&Msg::Put(put.clone())).await {
                    Ok(Reply::Done) => None,
                    Ok(Reply::NotLeader(Some(l))) => Some(Some(l)),
                    _ => Some(None),
                };
                match retry {
                    None => {
                        samples.record(t.elapsed().as_nanos() as u64);
                        counter.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Some(Some(l)) => self.target = l,
                    Some(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                self.retries.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
        }
    }
}
