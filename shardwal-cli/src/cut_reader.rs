//! The second process of `shardwal bench --cut-reader`: it maps the log's shared header and
//! takes consistent cuts in a loop while the benchmark's writer runs, then reports how many
//! it took. Started by the benchmark itself (`shardwal cut-reader DIR --seconds S`).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardwal::HeaderView;

use crate::AnyResult;

/// What one cut-reader process measured.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct CutReport {
    /// Cuts taken.
    pub cuts: u64,
    /// Seconds spent taking them.
    pub seconds: f64,
    /// Cuts in which some shard was behind the previous cut (must be 0).
    pub went_back: u64,
}

/// Runs in the child: waits up to 10 s for the header to exist, then takes cuts for
/// `seconds` and prints one JSON [`CutReport`] line.
pub fn run(dir: &Path, seconds: f64) -> AnyResult<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let view = loop {
        match HeaderView::open(dir) {
            Ok(v) => break v,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e.into()),
        }
    };
    println!("ready");
    let mut last = vec![0u64; view.shard_count() as usize];
    let mut report = CutReport {
        cuts: 0,
        seconds: 0.0,
        went_back: 0,
    };
    let start = Instant::now();
    // The clock is read once every 1024 cuts.
    while !report.cuts.is_multiple_of(1024) || start.elapsed().as_secs_f64() < seconds {
        let cut = view.cut()?;
        for (l, c) in last.iter_mut().zip(cut.as_slice()) {
            if c.0 < *l {
                report.went_back += 1;
            }
            *l = c.0;
        }
        report.cuts += 1;
    }
    report.seconds = start.elapsed().as_secs_f64();
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// A running cut-reader child.
pub struct CutReader {
    child: Child,
    out: std::io::BufReader<ChildStdout>,
}

impl CutReader {
    /// Starts `shardwal cut-reader dir --seconds seconds` and waits until it has the header
    /// mapped.
    pub fn start(dir: &Path, seconds: f64) -> AnyResult<CutReader> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("cut-reader")
            .arg(dir)
            .args(["--seconds", &seconds.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut out = std::io::BufReader::new(child.stdout.take().ok_or("no child stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err(format!("cut-reader did not start: {line:?}").into());
        }
        Ok(CutReader { child, out })
    }

    /// Waits for the child's report.
    pub fn finish(mut self) -> AnyResult<CutReport> {
        let mut line = String::new();
        self.out.read_line(&mut line)?;
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("cut-reader failed ({status})").into());
        }
        let report: CutReport = serde_json::from_str(line.trim())?;
        if report.went_back > 0 {
            return Err(format!("cut-reader saw cuts go back: {report:?}").into());
        }
        Ok(report)
    }
}
