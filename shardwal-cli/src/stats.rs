//! The measuring helpers, one copy for every benchmark of the workspace: latency
//! histograms and their percentiles, medians over rounds, the load average, the process's
//! CPU time and peak resident set size.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

/// A latency histogram in nanoseconds, 1 ns to 120 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage only writes into the zero-initialised struct we pass it, and
    // RUSAGE_SELF is always a valid target.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    }
}

/// User + system CPU time of the whole process, in seconds.
pub fn cpu_seconds() -> f64 {
    let usage = rusage();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident set size of the process, in MiB.
pub fn peak_rss_mib() -> f64 {
    rusage().ru_maxrss as f64 / 1024.0
}

/// The 1, 5 and 15 minute load averages, as the kernel prints them.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The value at `quantile` (0.0 ..= 1.0) of a nanosecond histogram, in microseconds.
pub fn quantile_us(latency_ns: &Histogram<u64>, quantile: f64) -> f64 {
    latency_ns.value_at_quantile(quantile) as f64 / 1e3
}

/// Samples a [`LatencySamples`] keeps before it folds them into the shared histogram: one
/// lock per 1,024 samples, and 8 KiB per writer however long the run (a histogram per writer
/// would take about 200 KiB each, a list of every sample 8 bytes per record).
pub const SAMPLES_PER_FOLD: usize = 1024;

/// One latency histogram (nanoseconds) filled by many writers, threads or tasks, each
/// through its own [`LatencySamples`].
#[derive(Clone)]
pub struct SharedHistogram(Arc<Mutex<Histogram<u64>>>);

impl SharedHistogram {
    /// An empty histogram ([`new_histogram`]'s bounds).
    pub fn new() -> SharedHistogram {
        SharedHistogram(Arc::new(Mutex::new(new_histogram())))
    }

    /// A writer's own buffer in front of this histogram.
    pub fn writer(&self) -> LatencySamples {
        LatencySamples {
            samples: Vec::with_capacity(SAMPLES_PER_FOLD),
            shared: self.clone(),
        }
    }

    /// The histogram of every sample folded so far (drop or [`LatencySamples::fold`] every
    /// writer first).
    pub fn snapshot(&self) -> Histogram<u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Default for SharedHistogram {
    fn default() -> Self {
        SharedHistogram::new()
    }
}

/// A writer's latency samples, folded into its [`SharedHistogram`] every
/// [`SAMPLES_PER_FOLD`] samples and when dropped.
pub struct LatencySamples {
    samples: Vec<u64>,
    shared: SharedHistogram,
}

impl LatencySamples {
    /// Records one latency in nanoseconds (0 counts as 1 ns, the histogram's floor).
    pub fn record(&mut self, latency_ns: u64) {
        self.samples.push(latency_ns.max(1));
        if self.samples.len() >= SAMPLES_PER_FOLD {
            self.fold();
        }
        debug_assert!(self.samples.len() < SAMPLES_PER_FOLD);
    }

    /// Moves every kept sample into the shared histogram.
    pub fn fold(&mut self) {
        let mut h = self.shared.0.lock().unwrap_or_else(|p| p.into_inner());
        for s in self.samples.drain(..) {
            h.saturating_record(s);
        }
    }
}

impl Drop for LatencySamples {
    fn drop(&mut self) {
        self.fold();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty_lists() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
    }

    #[test]
    fn quantiles_come_from_the_histogram_in_microseconds() {
        let mut h = new_histogram();
        for ns in 1..=1000u64 {
            h.record(ns * 1000).unwrap();
        }
        let p50 = quantile_us(&h, 0.5);
        let p99 = quantile_us(&h, 0.99);
        assert!((499.0..=501.0).contains(&p50), "{p50}");
        assert!((989.0..=991.0).contains(&p99), "{p99}");
    }

    #[test]
    fn every_writer_sample_reaches_the_shared_histogram() {
        let shared = SharedHistogram::new();
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let mut w = shared.writer();
                scope.spawn(move || {
                    for i in 0..(SAMPLES_PER_FOLD as u64 * 2 + 7) {
                        w.record(1000 * (t + 1) + i % 3);
                    }
                });
            }
        });
        let h = shared.snapshot();
        assert_eq!(h.len(), 4 * (SAMPLES_PER_FOLD as u64 * 2 + 7));
        assert_eq!(h.min(), 1000);
        assert!(h.max() >= 4002 && h.max() < 4010, "{}", h.max());
    }

    #[test]
    fn process_figures_are_plausible() {
        assert!(cpu_seconds() > 0.0);
        assert!(peak_rss_mib() > 1.0);
        let load = load_average();
        assert_eq!(load.split_whitespace().count(), 3, "{load}");
    }
}
