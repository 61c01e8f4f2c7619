//! `shardwal inspect <dir>`: the owner, every shard's published position, the current cut,
//! the reader pins and the segment files of a log directory, read without changing anything
//! (safe while a writer runs).

use std::path::Path;

use shardwal::shm::{inspect, Inspection};

use crate::AnyResult;

/// Prints what [`inspect`] finds in `dir`, for a person or (`json`) as one JSON object.
pub fn run(dir: &Path, json: bool) -> AnyResult<()> {
    if !dir.is_dir() {
        return Err(format!("{}: not a directory", dir.display()).into());
    }
    let report = inspect(dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn when(unix_us: u64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_micros(unix_us),
    )
    .to_string()
}

fn render(r: &Inspection) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "log directory {}", r.dir.display());
    match &r.header_problem {
        Some(p) => {
            let _ = writeln!(s, "header: unusable ({p})");
        }
        None => {
            let owner = match &r.owner {
                Some(o) => format!(
                    "pid {} ({}), writer since {}",
                    o.pid,
                    if o.alive { "running" } else { "gone" },
                    when(o.since_unix_us)
                ),
                None => "none (no writer has the log open)".into(),
            };
            let _ = writeln!(s, "owner: {owner}");
            let _ = writeln!(
                s,
                "header generation {}, {} shard(s)",
                r.generation.unwrap_or(0),
                r.shards.len()
            );
            let _ = writeln!(
                s,
                "{:>5}  {:<6}  {:>12}  {:>12}  {:>12}  {:>10}  {:>14}",
                "shard",
                "state",
                "durable_lsn",
                "first_lsn",
                "floor_lsn",
                "publishes",
                "active_segment"
            );
            for (i, p) in r.shards.iter().enumerate() {
                let state = format!("{:?}", p.state).to_lowercase();
                let _ = writeln!(
                    s,
                    "{i:>5}  {state:<6}  {:>12}  {:>12}  {:>12}  {:>10}  {:>14}",
                    p.durable_lsn,
                    p.first_lsn,
                    p.truncation_floor_lsn,
                    p.publishes,
                    p.active_segment_generation
                );
            }
            let cut: Vec<String> = r.cut.iter().map(|l| l.to_string()).collect();
            let _ = writeln!(s, "cut: [{}]", cut.join(", "));
            if r.pins.is_empty() {
                let _ = writeln!(s, "pins: none");
            }
            for p in &r.pins {
                let lsns: Vec<String> = p.lowest_lsns.iter().map(|l| l.to_string()).collect();
                let _ = writeln!(
                    s,
                    "pin slot {}: pid {} ({}), since {}, keeps lsns from [{}]",
                    p.slot,
                    p.pid,
                    if p.alive {
                        "running"
                    } else {
                        "gone; reaped at the next truncation"
                    },
                    when(p.since_unix_us),
                    lsns.join(", ")
                );
            }
        }
    }
    let _ = writeln!(s, "segments:");
    if r.segments.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for g in &r.segments {
        let range = match (g.base_lsn, g.last_lsn) {
            (Some(b), Some(l)) => format!("lsn {b} ..= {l}"),
            (Some(b), None) => format!("lsn {b} .. (active)"),
            _ => "not written yet".into(),
        };
        let _ = writeln!(
            s,
            "  shard {} generation {:>6}: {range}, {:.1} MiB",
            g.shard,
            g.generation,
            g.file_bytes as f64 / (1 << 20) as f64
        );
    }
    s
}
