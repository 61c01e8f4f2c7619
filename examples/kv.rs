//! A small durable key-value service: an in-memory map per shard, rebuilt from the log at
//! start, served over a line protocol on TCP (tokio), every write made durable in shardwal
//! before it is acknowledged.
//!
//! ```text
//! cargo run --release --example kv [DIR] [ADDR] [SHARDS]
//!     DIR     log directory (default: a temporary directory, removed at exit)
//!     ADDR    listen address (default 127.0.0.1:0, an ephemeral port)
//!     SHARDS  shard count (default: one per CPU); keep it the same across restarts
//! ```
//! Then, for example, `nc 127.0.0.1 PORT`:
//! ```text
//! SET user:1 Ada Lovelace   -> OK              (the value is the rest of the line)
//! GET user:1                -> VALUE Ada Lovelace
//! GET user:2                -> NOT_FOUND
//! QUIT                      -> (closes this connection)
//! SHUTDOWN                  -> BYE             (stops the service; so does ctrl-c)
//! ```
//! Anything else gets `ERR <reason>`.
//!
//! Each key lives in the shard [`Client::shard_for_key`] picks, so the records of one key
//! are in one shard, in order. The map is updated only after the record is durable: a value
//! a client saw `OK` for survives a crash, and a value that `GET` returns is on disk.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use shardwal::{Client, Cut, LogReader, Lsn, ShardId, Wal, WalConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Any error, sendable between threads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A value and the LSN of the record that set it.
struct Entry {
    lsn: Lsn,
    value: String,
}

/// The in-memory state: one map per shard, each behind its own lock.
pub struct Store {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
}

impl Store {
    fn new(shard_count: u32) -> Store {
        Store {
            shards: (0..shard_count).map(|_| Mutex::default()).collect(),
        }
    }

    fn map(&self, shard: ShardId) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.shards[shard.index()].lock().unwrap()
    }

    /// The value of `key` (which lives in `shard`).
    pub fn get(&self, shard: ShardId, key: &str) -> Option<String> {
        self.map(shard).get(key).map(|e| e.value.clone())
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|m| m.lock().unwrap().len()).sum()
    }

    /// Records that `key = value` is durable at `lsn` of `shard`. Two SETs of one key from
    /// different connections can finish in either order; the higher LSN is the later write
    /// (it is what a replay of the log ends with), so it wins.
    fn apply(&self, shard: ShardId, lsn: Lsn, key: &str, value: &str) {
        let mut map = self.map(shard);
        match map.get_mut(key) {
            Some(e) if e.lsn >= lsn => {}
            Some(e) => {
                e.lsn = lsn;
                value.clone_into(&mut e.value);
            }
            None => {
                let value = value.to_owned();
                map.insert(key.to_owned(), Entry { lsn, value });
            }
        }
    }
}

/// A record: the key's length (u32, little endian), the key, the value.
pub fn encode(key: &str, value: &str) -> Vec<u8> {
    let mut r = Vec::with_capacity(4 + key.len() + value.len());
    r.extend_from_slice(&(key.len() as u32).to_le_bytes());
    r.extend_from_slice(key.as_bytes());
    r.extend_from_slice(value.as_bytes());
    r
}

/// The `(key, value)` of a record, or `None` when it is not one of ours.
pub fn decode(record: &[u8]) -> Option<(&str, &str)> {
    let len = u32::from_le_bytes(record.get(..4)?.try_into().ok()?) as usize;
    let key = record.get(4..4 + len)?;
    let value = &record[4 + len..];
    Some((
        std::str::from_utf8(key).ok()?,
        std::str::from_utf8(value).ok()?,
    ))
}

/// Rebuilds the maps by replaying every shard of the log in `dir`. Call it before
/// [`Wal::start`]: [`LogReader::open`] reads a closed log and needs no executor.
pub fn rebuild(dir: &Path, shard_count: u32) -> Result<Store, BoxError> {
    let store = Store::new(shard_count);
    for s in 0..shard_count {
        let shard = ShardId(s);
        for record in LogReader::open(dir, shard, Lsn(1))? {
            let record = record?;
            let (key, value) = decode(&record.payload)
                .ok_or_else(|| format!("shard {s} LSN {}: not a kv record", record.lsn))?;
            if shardwal::shard_for_key(key.as_bytes(), shard_count) != shard {
                return Err(format!(
                    "shard {s} holds key {key:?} of another shard: \
                     was the log written with another shard count?"
                )
                .into());
            }
            store.apply(shard, record.lsn, key, value);
        }
    }
    Ok(store)
}

/// Accepts connections on `listener` until `stop` resolves or a client sends `SHUTDOWN`,
/// then closes the log ([`Client::close`]) and returns its final durable cut. Requests still
/// in flight on open connections when the log closes get `ERR`.
pub async fn serve(
    listener: TcpListener,
    client: Client,
    store: Arc<Store>,
    stop: impl Future<Output = ()>,
) -> shardwal::Result<Cut> {
    let shutdown = Arc::new(Notify::new());
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = shutdown.notified() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let conn = connection(stream, client.clone(), store.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            eprintln!("connection: {e}");
                        }
                    });
                }
                // For example out of file descriptors: keep serving the others.
                Err(e) => eprintln!("accept: {e}"),
            },
        }
    }
    drop(listener);
    client.close().await
}

/// One request line, parsed.
enum Command<'a> {
    Set(&'a str, &'a str),
    Get(&'a str),
    Quit,
    Shutdown,
}

fn parse(line: &str) -> Result<Command<'_>, &'static str> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    match cmd {
        "SET" => match rest.split_once(' ') {
            Some((key, value)) if !key.is_empty() && !value.is_empty() => {
                Ok(Command::Set(key, value))
            }
            _ => Err("usage: SET <key> <value>"),
        },
        "GET" if !rest.is_empty() && !rest.contains(' ') => Ok(Command::Get(rest)),
        "GET" => Err("usage: GET <key>"),
        "QUIT" if rest.is_empty() => Ok(Command::Quit),
        "SHUTDOWN" if rest.is_empty() => Ok(Command::Shutdown),
        _ => Err("unknown command; try SET, GET, QUIT or SHUTDOWN"),
    }
}

async fn connection(
    stream: TcpStream,
    client: Client,
    store: Arc<Store>,
    shutdown: Arc<Notify>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let reply = match parse(&line) {
            Ok(Command::Set(key, value)) => {
                let shard = client.shard_for_key(key.as_bytes());
                // Resolves once the record is durable; only then does the map change.
                match client.append_durable(shard, encode(key, value)).await {
                    Ok(lsn) => {
                        store.apply(shard, lsn, key, value);
                        "OK".to_string()
                    }
                    Err(e) => format!("ERR {e}"),
                }
            }
            Ok(Command::Get(key)) => match store.get(client.shard_for_key(key.as_bytes()), key) {
                Some(value) => format!("VALUE {value}"),
                None => "NOT_FOUND".to_string(),
            },
            Ok(Command::Quit) => break,
            Ok(Command::Shutdown) => {
                write.write_all(b"BYE\n").await?;
                shutdown.notify_one();
                break;
            }
            Err(e) => format!("ERR {e}"),
        };
        // One write per reply: a reply split over two small writes would wait for the
        // client's delayed ACK (Nagle's algorithm).
        write.write_all(format!("{reply}\n").as_bytes()).await?;
    }
    write.shutdown().await
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tmp = tempfile::tempdir()?;
    let dir = args
        .first()
        .map_or(tmp.path().into(), std::path::PathBuf::from);
    let addr = args.get(1).map_or("127.0.0.1:0", String::as_str);
    let mut config = WalConfig::builder(&dir);
    if let Some(shards) = args.get(2) {
        config = config.shard_count(shards.parse()?);
    }
    let config = config.build()?;

    let store = Arc::new(rebuild(&dir, config.shard_count())?);
    eprintln!(
        "{} keys rebuilt from {} shards in {}",
        store.key_count(),
        config.shard_count(),
        dir.display()
    );
    let wal = Wal::start(config)?;

    let rt = tokio::runtime::Runtime::new()?;
    let cut = rt.block_on(async {
        let listener = TcpListener::bind(addr).await?;
        use std::io::Write;
        println!("listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        // Stop on ctrl-c (or a SHUTDOWN command, handled by `serve`).
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        Ok::<_, BoxError>(serve(listener, wal.client(), store, stop).await?)
    })?;
    drop(wal); // closed already: this only lets its threads go
    println!("closed; final cut {:?}", lsns(&cut));
    Ok(())
}

/// A cut as plain numbers, one per shard.
fn lsns(cut: &Cut) -> Vec<u64> {
    cut.as_slice().iter().map(|l| l.get()).collect()
}
