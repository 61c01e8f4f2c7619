//! The kv example (examples/kv.rs) as a service: SET, GET, bad lines, QUIT and SHUTDOWN over
//! loopback TCP, then a restart on the same directory that rebuilds every value from the log.
mod common;
use common::*;

#[allow(dead_code)]
#[path = "../examples/kv.rs"]
mod kv;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use shardwal::{Cut, ShardId, Wal};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SHARDS: u32 = 3;

/// A running service: its address, a way to stop it, and its task (yielding the final cut).
struct Service {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<shardwal::Result<Cut>>,
    wal: Wal,
}

/// Rebuilds the store from `dir`, starts the log and serves it on an ephemeral loopback port.
async fn start(dir: &Path) -> Service {
    let store = Arc::new(kv::rebuild(dir, SHARDS).unwrap());
    let wal = Wal::start(small(dir, SHARDS).build().unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kv::serve(listener, wal.client(), store, async move {
        let _ = stopped.await;
    }));
    Service {
        addr,
        stop,
        task,
        wal,
    }
}

struct Conn {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        Conn {
            lines: BufReader::new(read).lines(),
            write,
        }
    }

    async fn send(&mut self, line: &str) {
        let line = format!("{line}\n");
        self.write.write_all(line.as_bytes()).await.unwrap();
    }

    /// Sends one line and returns the reply line.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(line).await;
        self.lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("connection closed after {line:?}"))
    }

    /// Whether the server closed the connection (no more lines).
    async fn at_eof(&mut self) -> bool {
        self.lines.next_line().await.unwrap().is_none()
    }
}

fn value(i: usize) -> String {
    format!("value of key {i}: {}", "x".repeat(i % 50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_service_sets_gets_and_rebuilds_after_restart() {
    let d = tempfile::tempdir().unwrap();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();

    // First run.
    let svc = start(d.path()).await;
    let mut a = Conn::open(svc.addr).await;
    let mut b = Conn::open(svc.addr).await;
    assert_eq!(
        a.cmd("GET key-1").await,
        "NOT_FOUND",
        "a fresh log is empty"
    );
    // Two connections writing at once, keys spread over every shard.
    tokio::join!(
        async {
            for i in (0..40).step_by(2) {
                assert_eq!(a.cmd(&format!("SET key-{i} {}", value(i))).await, "OK");
            }
        },
        async {
            for i in (1..40).step_by(2) {
                assert_eq!(b.cmd(&format!("SET key-{i} {}", value(i))).await, "OK");
            }
        }
    );
    for i in 0..40 {
        expected.insert(format!("key-{i}"), value(i));
    }
    let shards: HashSet<ShardId> = expected
        .keys()
        .map(|k| shardwal::shard_for_key(k.as_bytes(), SHARDS))
        .collect();
    assert_eq!(shards.len(), SHARDS as usize, "keys cover every shard");
    // Overwrites: the latest value wins.
    assert_eq!(a.cmd("SET key-7 seven").await, "OK");
    assert_eq!(b.cmd("SET key-7 SEVEN, again").await, "OK");
    expected.insert("key-7".into(), "SEVEN, again".into());
    for (k, v) in &expected {
        assert_eq!(b.cmd(&format!("GET {k}")).await, format!("VALUE {v}"));
    }
    assert_eq!(a.cmd("GET nobody").await, "NOT_FOUND");

    // Bad lines get ERR and the connection keeps working.
    for bad in [
        "",
        "HELLO",
        "set key-1 lowercase",
        "SET",
        "SET lonely",
        "SET  twospaces",
        "GET",
        "GET two keys",
        "QUIT now",
    ] {
        let reply = a.cmd(bad).await;
        assert!(reply.starts_with("ERR "), "{bad:?} -> {reply:?}");
    }
    let too_big = format!("SET big {}", "v".repeat(20 << 10));
    let reply = a.cmd(&too_big).await;
    assert!(
        reply.starts_with("ERR ") && reply.contains("exceeds"),
        "{reply}"
    );
    assert_eq!(
        a.cmd("GET big").await,
        "NOT_FOUND",
        "a refused SET changes nothing"
    );
    assert_eq!(a.cmd("GET key-3").await, format!("VALUE {}", value(3)));

    // QUIT closes one connection; the other keeps working.
    a.send("QUIT").await;
    assert!(a.at_eof().await);
    assert_eq!(b.cmd("GET key-0").await, format!("VALUE {}", value(0)));

    // SHUTDOWN stops the service and closes the log.
    assert_eq!(b.cmd("SHUTDOWN").await, "BYE");
    assert!(b.at_eof().await);
    let cut = svc.task.await.unwrap().unwrap();
    drop(svc.wal);
    drop(svc.stop);
    let sets = 40 + 2;
    let records: u64 = cut.as_slice().iter().map(|l| l.get()).sum();
    assert_eq!(records, sets, "one record per acknowledged SET");
    assert!(
        TcpStream::connect(svc.addr).await.is_err(),
        "the listener is closed"
    );

    // The log alone rebuilds the same map (and with the wrong shard count, refuses to).
    let store = kv::rebuild(d.path(), SHARDS).unwrap();
    assert_eq!(store.key_count(), expected.len());
    for (k, v) in &expected {
        let shard = shardwal::shard_for_key(k.as_bytes(), SHARDS);
        assert_eq!(store.get(shard, k).as_ref(), Some(v));
    }
    assert!(kv::rebuild(d.path(), 2).is_err());

    // Second run on the same directory: every value is back.
    let svc = start(d.path()).await;
    let mut c = Conn::open(svc.addr).await;
    for (k, v) in &expected {
        assert_eq!(c.cmd(&format!("GET {k}")).await, format!("VALUE {v}"));
    }
    assert_eq!(c.cmd("GET nobody").await, "NOT_FOUND");
    assert_eq!(c.cmd("SET key-0 after restart").await, "OK");
    expected.insert("key-0".into(), "after restart".into());
    // Stopped from outside this time (main's ctrl-c path); the open connection then ends.
    svc.stop.send(()).unwrap();
    let cut2 = svc.task.await.unwrap().unwrap();
    drop(svc.wal);
    let records2: u64 = cut2.as_slice().iter().map(|l| l.get()).sum();
    assert_eq!(records2, sets + 1);
    let reply = c.cmd("SET key-1 too late").await;
    assert!(reply.starts_with("ERR "), "a SET after close: {reply}");

    let store = kv::rebuild(d.path(), SHARDS).unwrap();
    for (k, v) in &expected {
        let shard = shardwal::shard_for_key(k.as_bytes(), SHARDS);
        assert_eq!(store.get(shard, k).as_ref(), Some(v), "{k}");
    }
}

#[test]
fn records_round_trip() {
    for (k, v) in [
        ("k", "v"),
        ("user:1", "Ada Lovelace"),
        ("ключ", "значение ✓"),
    ] {
        assert_eq!(kv::decode(&kv::encode(k, v)), Some((k, v)));
    }
    assert_eq!(kv::decode(b"\x09\x00\x00\x00short"), None);
    assert_eq!(kv::decode(b"ab"), None);
}
