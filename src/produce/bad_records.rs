//! What happens to a line that cannot become a record (`producer.on_bad_record`): `skip` counts
//! it, logs it with its source and source-offset (the first few one by one, then counts by kind
//! every few seconds, so a stream of garbage cannot flood the log) and goes on; `fail` stops
//! the source with an error naming it.
//!
//! A log line quotes the offending line only through [`crate::excerpt`]: at most 200 bytes and
//! the full length, whatever the line's size.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::ProduceError;
use super::record::BadRecord;
use crate::settings::BadRecordPolicy;
use crate::status::SourceCounters;

/// Bad records logged one by one before the log switches to periodic counts.
const BAD_RECORDS_LOGGED: u64 = 10;
const BAD_RECORD_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The bad-record policy of one source's reading side.
pub struct BadRecords {
    source_name: String,
    policy: BadRecordPolicy,
    stats: Arc<SourceCounters>,
    log: BadRecordLog,
}

impl BadRecords {
    pub fn new(source_name: &str, policy: BadRecordPolicy, stats: Arc<SourceCounters>) -> Self {
        Self {
            source_name: source_name.to_string(),
            policy,
            stats,
            log: BadRecordLog::new(),
        }
    }

    /// Counts the bad record at `offset`; an error in `fail` mode, logged otherwise. `line` is
    /// the offending line, if it was read at all.
    pub fn found(
        &mut self,
        offset: u64,
        reason: BadRecord,
        line: Option<&[u8]>,
    ) -> Result<(), ProduceError> {
        self.stats.bad.fetch_add(1, Ordering::Relaxed);
        if self.policy == BadRecordPolicy::Fail {
            return Err(ProduceError::BadRecord {
                source_name: self.source_name.clone(),
                offset,
                reason,
            });
        }
        self.log.record(&self.source_name, offset, &reason, line);
        Ok(())
    }

    /// Logs the counts not yet logged.
    pub fn finish(&mut self) {
        self.log.summarise(&self.source_name);
    }
}

/// The log side: the first few one by one, then counts by kind.
struct BadRecordLog {
    logged: u64,
    unlogged: BTreeMap<&'static str, u64>,
    last_summary: Instant,
}

impl BadRecordLog {
    fn new() -> Self {
        Self {
            logged: 0,
            unlogged: BTreeMap::new(),
            last_summary: Instant::now(),
        }
    }

    fn record(&mut self, source: &str, offset: u64, reason: &BadRecord, line: Option<&[u8]>) {
        if self.logged < BAD_RECORDS_LOGGED {
            self.logged += 1;
            match line {
                Some(line) => {
                    let line = crate::excerpt::bytes(line);
                    tracing::warn!(%source, source_offset = offset, %reason, %line, "bad record skipped");
                }
                None => {
                    tracing::warn!(%source, source_offset = offset, %reason, "bad record skipped")
                }
            }
            if self.logged == BAD_RECORDS_LOGGED {
                tracing::warn!(%source, "further bad records are counted and summarised every {BAD_RECORD_SUMMARY_EVERY:?}");
            }
            return;
        }
        *self.unlogged.entry(reason.kind()).or_default() += 1;
        if self.last_summary.elapsed() >= BAD_RECORD_SUMMARY_EVERY {
            self.summarise(source);
        }
    }

    fn summarise(&mut self, source: &str) {
        for (reason, count) in std::mem::take(&mut self.unlogged) {
            tracing::warn!(%source, count, %reason, "bad records skipped");
        }
        self.last_summary = Instant::now();
    }
}
