//! Exhaustive single-bit corruption: every bit of the used part of every segment of a small
//! real log is flipped, one at a time, and the log is read back through the public path
//! ([`LogReader::open`], which runs [`shardwal::recovery::scan_shard`], then every record).
//!
//! Whatever the flip, no record may ever come back with a payload or LSN other than what was
//! written. With a clean close (the final marker vouches for every record) a flip is either
//! reported as an error or leaves the whole log intact; after a crash (the last group commit
//! is not vouched for) it may also cut the log, but only to a correct prefix that keeps every
//! vouched-for record.
mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use shardwal::format::BLOCK_BYTES;
use shardwal::format::{scan_segment_bytes, SegmentEnd};
use shardwal::{Error, LogReader, Lsn, Shard, ShardId, WalConfig};

/// Bytes of a segment header block that hold fields (the rest of the block is zero and
/// never read).
const HEADER_FIELD_BYTES: usize = 64;

/// Group commits, in order: each group is appended, then committed as one write. With 12 KiB
/// segments (a header block and two data blocks) groups 1 and 2 fill the first segment, group
/// 3 opens the second, and a clean close puts its final marker in the second's last block.
fn groups() -> Vec<Vec<Vec<u8>>> {
    let sizes: [&[usize]; 3] = [&[1, 300, 2000], &[3000, 8], &[17, 900, 64]];
    let mut seq = 0u64;
    sizes
        .iter()
        .map(|g| {
            g.iter()
                .map(|&len| {
                    seq += 1;
                    let mut p = payload(0, seq);
                    p.resize(len, seq as u8);
                    p
                })
                .collect()
        })
        .collect()
}

fn config(dir: &Path) -> WalConfig {
    small(dir, 1)
        .flush_buffer_bytes(8 << 10)
        .flush_buffer_count(2)
        .segment_bytes(12 << 10)
        .max_record_bytes(4032)
        .build()
        .unwrap()
}

/// Writes the log; returns every payload in LSN order.
fn write_log(cfg: &WalConfig, clean_close: bool) -> Vec<Vec<u8>> {
    let groups = groups();
    run(cfg, || async {
        let s = Shard::open(cfg, ShardId(0)).await.unwrap();
        for g in &groups {
            let mut last = Lsn(0);
            for p in g {
                last = s.append(p).await.unwrap();
            }
            s.commit(last).await.unwrap();
        }
        if clean_close {
            s.close().await.unwrap();
        } else {
            crash(s);
        }
    });
    groups.into_iter().flatten().collect()
}

/// One segment under test: its file (kept open for single-byte writes), its pristine bytes
/// and which byte offsets to flip.
struct Target {
    path: PathBuf,
    file: File,
    pristine: Vec<u8>,
    /// Byte ranges whose every bit is flipped.
    sweep: Vec<std::ops::Range<usize>>,
    /// Byte ranges covered by a record's checksum (its header and payload).
    record_bytes: Vec<std::ops::Range<usize>>,
}

fn targets(dir: &Path) -> Vec<Target> {
    used_seg_files(dir, 0)
        .into_iter()
        .map(|path| {
            let pristine = std::fs::read(&path).unwrap();
            let frames = frames(&path);
            let used_end = frames
                .iter()
                .map(|f| match *f {
                    FrameAt::Marker { offset, .. } => offset + 24,
                    FrameAt::Record { end, .. } => end,
                })
                .max()
                .unwrap();
            let record_bytes = frames
                .iter()
                .filter_map(|f| match *f {
                    FrameAt::Record { offset, len, .. } => Some(offset..offset + 24 + len),
                    FrameAt::Marker { .. } => None,
                })
                .collect();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            Target {
                path,
                file,
                pristine,
                // The header fields, then every byte from the first write to the end of the
                // last frame: frames, markers and the zero padding between writes.
                sweep: vec![0..HEADER_FIELD_BYTES, BLOCK_BYTES..used_end],
                record_bytes,
            }
        })
        .collect()
}

/// What reading the whole log gave after one flip.
enum Outcome {
    /// An error (from opening or while iterating), named by kind.
    Error(&'static str),
    /// Records came back (after checking every one of them).
    Records(usize),
}

/// Reads everything through the public path, checking each record against `expected`;
/// returns the outcome and how many records were wrong.
fn read_back(dir: &Path, expected: &[Vec<u8>]) -> (Outcome, usize, Option<String>) {
    let kind = |e: &Error| match e {
        Error::Corruption { .. } => "corruption",
        Error::ForeignFile { .. } => "foreign file",
        Error::NewerFormat { .. } => "newer format",
        Error::Io { .. } => "io",
        _ => "other",
    };
    let reader = match LogReader::open(dir, ShardId(0), Lsn(1)) {
        Ok(r) => r,
        Err(e) => return (Outcome::Error(kind(&e)), 0, None),
    };
    let mut n = 0;
    let mut wrong = 0;
    let mut first_wrong = None;
    for r in reader {
        match r {
            Ok(rec) => {
                let ok = rec.lsn == Lsn(n as u64 + 1)
                    && expected.get(n).is_some_and(|p| rec.payload == p[..]);
                if !ok {
                    wrong += 1;
                    first_wrong.get_or_insert_with(|| {
                        format!(
                            "record #{n} came back as lsn {} with {} bytes",
                            rec.lsn,
                            rec.payload.len()
                        )
                    });
                }
                n += 1;
            }
            Err(e) => return (Outcome::Error(kind(&e)), wrong, first_wrong),
        }
    }
    (Outcome::Records(n), wrong, first_wrong)
}

#[derive(Default, Debug)]
struct Counts {
    flips: usize,
    errors: BTreeMap<&'static str, usize>,
    intact: usize,
    truncated: usize,
    shortest: Option<usize>,
    wrong_records: usize,
}

impl Counts {
    fn errors(&self) -> usize {
        self.errors.values().sum()
    }
}

/// Flips every bit of every target, one at a time, and reads the log back after each flip.
fn sweep(clean_close: bool) {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path());
    let expected = write_log(&cfg, clean_close);
    let n = expected.len();
    assert_log_eq(&read_all(d.path(), 0), &expected, "pristine");
    let targets = targets(d.path());
    assert_eq!(targets.len(), 2, "the log spans two segments");

    // Records vouched for by some marker: after a crash, those must survive any flip that
    // does not produce an error.
    let vouched = targets
        .iter()
        .map(|t| scan_segment_bytes(&t.pristine).unwrap().vouched_lsn.0 as usize)
        .max()
        .unwrap();
    if clean_close {
        assert_eq!(vouched, n, "the final marker vouches for everything");
    } else {
        assert!(
            vouched > 0 && vouched < n,
            "the last group commit is unvouched"
        );
    }

    let start = Instant::now();
    let mut c = Counts::default();
    let mut problems: Vec<String> = Vec::new();
    for t in &targets {
        for range in &t.sweep {
            for offset in range.clone() {
                let original = t.pristine[offset];
                for bit in 0..8 {
                    t.file
                        .write_at(&[original ^ (1 << bit)], offset as u64)
                        .unwrap();
                    let (outcome, wrong, first_wrong) = read_back(d.path(), &expected);
                    c.flips += 1;
                    c.wrong_records += wrong;
                    let at = || format!("{} offset {offset} bit {bit}", t.path.display());
                    if let Some(w) = first_wrong {
                        problems.push(format!("{}: wrong record: {w}", at()));
                    }
                    let in_record = t.record_bytes.iter().any(|r| r.contains(&offset));
                    let in_header = offset < HEADER_FIELD_BYTES;
                    match outcome {
                        Outcome::Error(kind) => *c.errors.entry(kind).or_default() += 1,
                        Outcome::Records(got) if got == n => {
                            c.intact += 1;
                            // A flip in bytes that are read and verified cannot go unnoticed.
                            if in_record || in_header {
                                problems.push(format!("{}: flip in checked bytes unnoticed", at()));
                            }
                        }
                        Outcome::Records(got) => {
                            c.truncated += 1;
                            c.shortest = Some(c.shortest.map_or(got, |s: usize| s.min(got)));
                            if clean_close {
                                problems.push(format!(
                                    "{}: vouched log silently cut to {got} of {n} records",
                                    at()
                                ));
                            } else if got < vouched {
                                problems.push(format!(
                                    "{}: cut to {got} records, below the vouched lsn {vouched}",
                                    at()
                                ));
                            }
                        }
                    }
                    t.file.write_at(&[original], offset as u64).unwrap();
                }
            }
        }
        assert_eq!(std::fs::read(&t.path).unwrap(), t.pristine, "restored");
    }
    let variant = if clean_close { "clean close" } else { "crash" };
    eprintln!(
        "corruption sweep ({variant}, {n} records, {} segments): {} flips, {} errors {:?}, {} intact, {} truncated (shortest {:?}), {} wrong records, {:.1?}",
        targets.len(),
        c.flips,
        c.errors(),
        c.errors,
        c.intact,
        c.truncated,
        c.shortest,
        c.wrong_records,
        start.elapsed()
    );
    assert_eq!(c.wrong_records, 0, "no wrong record, ever: {problems:#?}");
    assert!(
        problems.is_empty(),
        "{} problems: {problems:#?}",
        problems.len()
    );
    assert!(c.errors() > 0 && c.intact > 0);
    if clean_close {
        assert_eq!(c.truncated, 0);
    } else {
        assert!(c.truncated > 0, "damage to the unvouched tail cuts it");
    }
    // The pristine log still reads in full.
    assert_log_eq(&read_all(d.path(), 0), &expected, "after the sweep");
    let last = scan_segment_bytes(&targets[1].pristine).unwrap();
    if clean_close {
        assert!(matches!(
            last.end,
            SegmentEnd::Full | SegmentEnd::Clean { .. }
        ));
    }
}

#[test]
fn every_bit_flip_after_a_clean_close_is_reported_or_harmless() {
    sweep(true);
}

#[test]
fn every_bit_flip_after_a_crash_leaves_a_correct_prefix() {
    sweep(false);
}
