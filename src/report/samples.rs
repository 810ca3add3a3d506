//! Metric samples → each metric's mean in each interval of each product (method step 3).
//!
//! One cell per product × metric × interval holds a compensated (Neumaier) sum and a count,
//! so a mean (practically always) does not depend on the order the files were read in: the
//! same records give the same report whether they came in one file or a thousand, from
//! Parquet or Delta. (Only sums whose terms span some 30 orders of magnitude can still round
//! differently in another order.)

use std::collections::HashMap;

use arrow::array::RecordBatch;

use super::columns::Names;
use super::model::Key;
use super::workorders::Intervals;
use super::{ReportError, Window};

/// The most cells (metric ids × intervals over all products, 40 bytes each) the report
/// holds: about 240 MB. More must be narrowed with `--from`/`--to`.
pub const MAX_CELLS: usize = 6_000_000;

/// The most metric ids a report tests (each is a row per product and lag).
pub const MAX_METRICS: usize = 10_000;

/// One metric's samples in one interval: a compensated sum, the count, and the extremes
/// (identical samples average to exactly their value, and no mean leaves their range).
#[derive(Debug, Clone, Copy)]
struct Cell {
    sum: f64,
    compensation: f64,
    count: u64,
    min: f64,
    max: f64,
}

impl Default for Cell {
    fn default() -> Self {
        Self {
            sum: 0.0,
            compensation: 0.0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Cell {
    fn add(&mut self, value: f64) {
        let sum = self.sum + value;
        self.compensation += if self.sum.abs() >= value.abs() {
            (self.sum - sum) + value
        } else {
            (value - sum) + self.sum
        };
        self.sum = sum;
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    fn mean(&self) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        if self.min == self.max {
            return Some(self.min);
        }
        // NaN (a sum past f64) stays NaN for `correlate` to report; clamp keeps NaN.
        Some(((self.sum + self.compensation) / self.count as f64).clamp(self.min, self.max))
    }
}

/// Every metric's interval means, for every product.
pub struct Samples<'a> {
    intervals: &'a [Intervals],
    metric_index: HashMap<Key, usize>,
    metrics: Vec<Key>,
    /// Per product, metric-major: `cells[p][m * len_p + j]`.
    cells: Vec<Vec<Cell>>,
    /// Rows with a null field or a non-finite value, left out.
    pub dropped: u64,
    /// Samples inside the window.
    pub kept: u64,
    /// Of those, samples in no interval of any product.
    pub outside: u64,
}

impl<'a> Samples<'a> {
    pub fn new(intervals: &'a [Intervals]) -> Self {
        Self {
            intervals,
            metric_index: HashMap::new(),
            metrics: Vec::new(),
            cells: vec![Vec::new(); intervals.len()],
            dropped: 0,
            kept: 0,
            outside: 0,
        }
    }

    /// Adds one batch of the [`Names::columns`].
    pub fn add(
        &mut self,
        batch: &RecordBatch,
        names: &Names<'_>,
        window: Window,
    ) -> Result<(), ReportError> {
        let rows = names.decode(batch)?;
        for i in 0..rows.len() {
            let Some(row) = rows.get(i) else {
                self.dropped += 1;
                continue;
            };
            if window.contains(row.time) {
                let metric = self.metric(row.key)?;
                self.add_sample(metric, row.time, row.value);
            }
        }
        Ok(())
    }

    fn add_sample(&mut self, metric: usize, at: i64, value: f64) {
        self.kept += 1;
        let mut inside = false;
        for (p, intervals) in self.intervals.iter().enumerate() {
            if !intervals.spans(at) {
                continue;
            }
            if let Some(j) = intervals.find(at) {
                self.cells[p][metric * intervals.len() + j].add(value);
                inside = true;
            }
        }
        if !inside {
            self.outside += 1;
        }
    }

    /// The index of metric `key`, giving it cells in every product the first time.
    fn metric(&mut self, key: Key) -> Result<usize, ReportError> {
        if let Some(&index) = self.metric_index.get(&key) {
            return Ok(index);
        }
        if self.metrics.len() >= MAX_METRICS {
            return Err(ReportError::TooMuchData {
                what: format!(
                    "more than {MAX_METRICS} metric ids (is [report] metric_id_column right?)"
                ),
            });
        }
        let per_metric: usize = self.intervals.iter().map(Intervals::len).sum();
        let cells = per_metric * (self.metrics.len() + 1);
        if cells > MAX_CELLS {
            return Err(ReportError::TooMuchData {
                what: format!(
                    "{} metric ids × {per_metric} intervals (more than {MAX_CELLS} interval means)",
                    self.metrics.len() + 1
                ),
            });
        }
        for (p, intervals) in self.intervals.iter().enumerate() {
            let len = self.cells[p].len() + intervals.len();
            self.cells[p].resize(len, Cell::default());
        }
        let index = self.metrics.len();
        self.metric_index.insert(key.clone(), index);
        self.metrics.push(key);
        Ok(index)
    }

    /// Every metric id seen, sorted, with its index.
    pub fn metrics(&self) -> Vec<(Key, usize)> {
        let mut metrics: Vec<(Key, usize)> = self
            .metrics
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        metrics.sort();
        metrics
    }

    /// The mean of `metric` in interval `j` of product `p`.
    pub fn mean(&self, p: usize, metric: usize, j: usize) -> Option<f64> {
        self.cells[p][metric * self.intervals[p].len() + j].mean()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sums_do_not_depend_on_order() {
        let values = [1e16, 1.0, -1e16, 3.0, 0.1, 0.2];
        let mut forward = Cell::default();
        values.iter().for_each(|&v| forward.add(v));
        let mut backward = Cell::default();
        values.iter().rev().for_each(|&v| backward.add(v));
        assert_eq!(forward.mean(), backward.mean());
        assert_eq!(forward.mean(), Some(4.3 / 6.0));
    }

    #[test]
    fn identical_samples_average_to_themselves() {
        let mut cell = Cell::default();
        (0..3).for_each(|_| cell.add(0.1));
        // The plain sum gives 0.30000000000000004 / 3 = 0.10000000000000002.
        assert_eq!(cell.mean(), Some(0.1));
    }
}
