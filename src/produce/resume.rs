//! `--resume`: find exactly which records of a source are already in its topic, reading only
//! the tail of each partition.
//!
//! Why "the highest `source-offset` present" is not the answer: records go to several
//! partitions with a batch in flight on each, so when the producer dies, record 1,000 may be
//! in partition 0 while record 990, bound for partition 1, never arrived.
//!
//! What the writer guarantees, and this look-up relies on:
//! 1. **No gaps within a partition.** A partition's records are sent in stream order, one
//!    batch in flight, and a failed batch is retried (or the producer stops) before the next
//!    is sent. So if record `h` of this source is in partition `p`, every earlier record bound
//!    for `p` is there too. Call the last one `head[p]`.
//! 2. **A bounded window.** At most `producer.max_pending_records` (`W`) records are read but
//!    not yet acknowledged at any moment. So when the latest record present anywhere, `H`,
//!    was read, every record at or below `H - W` was already acknowledged.
//! 3. **Reproducible placement.** A record's partition depends only on its key (murmur2) or,
//!    unkeyed, on its stream offset; the API replays the same stream for the same offsets.
//!
//! So: a record at offset `o` bound for partition `p` is present iff `o <= head[p]`, or
//! `o <= H - W`. The stream restarts at the first offset that can be missing,
//! `max(H - W + 1, min over p of head[p] + 1)` (just `H - W + 1` if some partition has no record
//! of this source yet), and records at or below their partition's head are skipped.
//!
//! Cost: `head[p]` is the last record of this source in `p`, found by reading the partition
//! backwards from its end in growing steps. With one source per topic that is the very last
//! record, one fetch per partition; other sources' records in between only make it read
//! further. The whole topic is never scanned unless this source has no record in a partition.
//! The window `W` must not shrink between a crash and its `--resume`.

use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient};

use super::record::{HEADER_SOURCE, HEADER_SOURCE_OFFSET};

/// Records read per fetch when looking back; doubled at each further step back.
const FIRST_STEP: i64 = 64;
/// Bytes one fetch may return.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;

/// Where a resumed source restarts and what it skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// The first stream offset to request from the API.
    pub start: u64,
    /// Per partition: the last stream offset of this source in it, if any.
    pub heads: Vec<Option<u64>>,
    /// Per partition: its end offset when looked up.
    pub log_ends: Vec<i64>,
}

impl ResumePoint {
    /// Computes the restart offset from the partition heads and the window.
    pub fn new(heads: Vec<Option<u64>>, log_ends: Vec<i64>, window: u64) -> Self {
        let start = match heads.iter().flatten().max() {
            None => 0,
            Some(&latest) => {
                let all_acknowledged_below = (latest + 1).saturating_sub(window);
                let first_missing = if heads.iter().all(Option::is_some) {
                    heads.iter().flatten().map(|h| h + 1).min().unwrap_or(0)
                } else {
                    0
                };
                all_acknowledged_below.max(first_missing)
            }
        };
        Self {
            start,
            heads,
            log_ends,
        }
    }

    /// Whether the record at `offset`, bound for `partition`, is already in the topic.
    pub fn already_written(&self, partition: i32, offset: u64) -> bool {
        let window_floor = self.start;
        let head = self.heads.get(partition as usize).copied().flatten();
        offset < window_floor || head.is_some_and(|h| offset <= h)
    }
}

/// Looks up the resume point of `source_name` over all partitions of its topic.
pub async fn find(
    clients: &[PartitionClient],
    source_name: &str,
    window: u64,
    timeout: Duration,
) -> Result<ResumePoint, String> {
    let mut heads = Vec::with_capacity(clients.len());
    let mut log_ends = Vec::with_capacity(clients.len());
    for client in clients {
        let (head, end) = partition_head(client, source_name, timeout).await?;
        heads.push(head);
        log_ends.push(end);
    }
    Ok(ResumePoint::new(heads, log_ends, window))
}

/// The last stream offset of `source_name` in one partition, and the partition's end offset.
async fn partition_head(
    client: &PartitionClient,
    source_name: &str,
    timeout: Duration,
) -> Result<(Option<u64>, i64), String> {
    let end = bounded(timeout, client.get_offset(OffsetAt::Latest)).await?;
    let earliest = bounded(timeout, client.get_offset(OffsetAt::Earliest)).await?;
    let mut head = None;
    let mut upper = end;
    let mut step = FIRST_STEP;
    while head.is_none() && upper > earliest {
        let lower = (upper - step).max(earliest);
        read_source_offsets(client, source_name, lower, upper, timeout, |offset| {
            head = head.max(Some(offset));
        })
        .await?;
        upper = lower;
        step = step.saturating_mul(2);
    }
    Ok((head, end))
}

/// Calls `found` with the stream offset of every record of `source_name` in `[from, to)`.
pub async fn read_source_offsets(
    client: &PartitionClient,
    source_name: &str,
    from: i64,
    to: i64,
    timeout: Duration,
    mut found: impl FnMut(u64),
) -> Result<(), String> {
    let mut next = from;
    while next < to {
        let (records, _high_watermark) =
            bounded(timeout, client.fetch_records(next, 1..FETCH_BYTES, 0)).await?;
        let Some(last) = records.last() else { break };
        let after = last.offset + 1;
        for r in records {
            if r.offset >= to {
                break;
            }
            let headers = &r.record.headers;
            if headers.get(HEADER_SOURCE).map(Vec::as_slice) != Some(source_name.as_bytes()) {
                continue;
            }
            if let Some(offset) = headers
                .get(HEADER_SOURCE_OFFSET)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
            {
                found(offset);
            }
        }
        next = after;
    }
    Ok(())
}

/// One Kafka call bounded by `timeout`, its failure as text.
pub async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, rskafka::client::error::Error>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_at_the_first_record_a_partition_may_lack() {
        // Partition 1 lags: records bound for it after 990 may be missing.
        let r = ResumePoint::new(vec![Some(1000), Some(990), Some(998)], vec![0; 3], 100);
        assert_eq!(r.start, 991);
        assert!(r.already_written(0, 995));
        assert!(!r.already_written(1, 995));
        assert!(r.already_written(2, 998));
        assert!(!r.already_written(2, 999));
    }

    #[test]
    fn the_window_bounds_how_far_back_it_goes() {
        // A partition without any record of the source: anything in the window may be missing,
        // nothing below it can be.
        let r = ResumePoint::new(vec![Some(1000), None, Some(998)], vec![0; 3], 100);
        assert_eq!(r.start, 901);
        assert!(!r.already_written(1, 950));
        assert!(r.already_written(1, 900));
        // A lagging head far below the window is itself bounded by the window.
        let r = ResumePoint::new(vec![Some(1000), Some(10), Some(998)], vec![0; 3], 100);
        assert_eq!(r.start, 901);
    }

    #[test]
    fn an_empty_topic_starts_from_zero() {
        let r = ResumePoint::new(vec![None, None], vec![0, 0], 100);
        assert_eq!(r.start, 0);
        assert!(!r.already_written(0, 0));
    }
}
