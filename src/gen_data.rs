//! `gen-data`: deterministic sample data in exactly the shape of the plant's files.
//!
//! * `metrics.json`: `{"id": 0..=19, "val": float, "time": unix seconds}`, at irregular
//!   intervals spread over the work orders' span ([`metric_mean_gap_secs`]), shuffled within
//!   blocks so the file is **not** in time order, as the plant's is not. Times strictly increase before shuffling, so every record is
//!   unique.
//! * `workorder.json`: `{"time", "product": 0..=1, "production": float}`, one record per product
//!   every [`WORKORDER_PERIOD_SECS`] (± a little jitter); `production` is the product's cumulative
//!   output, mostly rising, with small noise.
//!
//! **Planted truth** for later analysis: each product `p` has a production *rate*
//! `rate_p(t) = BASE_RATE[p] · (1 + ½·sin(2π·(t − START)/PERIOD[p] + PHASE[p]))` units per second,
//! and `production` is its integral. Three metric ids follow each product's rate, as
//! `val = GAIN[j] · rate_p(t) + OFFSET[j] + noise` (noise sd [`PLANTED_NOISE`] of the signal's
//! scale):
//!
//! | product | metric ids | rate period |
//! |---------|------------|-------------|
//! | 0       | 2, 7, 11   | 3 days      |
//! | 1       | 4, 13, 17  | 5 days      |
//!
//! Every other id is an unrelated sine (period under 2 days) plus noise. `factorypal report`
//! on this data should name exactly the planted ids as each product's top three, all
//! significant; with each id's values shuffled across time, nothing (tests/report.rs). The
//! same seed always writes the same
//! bytes: the generator is our own SplitMix64, so no dependency upgrade can change the data.

use std::f64::consts::TAU;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

pub const DEFAULT_METRICS: u64 = 7_000;
pub const DEFAULT_WORKORDERS: u64 = 576;
/// 2026-01-01T00:00:00Z: where every generated time series starts.
pub const START: i64 = 1_767_225_600;
/// 576 workorder records, 2 products, every 5,000 s: 1,440,000 s, about 16.7 days.
pub const WORKORDER_PERIOD_SECS: i64 = 5_000;
/// The default 7,000 metrics spread over the same 16.7 days as the default workorders.
pub const METRIC_MEAN_GAP_SECS: f64 = 1_440_000.0 / 7_000.0;

/// The mean gap between metrics that spreads `metrics` over the span of `workorders` (so
/// every interval has samples whatever the counts; the defaults give [`METRIC_MEAN_GAP_SECS`]).
pub fn metric_mean_gap_secs(metrics: u64, workorders: u64) -> f64 {
    let span = workorders.div_ceil(2).max(1) as f64 * WORKORDER_PERIOD_SECS as f64;
    (span / metrics.max(1) as f64).max(1.0)
}
/// Metrics are shuffled within blocks this long; whole-file shuffling would need the whole
/// file in memory, and a 1 GB file must stream to disk.
const SHUFFLE_BLOCK: usize = 1_000;

/// Metric ids that follow product 0's and product 1's production rate.
pub const PLANTED: [[u32; 3]; 2] = [[2, 7, 11], [4, 13, 17]];
const BASE_RATE: [f64; 2] = [0.8, 1.3];
const PERIOD: [f64; 2] = [3.0 * 86_400.0, 5.0 * 86_400.0];
const PHASE: [f64; 2] = [0.4, 2.1];
const GAIN: [f64; 3] = [37.5, 112.25, 8.125];
const OFFSET: [f64; 3] = [12.0, -40.5, 301.75];
/// Noise standard deviation relative to the planted signal's scale.
pub const PLANTED_NOISE: f64 = 0.05;
/// Noise on cumulative production, in units: small next to one period's output (~4,000).
const PRODUCTION_NOISE: f64 = 20.0;

/// The production rate of `product` at time `t` (units per second).
pub fn production_rate(product: usize, t: f64) -> f64 {
    let x = TAU * (t - START as f64) / PERIOD[product] + PHASE[product];
    BASE_RATE[product] * (1.0 + 0.5 * x.sin())
}

/// The integral of [`production_rate`] from [`START`] to `t`.
pub fn cumulative_production(product: usize, t: f64) -> f64 {
    let dt = t - START as f64;
    let k = TAU / PERIOD[product];
    let phase = PHASE[product];
    BASE_RATE[product] * (dt + 0.5 / k * (phase.cos() - (k * dt + phase).cos()))
}

/// SplitMix64: tiny, fast, and its output for a seed never changes.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]: ln is finite
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
    }
}

#[derive(Serialize)]
struct Metric {
    id: u32,
    val: f64,
    time: i64,
}

#[derive(Serialize)]
struct Workorder {
    time: i64,
    product: u32,
    production: f64,
}

/// What `gen-data` wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub metrics: u64,
    pub workorders: u64,
}

/// Writes `out/metrics.json` and `out/workorder.json` for `seed`.
pub fn generate(out: &Path, seed: u64, metrics: u64, workorders: u64) -> anyhow::Result<Written> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output dir {}", out.display()))?;
    let path = out.join("metrics.json");
    let gap = metric_mean_gap_secs(metrics, workorders);
    write_json_array(&path, |w| write_metrics(w, seed, metrics, gap))?;
    let path = out.join("workorder.json");
    // A different stream from the same seed, so the two files are independent.
    write_json_array(&path, |w| {
        write_workorders(w, seed ^ 0x005E_ED0F_F00D, workorders)
    })?;
    Ok(Written {
        metrics,
        workorders,
    })
}

/// Writes to a temporary name and renames, so a crash never leaves a half file that looks whole.
fn write_json_array(
    path: &Path,
    body: impl FnOnce(&mut ArrayWriter<'_>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(b"[")?;
        let mut writer = ArrayWriter {
            out: &mut out,
            first: true,
        };
        body(&mut writer)?;
        out.write_all(b"\n]\n")?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

struct ArrayWriter<'a> {
    out: &'a mut BufWriter<File>,
    first: bool,
}

impl ArrayWriter<'_> {
    fn element(&mut self, value: &impl Serialize) -> std::io::Result<()> {
        self.out
            .write_all(if self.first { b"\n" } else { b",\n" })?;
        self.first = false;
        serde_json::to_writer(&mut *self.out, value).map_err(std::io::Error::from)
    }
}

fn write_metrics(
    w: &mut ArrayWriter<'_>,
    seed: u64,
    count: u64,
    mean_gap_secs: f64,
) -> std::io::Result<()> {
    let mut rng = Rng(seed);
    // Per-id parameters of the unrelated series: level, period in days, phase. Periods stay
    // under 2 days, well apart from the planted 3- and 5-day cycles, so they cannot correlate.
    let background: Vec<(f64, f64, f64)> = (0..20)
        .map(|_| {
            (
                50.0 + 950.0 * rng.unit(),
                0.3 + 1.5 * rng.unit(),
                TAU * rng.unit(),
            )
        })
        .collect();
    let max_gap = ((2.0 * mean_gap_secs) as u64).saturating_sub(1).max(1);
    let mut time = START;
    let mut block = Vec::with_capacity(SHUFFLE_BLOCK);
    let mut written = 0;
    while written < count {
        block.clear();
        while block.len() < SHUFFLE_BLOCK && written + (block.len() as u64) < count {
            time += 1 + rng.below(max_gap) as i64;
            let id = rng.below(20) as u32;
            let t = time as f64;
            let val = match planted(id) {
                Some((product, j)) => {
                    let scale = GAIN[j] * BASE_RATE[product];
                    GAIN[j] * production_rate(product, t)
                        + OFFSET[j]
                        + PLANTED_NOISE * scale * rng.normal()
                }
                None => {
                    let (level, days, phase) = background[id as usize];
                    level * (1.0 + 0.2 * (TAU * t / (days * 86_400.0) + phase).sin())
                        + 0.05 * level * rng.normal()
                }
            };
            block.push(Metric { id, val, time });
        }
        // Fisher–Yates within the block.
        for i in (1..block.len()).rev() {
            block.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for m in &block {
            w.element(m)?;
        }
        written += block.len() as u64;
    }
    Ok(())
}

fn planted(id: u32) -> Option<(usize, usize)> {
    PLANTED
        .iter()
        .enumerate()
        .find_map(|(product, ids)| ids.iter().position(|&i| i == id).map(|j| (product, j)))
}

fn write_workorders(w: &mut ArrayWriter<'_>, seed: u64, count: u64) -> std::io::Result<()> {
    let mut rng = Rng(seed);
    for i in 0..count {
        let product = (i % 2) as usize;
        let step = (i / 2) as i64 + 1;
        let jitter = rng.below(601) as i64 - 300;
        let time = START + step * WORKORDER_PERIOD_SECS + jitter;
        let production =
            cumulative_production(product, time as f64) + PRODUCTION_NOISE * rng.normal();
        w.element(&Workorder {
            time,
            product: product as u32,
            production,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_production_is_the_integral_of_the_rate() {
        for product in 0..2 {
            let (a, b) = (START as f64 + 1000.0, START as f64 + 1010.0);
            let numeric = (0..1000)
                .map(|i| production_rate(product, a + (i as f64 + 0.5) * 0.01) * 0.01)
                .sum::<f64>();
            let exact = cumulative_production(product, b) - cumulative_production(product, a);
            assert!((numeric - exact).abs() < 1e-6, "{numeric} vs {exact}");
            assert_eq!(cumulative_production(product, START as f64), 0.0);
        }
    }

    #[test]
    fn default_counts_keep_the_default_gap() {
        assert_eq!(
            metric_mean_gap_secs(DEFAULT_METRICS, DEFAULT_WORKORDERS),
            METRIC_MEAN_GAP_SECS
        );
    }

    #[test]
    fn rng_is_splitmix64() {
        // The reference SplitMix64 (Vigna) starting from state 0 yields this first.
        assert_eq!(Rng(0).next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut rng = Rng(42);
        let first = rng.next_u64();
        assert_ne!(first, rng.next_u64());
    }
}
