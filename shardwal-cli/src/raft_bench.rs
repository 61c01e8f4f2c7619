//! `shardwal bench --raft`: replicated durable writes on a 3-node openraft cluster over
//! loopback TCP (`shardwal_raft::cluster`), each node a `shardwal raft-node` process with
//! its own shardwal log, beside the same cluster whose nodes keep the Raft log in memory
//! (the same store without durability: the ceiling), interleaved round by round.
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
    let port = cluster.port(leader);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (mut samples, counter, failed) =
                    (latency.writer(), meter.counter(), failed.clone());
                tokio::spawn(async move {
                    let mut conn = AsyncConn::new(port);
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let put = Put {
                            key: format!("c{c}-{i}").into_bytes(),
                            value: vec![c as u8; 256],
                        };
                        let t = Instant::now();
                        match conn.call(&Msg::Put(put)).await {
                            Ok(Reply::Done) => samples.record(t.elapsed().as_nanos() as u64),
                            _ => {
                                failed.store(true, Ordering::Relaxed);
                                return;
                            }
                        }
                        counter.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
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
