//! A small Raft cluster over loopback TCP, for the cluster example and the replication
//! benchmark (`shardwal bench --raft`): the wire protocol, a node process, and the
//! orchestrator's handle on three node processes.
//!
//! Each node runs openraft on its tokio runtime with a [`KvStateMachine`] and a Raft log
//! store chosen by [`NodeLog`]: a [`crate::ShardLogStore`] through the `Send` client of its
//! own shardwal log; the same store on a [`MemoryBackend`] (the cost of durability taken
//! out); or, with feature `memstore`, openraft-memstore's `MemLogStore`, openraft's own
//! in-memory store (the no-durability ceiling). Messages are a little-endian `u32` length
//! and a bincode body, on connections that stay open (one per client and per Raft peer).
//! Traffic goes to 127.0.0.1 only, and every request has a time limit.
//!
//! ## Why the memstore cluster uses another type configuration
//! openraft-memstore implements `RaftLogStorage` for its own `TypeConfig` only (data
//! `ClientRequest { client, serial, status }`, response `ClientResponse`), so a node on it
//! runs Raft with that configuration. Everything else is the same code: the node process,
//! the wire protocol ([`Msg`] is generic over the configuration; client requests are
//! encoded alike for every configuration), the network, the KV state machine (a
//! `ClientRequest` is the put of `status` at key `client`) and the clients, which send the
//! same [`Put`]s (the node converts each: key bytes to text, each value byte to one letter,
//! so the sizes stay the same).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{Config, Raft, RaftTypeConfig};
use openraft_rt::{AsyncRuntime, WatchReceiver};
use openraft_rt_tokio::TokioRuntime;
use serde::{Deserialize, Serialize};
use shardwal::{ShardId, Wal, WalConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::kv::KvStateMachine;
use crate::types::{KvTokioConfig, Put};
use crate::{ClientShard, MemoryBackend, ShardLogStore};

/// Errors of the cluster tools: anything that can be shown.
pub type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How long one request may take before the caller gives up on it.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);

/// A request to a node: Raft's RPCs (for the node's type configuration `C`), and client
/// and control requests. The client and control requests (`Init`, `Put`, `Leader`, `Dump`)
/// do not depend on `C` and encode to the same bytes for every `C`, so clients speak
/// `Msg` (the default `C`) to any node.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Msg<C: RaftTypeConfig = KvTokioConfig> {
    /// Raft: append entries (or heartbeat).
    Append(AppendEntriesRequest<C>),
    /// Raft: request a vote.
    Vote(VoteRequest<C>),
    /// Raft: install a whole snapshot.
    Snapshot(VoteOf<C>, SnapshotMetaOf<C>, Vec<u8>),
    /// Initialize the cluster with these node ids.
    Init(Vec<u64>),
    /// Client write.
    Put(Put),
    /// Who leads, as this node knows.
    Leader,
    /// The state machine: last applied index and the whole map.
    Dump,
}

/// A node's answer. As with [`Msg`], the answers to client and control requests encode
/// alike for every `C`.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Reply<C: RaftTypeConfig = KvTokioConfig> {
    /// To `Append`.
    Append(AppendEntriesResponse<C>),
    /// To `Vote`.
    Vote(VoteResponse<C>),
    /// To `Snapshot`.
    Snapshot(SnapshotResponse<C>),
    /// `Init` or `Put` done (a put: committed and applied).
    Done,
    /// This node does not lead; the leader if known.
    NotLeader(Option<u64>),
    /// To `Leader`.
    Leader(Option<u64>),
    /// To `Dump`.
    Dump(Option<u64>, BTreeMap<Vec<u8>, Vec<u8>>),
    /// The request failed.
    Failed(String),
}

/// A node's state machine as seen from outside: last applied index and the map.
pub type Dump = (Option<u64>, BTreeMap<Vec<u8>, Vec<u8>>);

fn frame<T: Serialize>(value: &T) -> Vec<u8> {
    let body = bincode::serialize(value).expect("protocol messages encode");
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A blocking connection to one node (the orchestrator's and the tools' side).
pub struct Conn {
    stream: TcpStream,
}

impl Conn {
    /// Connects to the node listening on `port`.
    pub fn open(port: u16) -> AnyResult<Conn> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), RPC_TIMEOUT)?;
        stream.set_read_timeout(Some(RPC_TIMEOUT * 5))?;
        stream.set_write_timeout(Some(RPC_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream })
    }

    /// Sends `msg` and waits for the reply.
    pub fn call(&mut self, msg: &Msg) -> AnyResult<Reply> {
        self.stream.write_all(&frame(msg))?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(bincode::deserialize(&body)?)
    }
}

/// One request on a fresh connection.
pub fn call(port: u16, msg: &Msg) -> AnyResult<Reply> {
    Conn::open(port)?.call(msg)
}

/// An async connection that reconnects after any error (a node's Raft peers, the bench's
/// clients).
pub struct AsyncConn {
    port: u16,
    stream: Option<tokio::net::TcpStream>,
}

impl AsyncConn {
    /// A connection to `port`, opened on first use.
    pub fn new(port: u16) -> AsyncConn {
        AsyncConn { port, stream: None }
    }

    /// Sends `msg` and waits for the reply, within [`RPC_TIMEOUT`].
    pub async fn call(&mut self, msg: &Msg) -> AnyResult<Reply> {
        self.call_as(msg).await
    }

    /// [`AsyncConn::call`] for a node of type configuration `C` (Raft's RPCs).
    pub async fn call_as<C: RaftTypeConfig>(&mut self, msg: &Msg<C>) -> AnyResult<Reply<C>> {
        let out = tokio::time::timeout(RPC_TIMEOUT, self.exchange(frame(msg))).await;
        let out = out.map_err(|e| e.into()).and_then(|r| r);
        if out.is_err() {
            self.stream = None; // start over on a new connection next time
        }
        out
    }

    async fn exchange<C: RaftTypeConfig>(&mut self, request: Vec<u8>) -> AnyResult<Reply<C>> {
        if self.stream.is_none() {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let s = self.stream.as_mut().expect("connected");
        s.write_all(&request).await?;
        let len = s.read_u32_le().await?;
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body).await?;
        Ok(bincode::deserialize(&body)?)
    }
}

// ---- a node ----------------------------------------------------------------------------

/// What a node's type configuration must be: `u64` node ids without node data, openraft's
/// tokio runtime, data a [`Put`] converts to, and the KV state machine for it.
pub trait NodeConfig:
    RaftTypeConfig<NodeId = u64, Node = (), AsyncRuntime = TokioRuntime, D: From<Put>>
{
}

impl NodeConfig for KvTokioConfig {}

#[cfg(feature = "memstore")]
impl NodeConfig for openraft_memstore::TypeConfig {}

/// A [`Put`] as openraft-memstore's data: the put of `status` at key `client`. The key
/// bytes become text (lossily: the bench's keys are ASCII), each value byte one letter, so
/// the sizes stay those of the put.
#[cfg(feature = "memstore")]
impl From<Put> for openraft_memstore::ClientRequest {
    fn from(put: Put) -> Self {
        openraft_memstore::ClientRequest {
            client: String::from_utf8_lossy(&put.key).into_owned(),
            serial: 0,
            status: put
                .value
                .iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect(),
        }
    }
}

/// Raft's network: one kept connection per peer, to `ports[target - 1]`.
struct Net<C> {
    ports: Vec<u16>,
    _config: std::marker::PhantomData<C>,
}

struct Peer<C> {
    conn: AsyncConn,
    _config: std::marker::PhantomData<C>,
}

fn unreachable<C: RaftTypeConfig>(e: impl std::fmt::Display) -> RPCError<C> {
    let e = std::io::Error::other(e.to_string());
    RPCError::Unreachable(Unreachable::new(&e))
}

impl<C: NodeConfig> RaftNetworkFactory<C> for Net<C> {
    type Network = Peer<C>;

    async fn new_client(&mut self, target: u64, _node: &()) -> Peer<C> {
        Peer {
            conn: AsyncConn::new(self.ports[target as usize - 1]),
            _config: std::marker::PhantomData,
        }
    }
}

impl<C: NodeConfig> RaftNetworkV2<C> for Peer<C> {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        match self.conn.call_as(&Msg::Append(rpc)).await {
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
        match self.conn.call_as(&Msg::Vote(rpc)).await {
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
        match self.conn.call_as(&msg).await {
            Ok(Reply::Snapshot(r)) => Ok(r),
            Ok(_) => Err(unreachable("unexpected reply to snapshot").into()),
            Err(e) => Err(unreachable(e).into()),
        }
    }
}

type Node<C> = Raft<C, KvStateMachine<C>>;

/// Answers one request.
async fn answer<C>(raft: &Node<C>, sm: &KvStateMachine<C>, msg: Msg<C>) -> Reply<C>
where
    C: NodeConfig,
    KvStateMachine<C>: RaftStateMachine<C, SnapshotData = Cursor<Vec<u8>>>,
{
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
            let r = raft.initialize(members).await;
            r.map_or_else(|e| failed(&e), |_| Reply::Done)
        }
        Msg::Put(put) => match raft.client_write(put.into()).await {
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

/// Serves requests on one connection until the peer closes it.
async fn serve<C>(
    mut sock: tokio::net::TcpStream,
    raft: Node<C>,
    sm: KvStateMachine<C>,
) -> AnyResult<()>
where
    C: NodeConfig,
    KvStateMachine<C>: RaftStateMachine<C, SnapshotData = Cursor<Vec<u8>>>,
{
    sock.set_nodelay(true)?;
    loop {
        let Ok(len) = sock.read_u32_le().await else {
            return Ok(()); // closed
        };
        let mut body = vec![0u8; len as usize];
        sock.read_exact(&mut body).await?;
        let msg: Msg<C> = bincode::deserialize(&body)?;
        let reply = answer(&raft, &sm, msg).await;
        sock.write_all(&frame(&reply)).await?;
    }
}

/// Where a node keeps its Raft log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeLog {
    /// A shardwal log (one shard) in the node's directory: durable.
    Shardwal,
    /// In memory only: the same store without durability (a ceiling, never for data).
    Memory,
    /// openraft-memstore's `MemLogStore`, openraft's own in-memory log store, under its
    /// own type configuration (see the module's notes): the no-durability ceiling. Needs
    /// feature `memstore`.
    Memstore,
}

impl NodeLog {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NodeLog::Shardwal => "shardwal",
            NodeLog::Memory => "memory",
            NodeLog::Memstore => "memstore",
        }
    }

    /// Parses [`NodeLog::name`].
    pub fn parse(s: &str) -> AnyResult<NodeLog> {
        match s {
            "shardwal" => Ok(NodeLog::Shardwal),
            "memory" => Ok(NodeLog::Memory),
            "memstore" => Ok(NodeLog::Memstore),
            other => {
                Err(format!("unknown node log {other:?} (shardwal, memory or memstore)").into())
            }
        }
    }
}

/// Runs node `id` (1-based) of a cluster whose nodes listen on `ports`, with its log in
/// `dir`; serves until the process is killed. A shardwal node's store caches
/// `SHARDWAL_RAFT_CACHE_BYTES` of entries (default [`crate::DEFAULT_CACHE_BYTES`]). Errors: the log does not open, the port does
/// not bind, `NodeLog::Memstore` in a build without feature `memstore`.
pub fn run_node(id: u64, dir: &Path, ports: Vec<u16>, log: NodeLog) -> AnyResult<()> {
    assert!(id >= 1 && id as usize <= ports.len());
    let wal = match log {
        NodeLog::Shardwal => {
            let config = WalConfig::builder(dir).shard_count(1).build()?;
            Some(Wal::start(config)?)
        }
        NodeLog::Memory | NodeLog::Memstore => None,
    };
    TokioRuntime::new(1).block_on(async move {
        match (log, &wal) {
            (NodeLog::Shardwal, Some(wal)) => {
                let backend = ClientShard {
                    client: wal.client(),
                    shard: ShardId(0),
                };
                let store = ShardLogStore::<KvTokioConfig, _>::open_with_cache(
                    backend,
                    cache_bytes_from_env()?,
                )
                .await?;
                serve_node::<KvTokioConfig, _>(id, ports, store).await
            }
            (NodeLog::Memory, _) => {
                let store =
                    ShardLogStore::<KvTokioConfig, _>::open(MemoryBackend::default()).await?;
                serve_node::<KvTokioConfig, _>(id, ports, store).await
            }
            #[cfg(feature = "memstore")]
            (NodeLog::Memstore, _) => {
                let (store, _) = openraft_memstore::new_mem_store();
                serve_node::<openraft_memstore::TypeConfig, _>(id, ports, store).await
            }
            #[cfg(not(feature = "memstore"))]
            (NodeLog::Memstore, _) => {
                Err("this build has no memstore node log (feature `memstore`)".into())
            }
            (NodeLog::Shardwal, None) => unreachable!("a shardwal node opened its log"),
        }
    })
}

/// The entry cache budget of a shardwal node's store: `SHARDWAL_RAFT_CACHE_BYTES`, or
/// [`crate::DEFAULT_CACHE_BYTES`]. Error: a value that is not a byte count.
fn cache_bytes_from_env() -> AnyResult<usize> {
    match std::env::var("SHARDWAL_RAFT_CACHE_BYTES") {
        Ok(v) => Ok(v
            .parse()
            .map_err(|_| format!("SHARDWAL_RAFT_CACHE_BYTES={v:?} is not a byte count"))?),
        Err(_) => Ok(crate::DEFAULT_CACHE_BYTES),
    }
}

/// Starts Raft for node `id` on `store` and serves its port until the process is killed.
async fn serve_node<C, S>(id: u64, ports: Vec<u16>, store: S) -> AnyResult<()>
where
    C: NodeConfig,
    S: RaftLogStorage<C>,
    KvStateMachine<C>: RaftStateMachine<C, SnapshotData = Cursor<Vec<u8>>>,
{
    let port = ports[id as usize - 1];
    let sm = KvStateMachine::<C>::default();
    // Election timeouts well above an fdatasync's tail on a shared, noisy machine.
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 800,
        election_timeout_max: 1600,
        ..Default::default()
    };
    let net = Net {
        ports,
        _config: std::marker::PhantomData,
    };
    let raft = Raft::new(id, Arc::new(config.validate()?), net, store, sm.clone()).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (sock, _) = listener.accept().await?;
        let (raft, sm) = (raft.clone(), sm.clone());
        tokio::task::spawn_local(async move {
            let _ = serve(sock, raft, sm).await;
        });
    }
}

// ---- the orchestrator ------------------------------------------------------------------

/// Builds the process of node `id` with its directory and the cluster's ports (comma list).
pub type NodeCommand = Box<dyn Fn(u64, &Path, &str) -> Command>;

/// Three node processes on loopback, started with `command(id, dir, ports)`.
pub struct Cluster {
    dir: PathBuf,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    command: NodeCommand,
}

impl Cluster {
    /// Starts nodes 1, 2 and 3, each in `dir/node-ID`, with `command` building each node's
    /// process (it must end up in [`run_node`]), and waits until all three answer.
    pub fn start(dir: &Path, command: NodeCommand) -> AnyResult<Cluster> {
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
            command,
        };
        for id in 1..=3 {
            c.spawn(id)?;
        }
        Ok(c)
    }

    /// Starts node `id` (again) and waits up to 20 s until it answers.
    pub fn spawn(&mut self, id: u64) -> AnyResult<()> {
        let ports: Vec<String> = self.ports.iter().map(|p| p.to_string()).collect();
        let node_dir = self.dir.join(format!("node-{id}"));
        let child = (self.command)(id, &node_dir, &ports.join(",")).spawn()?;
        self.children[id as usize - 1] = Some(child);
        wait_until(Duration::from_secs(20), || {
            matches!(call(self.port(id), &Msg::Leader), Ok(Reply::Leader(_)))
        })
        .ok_or_else(|| format!("node {id} did not start"))?;
        Ok(())
    }

    /// Kills node `id` with SIGKILL.
    pub fn kill(&mut self, id: u64) -> AnyResult<()> {
        if let Some(mut child) = self.children[id as usize - 1].take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The port node `id` listens on.
    pub fn port(&self, id: u64) -> u16 {
        self.ports[id as usize - 1]
    }

    /// Node `id`'s directory.
    pub fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    /// Initializes the cluster and waits up to 20 s for a leader.
    pub fn initialize(&self) -> AnyResult<u64> {
        match call(self.port(1), &Msg::Init(vec![1, 2, 3]))? {
            Reply::Done => {}
            Reply::Failed(e) => return Err(format!("initialize: {e}").into()),
            _ => return Err("initialize: unexpected reply".into()),
        }
        let mut leader = None;
        wait_until(Duration::from_secs(20), || {
            leader = self.leader();
            leader.is_some()
        });
        leader.ok_or_else(|| "no leader elected within 20 s".into())
    }

    /// The leader, as a running node reports it (only a running node counts).
    pub fn leader(&self) -> Option<u64> {
        (1..=3).find_map(|id| match call(self.port(id), &Msg::Leader) {
            Ok(Reply::Leader(Some(l))) if self.children[l as usize - 1].is_some() => Some(l),
            _ => None,
        })
    }

    /// Writes `put` through the leader, retrying for up to 15 s; `true` once acknowledged.
    pub fn write(&self, put: &Put) -> bool {
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

    /// Node `id`'s state machine.
    pub fn dump(&self, id: u64) -> Option<Dump> {
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
pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_logs_parse_by_name() {
        for log in [NodeLog::Shardwal, NodeLog::Memory, NodeLog::Memstore] {
            assert_eq!(NodeLog::parse(log.name()).unwrap(), log);
        }
        assert!(NodeLog::parse("rocks").is_err());
    }

    /// Clients speak `Msg` (the default configuration) to nodes of any configuration: the
    /// client requests and their answers must encode to the same bytes.
    #[cfg(feature = "memstore")]
    #[test]
    fn client_requests_encode_alike_for_every_configuration() {
        type M = openraft_memstore::TypeConfig;
        let put = Put {
            key: b"k".to_vec(),
            value: vec![7; 256],
        };
        let same = |a: Vec<u8>, b: Vec<u8>| assert_eq!(a, b);
        same(
            frame(&Msg::<KvTokioConfig>::Put(put.clone())),
            frame(&Msg::<M>::Put(put.clone())),
        );
        same(
            frame(&Msg::<KvTokioConfig>::Init(vec![1, 2, 3])),
            frame(&Msg::<M>::Init(vec![1, 2, 3])),
        );
        same(
            frame(&Msg::<KvTokioConfig>::Leader),
            frame(&Msg::<M>::Leader),
        );
        same(frame(&Msg::<KvTokioConfig>::Dump), frame(&Msg::<M>::Dump));
        same(
            frame(&Reply::<KvTokioConfig>::Done),
            frame(&Reply::<M>::Done),
        );
        same(
            frame(&Reply::<KvTokioConfig>::NotLeader(Some(2))),
            frame(&Reply::<M>::NotLeader(Some(2))),
        );
        same(
            frame(&Reply::<KvTokioConfig>::Leader(Some(1))),
            frame(&Reply::<M>::Leader(Some(1))),
        );
        let map = BTreeMap::from([(b"k".to_vec(), b"v".to_vec())]);
        same(
            frame(&Reply::<KvTokioConfig>::Dump(Some(3), map.clone())),
            frame(&Reply::<M>::Dump(Some(3), map)),
        );
        // A memstore request keeps the put's sizes.
        let request = openraft_memstore::ClientRequest::from(put);
        assert_eq!((request.client.len(), request.status.len()), (1, 256));
    }
}
