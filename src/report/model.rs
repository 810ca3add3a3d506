//! What a report says, computed once and rendered three ways (Markdown, HTML, CSV). Renderers
//! only format these values; every number and every decision (significance, ranking, the
//! verdict) is made in `analysis`.

use std::fmt;

/// A product or metric id as the data has it: an integer or a text. Integers sort numerically
/// and before texts, so `2` comes before `10`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Int(i64),
    Text(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(value) => write!(f, "{value}"),
            Key::Text(text) => f.write_str(text),
        }
    }
}

/// One correlation: a product's interval output against one metric's interval means, the
/// metric taken `lag` intervals earlier.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    pub metric: Key,
    pub lag: usize,
    /// Intervals with both an output and a metric mean.
    pub n: usize,
    /// `None` when undefined (too few intervals or a constant side); `note` says why.
    pub stats: Option<Stats>,
    pub note: Option<&'static str>,
}

/// The numbers of a defined correlation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub pearson_r: f64,
    pub spearman_rho: f64,
    /// Two-sided p of `pearson_r` (Student's t, n − 2 degrees of freedom).
    pub p_value: f64,
    /// Benjamini–Hochberg over every defined row of the product.
    pub p_adjusted: f64,
    pub significant: bool,
}

/// One point of a product's series: an interval's output and, for a metric, its mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalPoint {
    /// Interval start, unix microseconds (UTC).
    pub start_micros: i64,
    pub output: f64,
    pub metric_mean: f64,
}

/// A top metric with the pairs its correlation used, for the time-series panel.
#[derive(Debug, Clone, PartialEq)]
pub struct TopMetric {
    /// Index into [`ProductReport::correlations`] of the row it was ranked by.
    pub row: usize,
    /// The pairs of that row in time order (the output interval's start), at most
    /// [`MAX_SERIES_POINTS`] of them: longer series are averaged into that many buckets.
    pub series: Vec<IntervalPoint>,
}

/// The most points a time-series panel shows.
pub const MAX_SERIES_POINTS: usize = 400;

/// Counts that say how much of a product's data the correlations could use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntervalCounts {
    /// Work-order records of the product (after the time window).
    pub records: usize,
    /// Intervals between consecutive records with distinct times.
    pub intervals: usize,
    /// Of those, intervals whose production went down (counter reset or correction), or rose
    /// by more than `f64` holds: left out.
    pub negative_steps: usize,
    /// Consecutive records with the same time: not intervals.
    pub zero_length: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductReport {
    pub product: Key,
    pub counts: IntervalCounts,
    /// Every metric × lag, sorted by metric then lag.
    pub correlations: Vec<Correlation>,
    /// The best-ranked metrics (at most three), best first.
    pub top: Vec<TopMetric>,
    /// The first sentence of the product's section: the answer, or why there is none.
    pub verdict: String,
}

impl ProductReport {
    /// Whether any row of the product is significant after adjustment.
    pub fn any_significant(&self) -> bool {
        self.correlations
            .iter()
            .any(|c| c.stats.is_some_and(|s| s.significant))
    }
}

/// Where the data came from and what was left out of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputSummary {
    /// `workorder: database/workorder (Parquet, 12 committed files)` and the like.
    pub sources: Vec<String>,
    /// Work-order rows used: every field present, output finite, inside the window.
    pub workorder_records: u64,
    /// Metric rows used, by the same rule (whether or not they fell in an interval).
    pub metric_samples: u64,
    /// Rows left out: null fields or non-finite numbers, per topic.
    pub workorder_dropped: u64,
    pub metric_dropped: u64,
    /// Metric samples inside the window that fell in no interval of any product.
    pub metric_outside_intervals: u64,
    /// The window asked for (`--from`/`--to`), unix microseconds.
    pub from_micros: Option<i64>,
    pub to_micros: Option<i64>,
    /// The time span of the work orders used, unix microseconds.
    pub first_micros: Option<i64>,
    pub last_micros: Option<i64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub input: InputSummary,
    pub max_lag: usize,
    pub alpha: f64,
    /// Every metric id seen, sorted.
    pub metrics: Vec<Key>,
    pub products: Vec<ProductReport>,
}
