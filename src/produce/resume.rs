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
//! 2. **A window bounded by stream offset.** A record at offset `o` is handed to its writer
//!    only while `o − (lowest unacknowledged offset) < W`, `W` = `producer.max_pending_records`
//!    ([`super::window`]). Bad records, and records a resumed run skips, occupy stream offsets
//!    but never enter the window. So when the latest record present anywhere, `H`, was read,
//!    every record at or below `H − W` had been acknowledged, was bad, or was already in the
//!    topic. (A window counting records instead would let `W` records spread over more than
//!    `W` offsets whenever bad records sit between them, and leave a gap after a crash.)
//! 3. **Reproducible placement.** A record's partition depends only on its key (murmur2) or,
//!    unkeyed, on its stream offset; the API replays the same stream for the same offsets.
//!
//! So: a good record at offset `o` bound for partition `p` is present iff `o <= head[p]`, or
//! `o <= H - W`. (Bad records are never present; the resumed run finds them bad again.) The
//! stream restarts at the first offset that can be missing, `max(H - W + 1, min over p of
//! head[p] + 1)` (just `H - W + 1` if some partition has no record of this source yet), and
//! records at or below their partition's head are skipped. The property test below checks
//! this rule against a simulated writer that crashes at arbitrary moments.
//!
//! Cost: `head[p]` is the last record of this source in `p`, found by reading the partition
//! backwards from its end in growing steps. With one source per topic that is the very last
//! record, one fetch per partition; other sources' records in between only make it read
//! further. The whole topic is never scanned unless this source has no record in a partition.
//! The window `W` must not shrink between a crash and its `--resume`.

use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient};

use super::record::{HEADER_SOURCE, HEADER_SOURCE_OFFSET};
use crate::kafka::{KafkaError, bounded};

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
) -> Result<ResumePoint, KafkaError> {
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
) -> Result<(Option<u64>, i64), KafkaError> {
    let end = bounded(
        timeout,
        "reading the end offset",
        client.get_offset(OffsetAt::Latest),
    )
    .await?;
    let earliest = bounded(
        timeout,
        "reading the earliest offset",
        client.get_offset(OffsetAt::Earliest),
    )
    .await?;
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
) -> Result<(), KafkaError> {
    let mut next = from;
    while next < to {
        let fetch = client.fetch_records(next, 1..FETCH_BYTES, 0);
        let (records, _high_watermark) = bounded(timeout, "reading what landed", fetch).await?;
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

/// The resume rule against a simulated writer: the real [`Window`](super::window::Window),
/// stream offsets read in order (some bad: never sent, but they occupy offsets), per-partition
/// in-order acknowledgements interleaved arbitrarily across partitions, a crash at an arbitrary
/// moment with part of each partition's unacknowledged records landed anyway, then a resumed
/// run from the [`ResumePoint`] the heads give, possibly crashing again.
#[cfg(test)]
mod resume_rule {
    use std::collections::{BTreeSet, VecDeque};

    use proptest::prelude::*;

    use super::ResumePoint;
    use crate::produce::window::Window;

    /// One record of the simulated stream.
    #[derive(Debug, Clone, Copy)]
    struct Spec {
        partition: usize,
        bad: bool,
    }

    /// What a scheduler step does.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// The reader takes the next line (blocks, i.e. does nothing, if the window is full).
        Read,
        /// The broker acknowledges the first `count` pending records of a partition.
        Ack { partition: usize, count: usize },
    }

    /// The topic: per partition, the stream offsets written, in order.
    #[derive(Debug, Clone)]
    struct Topic {
        partitions: Vec<Vec<u64>>,
    }

    impl Topic {
        fn holds(&self, offset: u64) -> bool {
            self.partitions.iter().any(|p| p.contains(&offset))
        }

        fn point(&self, window: u64) -> ResumePoint {
            let heads = self
                .partitions
                .iter()
                .map(|p| p.iter().copied().max())
                .collect();
            ResumePoint::new(heads, vec![0; self.partitions.len()], window)
        }
    }

    /// One run of the producer from `point` (None: from the start), stopped after `crash_after`
    /// scheduler steps (None: to the end), with `landed[p]` of each partition's pending
    /// records written though never acknowledged when it crashes.
    struct Run<'a> {
        specs: &'a [Spec],
        window: Window,
        pending: Vec<VecDeque<u64>>,
        next: u64,
        point: Option<ResumePoint>,
    }

    impl<'a> Run<'a> {
        fn new(
            specs: &'a [Spec],
            partitions: usize,
            span: u64,
            point: Option<ResumePoint>,
        ) -> Self {
            Self {
                specs,
                window: Window::new(span),
                pending: vec![VecDeque::new(); partitions],
                next: point.as_ref().map_or(0, |p| p.start),
                point,
            }
        }

        fn read(&mut self) -> bool {
            let Some(spec) = self.specs.get(self.next as usize) else {
                return false;
            };
            let offset = self.next;
            let skip = spec.bad
                || self
                    .point
                    .as_ref()
                    .is_some_and(|p| p.already_written(spec.partition as i32, offset));
            if !skip {
                if !self.window.try_acquire(offset) {
                    return false;
                }
                self.pending[spec.partition].push_back(offset);
            }
            self.next += 1;
            true
        }

        fn ack(&mut self, topic: &mut Topic, partition: usize, count: usize) -> bool {
            let queue = &mut self.pending[partition];
            let taken: Vec<u64> = queue.drain(..count.min(queue.len())).collect();
            topic.partitions[partition].extend(&taken);
            let any = !taken.is_empty();
            self.window.ack(taken);
            any
        }

        /// Steps until `crash_after` steps or the end of the stream with everything acked.
        fn go(&mut self, topic: &mut Topic, steps: &[Step], crash_after: Option<usize>) {
            let mut schedule = steps.iter().cycle();
            let mut taken = 0;
            loop {
                if crash_after.is_some_and(|limit| taken >= limit) {
                    return;
                }
                let done = self.next as usize >= self.specs.len();
                if done && self.pending.iter().all(VecDeque::is_empty) {
                    return;
                }
                taken += 1;
                let moved = match schedule.next() {
                    Some(Step::Read) => self.read(),
                    Some(&Step::Ack { partition, count }) => {
                        self.ack(topic, partition % self.pending.len(), count)
                    }
                    None => false,
                };
                if !moved && !self.read() {
                    // Blocked reader: the broker answers the partition holding the lowest offset.
                    let lowest = (0..self.pending.len())
                        .filter(|&p| !self.pending[p].is_empty())
                        .min_by_key(|&p| self.pending[p][0]);
                    if let Some(p) = lowest {
                        self.ack(topic, p, 1);
                    }
                }
            }
        }

        /// The crash: of each partition's pending records, the first `landed[p]` were written
        /// (the batch in flight reached the broker; its answer did not come back).
        fn crash(self, topic: &mut Topic, landed: &[usize]) {
            for (p, queue) in self.pending.into_iter().enumerate() {
                let n = landed.get(p).copied().unwrap_or(0).min(queue.len());
                topic.partitions[p].extend(queue.into_iter().take(n));
            }
        }
    }

    /// A crash: after `after` scheduler steps, with the first `landed[p]` pending records of
    /// each partition written though never acknowledged.
    #[derive(Debug, Clone)]
    struct Crash {
        after: usize,
        landed: Vec<usize>,
    }

    /// One generated case: the stream, the topic's shape, the window, the interleaving of
    /// reads and acknowledgements, and the crashes before a last run goes to the end.
    #[derive(Debug, Clone)]
    struct Scenario {
        specs: Vec<Spec>,
        partitions: usize,
        span: u64,
        steps: Vec<Step>,
        crashes: Vec<Crash>,
    }

    fn scenario() -> impl Strategy<Value = Scenario> {
        (1usize..=4, 1u64..=24).prop_flat_map(|(partitions, span)| {
            let spec = (0..partitions, prop::bool::weighted(0.35))
                .prop_map(|(partition, bad)| Spec { partition, bad });
            let step = prop_oneof![
                2 => Just(Step::Read),
                1 => (0..partitions, 1usize..8)
                    .prop_map(|(partition, count)| Step::Ack { partition, count }),
            ];
            let crash = (0usize..400, prop::collection::vec(0usize..10, partitions))
                .prop_map(|(after, landed)| Crash { after, landed });
            (
                prop::collection::vec(spec, 1..250),
                prop::collection::vec(step, 1..64),
                prop::collection::vec(crash, 1..4),
            )
                .prop_map(move |(specs, steps, crashes)| Scenario {
                    specs,
                    partitions,
                    span,
                    steps,
                    crashes,
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn resume_skips_only_what_is_written_and_resends_everything_else(
            scenario in scenario()
        ) {
            let Scenario { specs, partitions, span, steps, crashes } = scenario;
            let mut topic = Topic { partitions: vec![Vec::new(); partitions] };
            let mut point = None;
            for crash in &crashes {
                let mut run = Run::new(&specs, partitions, span, point.take());
                run.go(&mut topic, &steps, Some(crash.after));
                run.crash(&mut topic, &crash.landed);

                let resume = topic.point(span);
                for (offset, spec) in specs.iter().enumerate() {
                    let offset = offset as u64;
                    if spec.bad {
                        continue;
                    }
                    let written = topic.holds(offset);
                    let skipped = offset < resume.start
                        || resume.already_written(spec.partition as i32, offset);
                    prop_assert_eq!(
                        skipped, written,
                        "record {} (partition {}): resume {:?} skips it: {}, in the topic: {}",
                        offset, spec.partition, resume, skipped, written
                    );
                }
                point = Some(resume);
            }
            // The last resumed run goes to the end: every good record once, none bad.
            let mut run = Run::new(&specs, partitions, span, point.take());
            run.go(&mut topic, &steps, None);
            let written: Vec<u64> = topic.partitions.concat();
            let unique: BTreeSet<u64> = written.iter().copied().collect();
            prop_assert_eq!(unique.len(), written.len(), "a record written twice");
            let good: BTreeSet<u64> = (0..specs.len() as u64)
                .filter(|&o| !specs[o as usize].bad)
                .collect();
            prop_assert_eq!(unique, good);
        }
    }
}
