//! What one topic's run did, as `consume` prints it at the end and `run` adds it up.

use std::fmt;
use std::time::Duration;

/// What one topic's run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicSummary {
    pub topic: String,
    pub batches: u64,
    pub rows: u64,
    pub bad_records: u64,
    pub files: u64,
    pub elapsed: Duration,
}

impl TopicSummary {
    /// One summary per topic out of several runs' (in first-seen order): counts and times add.
    pub fn combine(summaries: impl IntoIterator<Item = TopicSummary>) -> Vec<TopicSummary> {
        let mut combined: Vec<TopicSummary> = Vec::new();
        for s in summaries {
            match combined.iter_mut().find(|c| c.topic == s.topic) {
                Some(c) => {
                    c.batches += s.batches;
                    c.rows += s.rows;
                    c.bad_records += s.bad_records;
                    c.files += s.files;
                    c.elapsed += s.elapsed;
                }
                None => combined.push(s),
            }
        }
        combined
    }
}

impl fmt::Display for TopicSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{}: {} rows in {} batches, {} files, {} bad records, {:.2} s, {:.0} records/s",
            self.topic,
            self.rows,
            self.batches,
            self.files,
            self.bad_records,
            secs,
            (self.rows + self.bad_records) as f64 / secs.max(1e-9)
        )
    }
}
