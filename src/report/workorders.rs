//! Work orders → each product's intervals and their output (method steps 1 and 2).
//!
//! A product's records, sorted by (time, production), give an interval between every two
//! consecutive records with distinct times: `[time[i], time[i+1])`, whose output is
//! `production[i+1] − production[i]`. A negative step (a counter reset or correction) keeps
//! its place in the sequence (lags count positions) but has no output.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;

use super::columns::Names;
use super::model::{IntervalCounts, Key};
use super::{ReportError, Window};

/// The most work-order records the report holds (16 bytes each); more must be narrowed with
/// `--from`/`--to`.
pub const MAX_WORKORDERS: u64 = 20_000_000;

/// The most products a report holds: every metric sample is looked up in every product's
/// intervals, and each product gets a row per metric and lag.
pub const MAX_PRODUCTS: usize = 1_000;

/// One work-order record of a product.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    time: i64,
    production: f64,
}

/// Work orders grouped by product, as read.
#[derive(Debug, Default)]
pub struct WorkOrders {
    by_product: BTreeMap<Key, Vec<Reading>>,
    /// Rows with a null field or a non-finite production, left out.
    pub dropped: u64,
    /// Rows kept.
    pub kept: u64,
}

impl WorkOrders {
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
            if !window.contains(row.time) {
                continue;
            }
            self.kept += 1;
            if self.kept > MAX_WORKORDERS {
                return Err(ReportError::TooMuchData {
                    what: format!("more than {MAX_WORKORDERS} work-order records"),
                });
            }
            if !self.by_product.contains_key(&row.key) && self.by_product.len() >= MAX_PRODUCTS {
                return Err(ReportError::TooMuchData {
                    what: format!(
                        "more than {MAX_PRODUCTS} products (is [report] product_column right?)"
                    ),
                });
            }
            self.by_product.entry(row.key).or_default().push(Reading {
                time: row.time,
                production: row.value,
            });
        }
        Ok(())
    }

    /// Every product's intervals, products in key order.
    pub fn into_intervals(self) -> Vec<Intervals> {
        self.by_product
            .into_iter()
            .map(|(product, readings)| Intervals::new(product, readings))
            .collect()
    }
}

/// One product's intervals in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Intervals {
    pub product: Key,
    /// Interval `j` covers `[starts[j], ends[j])`, unix microseconds.
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    /// `None` for a negative step.
    pub outputs: Vec<Option<f64>>,
    pub counts: IntervalCounts,
}

impl Intervals {
    fn new(product: Key, mut readings: Vec<Reading>) -> Self {
        readings.sort_by(|a, b| {
            a.time
                .cmp(&b.time)
                .then(a.production.total_cmp(&b.production))
        });
        let mut this = Self {
            product,
            starts: Vec::new(),
            ends: Vec::new(),
            outputs: Vec::new(),
            counts: IntervalCounts {
                records: readings.len(),
                ..IntervalCounts::default()
            },
        };
        for pair in readings.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.time == a.time {
                this.counts.zero_length += 1;
                continue;
            }
            let output = b.production - a.production;
            // A step down, or one beyond what f64 holds (from near -1.8e308 to near +1.8e308).
            let usable = output >= 0.0 && output.is_finite();
            if !usable {
                this.counts.negative_steps += 1;
            }
            this.starts.push(a.time);
            this.ends.push(b.time);
            this.outputs.push(usable.then_some(output));
        }
        this.counts.intervals = this.starts.len();
        this
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether `t` is inside the product's first to last work order (a quick test before
    /// [`Self::find`]).
    pub fn spans(&self, t: i64) -> bool {
        match (self.starts.first(), self.ends.last()) {
            (Some(&first), Some(&last)) => first <= t && t < last,
            _ => false,
        }
    }

    /// The interval holding time `t`, if any.
    pub fn find(&self, t: i64) -> Option<usize> {
        let j = self.starts.partition_point(|&s| s <= t).checked_sub(1)?;
        (t < self.ends[j]).then_some(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(time: i64, production: f64) -> Reading {
        Reading { time, production }
    }

    #[test]
    fn intervals_skip_equal_times_and_mark_negative_steps() {
        let readings = vec![
            reading(30, 5.0),
            reading(10, 1.0),
            reading(20, 4.0),
            reading(20, 3.0),
            reading(40, 9.0),
        ];
        let intervals = Intervals::new(Key::Int(0), readings);
        // Sorted: (10,1) (20,3) (20,4) (30,5) (40,9).
        assert_eq!(intervals.starts, vec![10, 20, 30]);
        assert_eq!(intervals.ends, vec![20, 30, 40]);
        assert_eq!(intervals.outputs, vec![Some(2.0), Some(1.0), Some(4.0)]);
        assert_eq!(intervals.counts.zero_length, 1);
        assert_eq!(intervals.find(10), Some(0));
        assert_eq!(intervals.find(29), Some(1));
        assert_eq!(intervals.find(40), None);
        assert_eq!(intervals.find(9), None);
        let reset = Intervals::new(Key::Int(1), vec![reading(1, 10.0), reading(2, 3.0)]);
        assert_eq!(reset.outputs, vec![None]);
        assert_eq!(reset.counts.negative_steps, 1);
    }
}
