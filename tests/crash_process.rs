//! A real process crash: a child process writes to a real WAL and is killed with SIGKILL at
//! a random moment; the parent then checks that recovery keeps every acknowledged record.
//!
//! The test binary re-spawns itself as the child (`<test exe> --exact child_entry`, with
//! [`CHILD_ENV`] naming the log directory). The child opens the WAL (2 shards, unbound, a
//! small geometry so segments rotate often) and runs [`WRITERS`] concurrent writers per
//! shard; each loops over `append_durable` of a payload derived from
//! `(cycle, shard, writer, seq)` and, after each acknowledgement, writes one line
//! `ACK shard lsn cycle writer seq len hash` to stdout and flushes it (and `READY shard`
//! once a shard is open). The parent kills it at a random moment (seeded, see [`KillAt`]):
//! 1 in 6 within 5 ms of the spawn, 1 in 6 somewhere in its start-up (mostly recovery of the
//! previous crash), otherwise 20-300 ms into the writes. It keeps only complete lines, then
//! checks the directory:
//! * every acknowledged record is at its LSN with exactly its payload (no loss);
//! * LSNs run 1, 2, 3, ... and the log of the previous cycle is a prefix of this one;
//! * every record present is one the child (or the parent) really tried to write, with
//!   exactly that payload; per writer its sequence numbers run 0, 1, 2, ... with no gap or
//!   duplicate, at most one past its last acknowledgement (the one in flight at the kill).
//!
//! About every other cycle (and after the last) the parent also opens the log for writing:
//! recovery runs, a reader on the live shard sees the same records, appends continue at the
//! next LSN, segments more than ~2000 records old are truncated (so the log stays small and
//! truncated LSNs must stay gone), then a clean close. The next child then starts on a
//! cleanly closed log; otherwise it recovers straight from the crash. All cycles use the same
//! directory, so recovery runs over the leftovers of every earlier crash.
//!
//! **What this does not cover:** SIGKILL ends the process, not the machine. The page cache
//! and the device's cache survive, so data that was written but never fdatasynced is still
//! there when the parent looks. This test checks process-crash atomicity (writes in flight
//! in io_uring, a kill in the middle of a group commit, a segment rotation, a segment
//! preparation or recovery itself) and that recovery is repeatable; losing unsynced data
//! (power loss) is the deterministic simulator's job.
//!
//! `SHARDWAL_CRASH_CYCLES=<n>` sets the number of cycles (default 20);
//! `SHARDWAL_CRASH_SEED=<u64>` replays a schedule of delays (the seed is printed).
mod common;
use common::*;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shardwal::{Lsn, Shard, ShardId, WalConfig};
use xxhash_rust::xxh3::xxh3_64;

/// Set in the child's environment to the log directory; the child does nothing without it.
const CHILD_ENV: &str = "SHARDWAL_CRASH_CHILD";
/// The child's cycle number (it goes into every payload).
const CYCLE_ENV: &str = "SHARDWAL_CRASH_CHILD_CYCLE";
const SHARDS: u32 = 2;
/// Concurrent writers per shard in the child.
const WRITERS: u32 = 4;
/// The writer number of the records the parent appends when it reopens the log.
const PARENT_WRITER: u32 = 99;
/// Records the parent appends per shard when it reopens the log.
const PARENT_RECORDS: u32 = 5;
/// The child stops on its own after this long (a safety net; the parent kills it first).
const CHILD_MAX_RUN: Duration = Duration::from_secs(30);

fn config(dir: &Path) -> WalConfig {
    small(dir, SHARDS).build().unwrap()
}

/// Who wrote a record: `(cycle, shard, writer, seq)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RecId {
    cycle: u32,
    shard: u32,
    writer: u32,
    seq: u64,
}

/// The payload of record `id`: a readable tag, then bytes derived from it, 1 byte to 16 KiB
/// long (mostly short, some several blocks long, so batches and segments fill unevenly).
fn payload(id: RecId) -> Vec<u8> {
    let tag = format!("c{}s{}w{}q{}|", id.cycle, id.shard, id.writer, id.seq);
    let mut x = xxh3_64(tag.as_bytes());
    let extra = match x % 16 {
        0 => 4000 + (x >> 8) % 12000,
        1..=3 => 600 + (x >> 8) % 3400,
        _ => (x >> 8) % 600,
    } as usize;
    let mut v = Vec::with_capacity(tag.len() + extra);
    v.extend_from_slice(tag.as_bytes());
    while v.len() < tag.len() + extra {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let room = tag.len() + extra - v.len();
        v.extend_from_slice(&z.to_le_bytes()[..room.min(8)]);
    }
    v
}

/// The `RecId` a payload claims to be, if its tag parses and the whole payload is exactly
/// what [`payload`] makes for it.
fn identify(p: &[u8]) -> Option<RecId> {
    let end = p.iter().position(|&b| b == b'|')?;
    let tag = std::str::from_utf8(&p[..end]).ok()?;
    let rest = tag.strip_prefix('c')?;
    let (cycle, rest) = rest.split_once('s')?;
    let (shard, rest) = rest.split_once('w')?;
    let (writer, seq) = rest.split_once('q')?;
    let id = RecId {
        cycle: cycle.parse().ok()?,
        shard: shard.parse().ok()?,
        writer: writer.parse().ok()?,
        seq: seq.parse().ok()?,
    };
    (payload(id) == p).then_some(id)
}

// ---------------------------------------------------------------------------------------
// The child.

/// The child's body; returns at once unless [`CHILD_ENV`] is set (that is, in a normal
/// `cargo test` run).
#[test]
fn child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let cycle: u32 = std::env::var(CYCLE_ENV).unwrap().parse().unwrap();
    let cfg = config(Path::new(&dir));
    let handle = shardwal::spawn(cfg, move |shard| async move {
        // The shard is open (recovery done): tell the parent.
        say(&format!("READY {}\n", shard.id().0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| glommio::spawn_local(child_writer(shard.clone(), cycle, w)))
            .collect();
        for w in writers {
            w.await;
        }
    })
    .unwrap();
    handle.join().unwrap();
}

async fn child_writer(shard: Shard, cycle: u32, writer: u32) {
    let started = Instant::now();
    let mut seq = 0;
    while started.elapsed() < CHILD_MAX_RUN {
        let id = RecId {
            cycle,
            shard: shard.id().0,
            writer,
            seq,
        };
        let p = payload(id);
        let lsn = match shard.append_durable(&p).await {
            Ok(lsn) => lsn,
            Err(e) => {
                eprintln!("child: append_durable of {id:?} failed: {e}");
                std::process::exit(3);
            }
        };
        let line = format!(
            "ACK {} {} {} {} {} {} {:016x}\n",
            id.shard,
            lsn.0,
            id.cycle,
            id.writer,
            id.seq,
            p.len(),
            xxh3_64(&p)
        );
        say(&line);
        seq += 1;
    }
}

/// Writes one line to stdout at once and flushes it. (One write of a short line to a pipe is
/// atomic; the lock keeps lines from different shards whole anyway.)
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if out
        .write_all(line.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(4); // the parent is gone
    }
}

// ---------------------------------------------------------------------------------------
// The parent.

/// Kills and reaps the child if the parent panics before it does.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An acknowledgement the child reported.
#[derive(Clone, Debug)]
struct Ack {
    lsn: u64,
    id: RecId,
    len: usize,
    hash: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    // libtest may print its own text ("test child_entry ... ") before the first line.
    let line = &line[line.find("ACK ")?..];
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 8 {
        return None;
    }
    Some(Ack {
        lsn: f[2].parse().ok()?,
        id: RecId {
            shard: f[1].parse().ok()?,
            cycle: f[3].parse().ok()?,
            writer: f[4].parse().ok()?,
            seq: f[5].parse().ok()?,
        },
        len: f[6].parse().ok()?,
        hash: u64::from_str_radix(f[7], 16).ok()?,
    })
}

/// When the parent kills a child.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after starting it: in its process start-up, or opening the log.
    Start(Duration),
    /// This fraction of the way through the last child's start-up (from spawn until both
    /// shards were open): mostly in recovery.
    Startup(f64),
    /// This long after both shards reported they were open: in the middle of the writes.
    Writing(Duration),
}

/// How long the parent waits for a child to open its shards before it calls it a hang.
const STARTUP_HANG: Duration = Duration::from_secs(120);

/// What one child did before it was killed.
struct ChildRun {
    /// Acknowledgements reported on complete lines.
    acks: Vec<Ack>,
    /// Acknowledgement lines the kill cut short.
    partial: usize,
    /// From spawn until both shards reported open, if they did before the kill.
    startup: Option<Duration>,
}

/// Runs one child, kills it with SIGKILL as `kill_at` says, and returns what it reported.
fn run_child(dir: &Path, cycle: u32, kill_at: KillAt, last_startup: Duration) -> ChildRun {
    let exe = std::env::current_exe().unwrap();
    let spawned = Instant::now();
    let child = Command::new(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(CYCLE_ENV, cycle.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child");
    let mut guard = ChildGuard(Some(child));
    let child = guard.0.as_mut().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Instant>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut acks = Vec::new();
        let mut partial = 0;
        let mut ready = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) if line.ends_with(b"\n") => {
                    let text = String::from_utf8_lossy(&line);
                    if let Some(a) = parse_ack(&text) {
                        acks.push(a);
                    } else if text.contains("READY ") {
                        ready += 1;
                        if ready == SHARDS {
                            let _ = ready_tx.send(Instant::now());
                        }
                    }
                }
                // Cut by the kill: not acknowledged. (libtest's own "test child_entry ... "
                // never gets its newline either; it is not counted.)
                Ok(_) if line.windows(4).any(|w| w == b"ACK ") => partial += 1,
                Ok(_) => {}
                Err(e) => panic!("reading the child's stdout: {e}"),
            }
        }
        (acks, partial)
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut startup = None;
    match kill_at {
        KillAt::Start(d) => std::thread::sleep(d),
        KillAt::Startup(f) => std::thread::sleep(last_startup.mul_f64(f)),
        KillAt::Writing(d) => {
            // Only a hang detector: a child that opens its shards at all is waited for.
            let at = ready_rx.recv_timeout(STARTUP_HANG);
            let ended = child.try_wait().unwrap();
            assert!(
                at.is_ok() || ended.is_some(),
                "cycle {cycle}: the child did not open its shards in {STARTUP_HANG:?} (recovery hung?)"
            );
            if let Ok(at) = at {
                startup = Some(at - spawned);
                std::thread::sleep(d);
            }
        }
    }
    let early_exit = child.try_wait().unwrap();
    // SIGKILL (std's Child::kill sends SIGKILL on Unix).
    let _ = child.kill();
    let status = child.wait().unwrap();
    guard.0 = None;
    let (acks, partial) = reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(
        early_exit.is_none() && status.signal() == Some(libc::SIGKILL),
        "cycle {cycle}: the child ended on its own ({status:?}) before the kill; stderr:\n{err}"
    );
    ChildRun {
        acks,
        partial,
        startup,
    }
}

/// Totals over all cycles.
#[derive(Default, Debug)]
struct Totals {
    acked: u64,
    verified: u64,
    losses: u64,
    wrong: u64,
    unacked_present: u64,
    partial_lines: u64,
    parent_reopens: u64,
    early_kills: u64,
    /// Kills by [`KillAt`] kind: at start, during start-up, while writing.
    kills: [u64; 3],
}

/// What one shard's log must hold: `recs[i]` is at LSN `base + i`. Truncation by the parent
/// moves `base` up.
#[derive(Clone, Debug)]
struct ShardLog {
    base: u64,
    recs: Vec<(Lsn, Vec<u8>)>,
}

impl ShardLog {
    fn end(&self) -> u64 {
        self.base + self.recs.len() as u64
    }
    fn get(&self, lsn: u64) -> Option<&Vec<u8>> {
        let i = lsn.checked_sub(self.base)?;
        self.recs.get(i as usize).map(|(_, p)| p)
    }
}

/// Reads shard `shard` of the closed log from `base`; the records below it must be gone.
fn read_shard_log(dir: &Path, shard: u32, base: u64) -> Result<ShardLog, String> {
    if base > 1 {
        match shardwal::LogReader::open(dir, ShardId(shard), Lsn(base - 1)) {
            Err(shardwal::Error::Truncated {
                first_available, ..
            }) if first_available == Lsn(base) => {}
            Err(e) => return Err(format!("reading below the truncation point: {e}")),
            Ok(_) => return Err(format!("lsn {} is readable after truncation", base - 1)),
        }
    }
    let reader = shardwal::LogReader::open(dir, ShardId(shard), Lsn(base))
        .map_err(|e| format!("opening a reader: {e}"))?;
    let mut log = ShardLog {
        base,
        recs: Vec::new(),
    };
    for r in reader {
        let r = r.map_err(|e| format!("reading: {e}"))?;
        if r.lsn != Lsn(log.end()) {
            return Err(format!(
                "LSNs not contiguous: {} where {} was due",
                r.lsn,
                log.end()
            ));
        }
        log.recs.push((r.lsn, r.payload.to_vec()));
    }
    Ok(log)
}

/// Checks one shard's log after the kill of cycle `cycle` against the log seen after the
/// previous cycle (`prev`, which must be a prefix) and the child's acknowledgements.
/// Returns the log now on disk; problems go to `problems` and the counters to `t`.
fn verify_shard(
    dir: &Path,
    shard: u32,
    cycle: u32,
    prev: &ShardLog,
    acks: &[&Ack],
    t: &mut Totals,
    problems: &mut Vec<String>,
) -> ShardLog {
    let log = match read_shard_log(dir, shard, prev.base) {
        Ok(log) => log,
        Err(e) => {
            problems.push(format!("shard {shard}: {e}"));
            t.losses += acks.len() as u64;
            return prev.clone();
        }
    };
    // What earlier cycles left must still be there, unchanged.
    for (lsn, p) in &prev.recs {
        match log.get(lsn.0) {
            Some(q) if q == p => {}
            Some(_) => {
                problems.push(format!(
                    "shard {shard}: lsn {lsn} from an earlier cycle changed"
                ));
                t.losses += 1;
            }
            None => {
                problems.push(format!(
                    "shard {shard}: lsn {lsn} from an earlier cycle is gone (log ends before {})",
                    log.end()
                ));
                t.losses += 1;
            }
        }
    }
    // Every new record: written by this cycle's child, exactly as derived, in per-writer
    // order without gaps or duplicates.
    let mut next_seq: BTreeMap<u32, u64> = BTreeMap::new();
    for (lsn, p) in log.recs.iter().skip(prev.recs.len()) {
        let Some(id) = identify(p) else {
            problems.push(format!(
                "shard {shard}: lsn {lsn} holds a payload nobody wrote ({} bytes, starts {:?})",
                p.len(),
                String::from_utf8_lossy(&p[..p.len().min(40)])
            ));
            t.wrong += 1;
            continue;
        };
        if id.cycle != cycle || id.shard != shard || id.writer >= WRITERS {
            problems.push(format!(
                "shard {shard}: lsn {lsn} holds {id:?}, which this cycle's child did not write here"
            ));
            t.wrong += 1;
            continue;
        }
        let want = next_seq.entry(id.writer).or_insert(0);
        if id.seq != *want {
            problems.push(format!(
                "shard {shard}: lsn {lsn} holds {id:?}, but seq {} of that writer was expected",
                *want
            ));
            t.wrong += 1;
        }
        *want = id.seq + 1;
    }
    // Every acknowledgement: at its LSN, exactly.
    let mut last_acked: BTreeMap<u32, u64> = BTreeMap::new();
    for a in acks {
        let expected = payload(a.id);
        if expected.len() != a.len || xxh3_64(&expected) != a.hash {
            problems.push(format!(
                "shard {shard}: the child reported {a:?}, which does not match the payload it derives"
            ));
            t.wrong += 1;
        }
        let e = last_acked.entry(a.id.writer).or_insert(0);
        *e = (*e).max(a.id.seq + 1);
        match log.get(a.lsn) {
            Some(p) if a.lsn >= prev.end() && *p == expected => t.verified += 1,
            Some(_) => {
                problems.push(format!(
                    "shard {shard}: acknowledged lsn {} ({:?}) holds something else",
                    a.lsn, a.id
                ));
                t.losses += 1;
            }
            None => {
                problems.push(format!(
                    "shard {shard}: acknowledged lsn {} ({:?}) is lost (log ends before {})",
                    a.lsn,
                    a.id,
                    log.end()
                ));
                t.losses += 1;
            }
        }
    }
    for (w, present) in &next_seq {
        let acked = last_acked.get(w).copied().unwrap_or(0);
        if *present > acked + 1 {
            problems.push(format!(
                "shard {shard}: writer {w} has seqs up to {} present but only {} acknowledged",
                present - 1,
                acked
            ));
            t.wrong += 1;
        }
        t.unacked_present += present.saturating_sub(acked);
    }
    log
}

/// Records per shard the parent keeps when it truncates (whole segments below go).
const KEEP_RECORDS: u64 = 2000;

/// Opens the log for writing in this process: recovery runs, a reader on the live shard must
/// see exactly `logs`, [`PARENT_RECORDS`] durable appends per shard continue at the next
/// LSNs, old segments are truncated so the log stays small, then a clean close. Updates
/// `logs` to match.
fn reopen_and_append(dir: &Path, cycle: u32, logs: &mut [ShardLog]) -> usize {
    let bases: Vec<u64> = logs.iter().map(|l| l.base).collect();
    let handle = shardwal::spawn(config(dir), move |shard| {
        let base = bases[shard.id().index()];
        async move {
            let seen: Vec<(Lsn, Vec<u8>)> = shard
                .reader(Lsn(base))
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    (r.lsn, r.payload.to_vec())
                })
                .collect();
            let first_before = shard.first_lsn();
            let mut appended = Vec::new();
            for seq in 0..PARENT_RECORDS as u64 {
                let p = payload(RecId {
                    cycle,
                    shard: shard.id().0,
                    writer: PARENT_WRITER,
                    seq,
                });
                let lsn = shard.append_durable(&p).await.expect("parent append");
                appended.push((lsn, p));
            }
            let durable = shard.durable_lsn().0;
            let mut removed = 0;
            if durable > KEEP_RECORDS {
                removed = shard
                    .truncate_before(Lsn(durable - KEEP_RECORDS))
                    .await
                    .expect("truncate");
            }
            (first_before, seen, appended, shard.first_lsn(), removed)
        }
    })
    .unwrap();
    let outs = handle.join().expect("parent reopen and close");
    let mut removed_total = 0;
    for (s, (first_before, seen, appended, first_after, removed)) in outs.into_iter().enumerate() {
        let log = &mut logs[s];
        assert_eq!(
            first_before,
            Lsn(log.base),
            "cycle {cycle} shard {s}: first LSN after recovery"
        );
        assert!(
            seen == log.recs,
            "cycle {cycle} shard {s}: the reopened shard sees {} records, the reader saw {}",
            seen.len(),
            log.recs.len()
        );
        for (k, (lsn, _)) in appended.iter().enumerate() {
            assert_eq!(
                *lsn,
                Lsn(log.end() + k as u64),
                "cycle {cycle} shard {s}: appends after recovery continue at the next LSN"
            );
        }
        log.recs.extend(appended);
        let cut = (first_after.0 - log.base) as usize;
        log.recs.drain(..cut);
        log.base = first_after.0;
        removed_total += removed;
        let back = read_shard_log(dir, s as u32, log.base)
            .unwrap_or_else(|e| panic!("cycle {cycle} shard {s}: after a clean close: {e}"));
        assert!(
            back.recs == log.recs,
            "cycle {cycle} shard {s}: after a clean close the log differs"
        );
    }
    removed_total
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let cycles: u32 = std::env::var("SHARDWAL_CRASH_CYCLES")
        .ok()
        .map(|v| v.parse().expect("SHARDWAL_CRASH_CYCLES must be a number"))
        .unwrap_or(20);
    let seed: u64 = std::env::var("SHARDWAL_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("SHARDWAL_CRASH_SEED must be a u64"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!(
        "crash_process: seed {seed} (SHARDWAL_CRASH_SEED={seed} replays the delays), {cycles} cycles"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut logs = vec![
        ShardLog {
            base: 1,
            recs: Vec::new()
        };
        SHARDS as usize
    ];
    let mut t = Totals::default();
    let mut problems = Vec::new();
    let mut cycles_run = 0;
    let mut truncated_segments = 0;
    // The child's start-up time (spawn to both shards open), as last measured.
    let mut last_startup = Duration::from_millis(30);
    let mut startups = Vec::new();
    for cycle in 0..cycles {
        let kill_at = match rng.random_range(0..6) {
            0 => KillAt::Start(Duration::from_millis(rng.random_range(0..=5))),
            1 => KillAt::Startup(rng.random_range(0.0..1.0)),
            _ => KillAt::Writing(Duration::from_millis(rng.random_range(20..=300))),
        };
        t.kills[match kill_at {
            KillAt::Start(_) => 0,
            KillAt::Startup(_) => 1,
            KillAt::Writing(_) => 2,
        }] += 1;
        let run = run_child(&dir, cycle, kill_at, last_startup);
        let acks = run.acks;
        cycles_run += 1;
        t.acked += acks.len() as u64;
        t.partial_lines += run.partial as u64;
        if acks.is_empty() {
            t.early_kills += 1;
        }
        if let Some(d) = run.startup {
            last_startup = d;
            startups.push(d);
        }
        for s in 0..SHARDS {
            let mine: Vec<&Ack> = acks.iter().filter(|a| a.id.shard == s).collect();
            let before = problems.len();
            let log = verify_shard(
                &dir,
                s,
                cycle,
                &logs[s as usize],
                &mine,
                &mut t,
                &mut problems,
            );
            if problems.len() > before {
                problems.insert(before, format!("cycle {cycle} (killed at {kill_at:?}):"));
            }
            logs[s as usize] = log;
        }
        if !problems.is_empty() {
            break; // later cycles would only repeat the damage
        }
        // Every other cycle (and always the last) the parent reopens the log for writing.
        if cycle + 1 == cycles || rng.random_bool(0.5) {
            truncated_segments += reopen_and_append(&dir, cycle, &mut logs);
            t.parent_reopens += 1;
        }
    }
    let records: u64 = logs.iter().map(|l| l.end() - 1).sum();
    println!(
        "crash_process summary: cycles {cycles_run}, records acknowledged {}, records verified {}, \
         losses {}, wrong records {} | LSNs handed out {records}, present but unacknowledged {}, \
         cut lines {}, kills at start/in start-up/while writing {:?}, kills before any ack {}, \
         parent reopens {}, segments truncated {truncated_segments}",
        t.acked,
        t.verified,
        t.losses,
        t.wrong,
        t.unacked_present,
        t.partial_lines,
        t.kills,
        t.early_kills,
        t.parent_reopens
    );
    startups.sort();
    if let (Some(min), Some(max)) = (startups.first(), startups.last()) {
        println!(
            "crash_process: child start-up (spawn to shards open, recovery included): min {min:?}, median {:?}, max {max:?}",
            startups[startups.len() / 2]
        );
    }
    assert!(
        problems.is_empty(),
        "seed {seed}: {} problems; the first ones:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
    assert_eq!(t.losses, 0);
    assert_eq!(t.wrong, 0);
    assert_eq!(t.verified, t.acked);
}
