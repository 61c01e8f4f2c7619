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
//! `SHARDWAL_CLUSTER_WRITES=N` sets the writes per phase (default 200). Traffic goes only to
//! 127.0.0.1, and every wait is bounded in time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{Config, Raft};
use openraft_rt::{AsyncRuntime, WatchReceiver};
use openraft_rt_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};
use shardwal::{ShardId, Wal, WalConfig};
use shardwal_raft::kv::KvStateMachine;
use shardwal_raft::types::{KvTokioConfig as C, Put};
use shardwal_raft::{ClientShard, ShardLogStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How long one request over TCP may take before the caller gives up on it.
const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// A request to a node: Raft's RPCs, and the example's client and control requests.
#[derive(Serialize, Deserialize)]
enum Msg {
    Append(AppendEntriesRequest<C>),
    Vote(VoteRequest<C>),
    Snapshot(VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>),
    Init(Vec<u64>),
    Put(Put),
    Leader,
    Dump,
}

/// A node's answer.
#[derive(Serialize, Deserialize)]
enum Reply {
    Append(AppendEntriesResponse<C>),
    Vote(VoteResponse<C>),
    Snapshot(SnapshotResponse<C>),
    Done,
    NotLeader(Option<u64>),
    Leader(Option<u64>),
    Dump(Option<u64>, BTreeMap<Vec<u8>, Vec<u8>>),
    Failed(String),
}

// ---- framing: a u32 little-endian length, then bincode --------------------------------

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let body = bincode::serialize(value).expect("encodable");
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// One blocking request (the orchestrator's side).
fn call(port: u16, msg: &Msg) -> AnyResult<Reply> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), RPC_TIMEOUT)?;
    s.set_read_timeout(Some(RPC_TIMEOUT * 3))?;
    s.set_write_timeout(Some(RPC_TIMEOUT))?;
    s.write_all(&encode(msg))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok(bincode::deserialize(&body)?)
}

/// One async request (a node's Raft network).
async fn call_async(port: u16, msg: &Msg) -> AnyResult<Reply> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(&encode(msg)).await?;
        let len = s.read_u32_le().await?;
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body).await?;
        AnyResult::Ok(bincode::deserialize(&body)?)
    };
    tokio::time::timeout(RPC_TIMEOUT, exchange).await?
}

// ---- a node --------------------------------------------------------------------------

/// Raft's network: one short TCP connection per RPC to `ports[target - 1]`.
#[derive(Clone)]
struct Net {
    ports: Vec<u16>,
}

struct Peer {
    port: u16,
}

fn unreachable(e: impl std::fmt::Display) -> RPCError<C> {
    let e = std::io::Error::other(e.to_string());
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkFactory<C> for Net {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &()) -> Peer {
        Peer {
            port: self.ports[target as usize - 1],
        }
    }
}

impl RaftNetworkV2<C> for Peer {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        match call_async(self.port, &Msg::Append(rpc)).await {
            Ok(Reply::Append(r)) => Ok(r),
            Ok(_) => Err(unreachable("unexpected reply to append")),
            Err(e) => Err(unreachable(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        match call_async(self.port, &Msg::Vote(rpc)).await {
            Ok(Reply::Vote(r)) => Ok(r),
            Ok(_) => Err(unreachable("unexpected reply to vote")),
            Err(e) => Err(unreachable(e)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<C>,
        snapshot: SnapshotOf<C, Self::SnapshotData>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let msg = Msg::Snapshot(vote, snapshot.meta, snapshot.snapshot.into_inner());
        match call_async(self.port, &msg).await {
            Ok(Reply::Snapshot(r)) => Ok(r),
            Ok(_) => Err(unreachable("unexpected reply to snapshot").into()),
            Err(e) => Err(unreachable(e).into()),
        }
    }
}

type Node = Raft<C, KvStateMachine<C>>;

/// Answers one request.
async fn answer(raft: &Node, sm: &KvStateMachine<C>, msg: Msg) -> Reply {
    let failed = |e: &dyn std::fmt::Display| Reply::Failed(e.to_string());
    match msg {
        Msg::Append(rpc) => raft
            .append_entries(rpc)
            .await
            .map_or_else(|e| failed(&e), Reply::Append),
        Msg::Vote(rpc) => raft
            .vote(rpc)
            .await
            .map_or_else(|e| failed(&e), Reply::Vote),
        Msg::Snapshot(vote, meta, data) => {
            let snapshot = SnapshotOf::<C, Cursor<Vec<u8>>> {
                meta,
                snapshot: Cursor::new(data),
            };
            let r = raft.install_full_snapshot(vote, snapshot).await;
            r.map_or_else(|e| failed(&e), Reply::Snapshot)
        }
        Msg::Init(ids) => {
            let members: BTreeSet<u64> = ids.into_iter().collect();
            raft.initialize(members)
                .await
                .map_or_else(|e| failed(&e), |_| Reply::Done)
        }
        Msg::Put(put) => match raft.client_write(put).await {
            Ok(_) => Reply::Done,
            Err(e) => match e.forward_to_leader() {
                Some(f) => Reply::NotLeader(f.leader_id),
                None => failed(&e),
            },
        },
        Msg::Leader => Reply::Leader(raft.metrics().borrow_watched().current_leader),
        Msg::Dump => {
            let s = sm.state();
            Reply::Dump(s.last_applied.map(|l| l.index), s.map)
        }
    }
}

async fn serve(
    mut sock: tokio::net::TcpStream,
    raft: Node,
    sm: KvStateMachine<C>,
) -> AnyResult<()> {
    let len = sock.read_u32_le().await?;
    let mut body = vec![0u8; len as usize];
    sock.read_exact(&mut body).await?;
    let reply = answer(&raft, &sm, bincode::deserialize(&body)?).await;
    sock.write_all(&encode(&reply)).await?;
    Ok(())
}

/// A node process: its log, its Raft, its listener; runs until killed.
fn node(id: u64, dir: &Path, ports: Vec<u16>) -> AnyResult<()> {
    let config = WalConfig::builder(dir)
        .shard_count(1)
        .segment_bytes(8 << 20)
        .build()?;
    let wal = Wal::start(config)?;
    let backend = ClientShard {
        client: wal.client(),
        shard: ShardId(0),
    };
    let port = ports[id as usize - 1];
    TokioRuntime::new(1).block_on(async move {
        let store = ShardLogStore::<C, ClientShard>::open(backend).await?;
        let sm = KvStateMachine::<C>::default();
        let config = Config {
            heartbeat_interval: 100,
            election_timeout_min: 800,
            election_timeout_max: 1600,
            ..Default::default()
        };
        let raft = Raft::new(
            id,
            Arc::new(config.validate()?),
            Net { ports },
            store,
            sm.clone(),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (sock, _) = listener.accept().await?;
            let (raft, sm) = (raft.clone(), sm.clone());
            tokio::task::spawn_local(async move {
                let _ = serve(sock, raft, sm).await;
            });
        }
    })
}

// ---- the orchestrator ----------------------------------------------------------------

/// A node's state machine as the orchestrator sees it: last applied index and the map.
type Dump = (Option<u64>, BTreeMap<Vec<u8>, Vec<u8>>);

/// The three node processes.
struct Cluster {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn start(dir: &Path) -> AnyResult<Cluster> {
        // Three free loopback ports, released just before the nodes bind them.
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port())
            })
            .collect::<AnyResult<_>>()?;
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            ports,
            children: vec![None, None, None],
        };
        for id in 1..=3 {
            c.spawn(id)?;
        }
        Ok(c)
    }

    fn spawn(&mut self, id: u64) -> AnyResult<()> {
        let ports: Vec<String> = self.ports.iter().map(|p| p.to_string()).collect();
        let child = Command::new(std::env::current_exe()?)
            .arg("node")
            .arg(id.to_string())
            .arg(self.dir.join(format!("node-{id}")))
            .arg(ports.join(","))
            .spawn()?;
        self.children[id as usize - 1] = Some(child);
        wait_until(Duration::from_secs(20), || {
            matches!(call(self.port(id), &Msg::Leader), Ok(Reply::Leader(_)))
        })
        .ok_or_else(|| format!("node {id} did not start"))?;
        Ok(())
    }

    fn kill(&mut self, id: u64) -> AnyResult<()> {
        if let Some(mut child) = self.children[id as usize - 1].take() {
            child.kill()?; // SIGKILL
            child.wait()?;
        }
        Ok(())
    }

    fn port(&self, id: u64) -> u16 {
        self.ports[id as usize - 1]
    }

    fn leader(&self) -> Option<u64> {
        (1..=3).find_map(|id| match call(self.port(id), &Msg::Leader) {
            Ok(Reply::Leader(Some(l))) if self.children[l as usize - 1].is_some() => Some(l),
            _ => None,
        })
    }

    /// Writes `put` through the leader, retrying for up to 15 s; `true` once acknowledged.
    fn write(&self, put: &Put) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut target = self.leader().unwrap_or(1);
        while Instant::now() < deadline {
            if self.children[target as usize - 1].is_some() {
                match call(self.port(target), &Msg::Put(put.clone())) {
                    Ok(Reply::Done) => return true,
                    Ok(Reply::NotLeader(Some(l))) => {
                        target = l;
                        continue;
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(50));
            target = self.leader().unwrap_or(target % 3 + 1);
        }
        false
    }

    fn dump(&self, id: u64) -> Option<Dump> {
        match call(self.port(id), &Msg::Dump) {
            Ok(Reply::Dump(applied, map)) => Some((applied, map)),
            _ => None,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=3 {
            let _ = self.kill(id);
        }
    }
}

/// Polls `ok` every 50 ms until it holds (`Some`) or `limit` passes (`None`).
fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
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
    let mut c = Cluster::start(dir.path())?;
    match call(c.port(1), &Msg::Init(vec![1, 2, 3]))? {
        Reply::Done => {}
        other => return Err(format!("initialize: {:?}", describe(&other)).into()),
    }
    wait_until(Duration::from_secs(20), || c.leader().is_some()).ok_or("no leader elected")?;
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

fn describe(r: &Reply) -> String {
    match r {
        Reply::Failed(e) => format!("failed: {e}"),
        Reply::NotLeader(l) => format!("not the leader (leader {l:?})"),
        _ => "unexpected reply".into(),
    }
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
        if let Err(e) = node(id, Path::new(&args[3]), ports) {
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
