//! Live status of a running `produce`, `consume` or `run`: what each source has produced and
//! where each topic's partitions stand (committed, latest, lag), served over HTTP with
//! `--status-bind` ([`server`]) as JSON, Prometheus text and a small HTML page.
//!
//! The producer and the consumer write into a [`Status`] as they go (atomics for the hot
//! per-record counters, a mutex per topic touched once per batch); readers take a
//! [`Snapshot`]. Without a status server the counters still feed the progress lines and cost
//! next to nothing.

mod metrics;
pub mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

pub use server::StatusServer;

/// The shared status of this process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Status(Arc<Board>);

#[derive(Debug)]
struct Board {
    command: String,
    started: Instant,
    started_unix: f64,
    /// Whether a status server runs: only then does the consumer poll latest offsets between
    /// batches, to keep the lag current.
    watched: AtomicBool,
    sources: Mutex<Vec<SourceEntry>>,
    topics: Mutex<BTreeMap<String, Arc<TopicStatus>>>,
}

#[derive(Debug)]
struct SourceEntry {
    name: String,
    topic: String,
    counters: Arc<SourceCounters>,
    rate: Mutex<Rate>,
}

/// Live counters of one producer source.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Records acknowledged by the broker.
    pub records: AtomicU64,
    /// Value bytes of those records.
    pub bytes: AtomicU64,
    pub bad: AtomicU64,
    /// Records `--resume` found already in the topic.
    pub skipped: AtomicU64,
    /// Broker and API failures being retried.
    pub trouble: Trouble,
    state: AtomicU8,
}

/// Where a source or a consumed topic is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Finished,
    Failed,
}

impl RunState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Running,
            1 => Self::Finished,
            _ => Self::Failed,
        }
    }
}

impl SourceCounters {
    pub fn set_state(&self, state: RunState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> RunState {
        RunState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

/// Failures that are being retried: how many there were, and the latest one until the next
/// success clears it. What an operator wants to see while the lag grows.
#[derive(Debug, Default)]
pub struct Trouble {
    retries: AtomicU64,
    /// Whether `current` holds a problem: lets `recovered`, called on every success, skip the
    /// lock.
    troubled: AtomicBool,
    current: Mutex<Option<(String, Instant)>>,
}

impl Trouble {
    /// A failure that will be retried (or, last, the one that ended the work).
    pub fn failed(&self, error: impl std::fmt::Display) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        *lock(&self.current) = Some((error.to_string(), Instant::now()));
        self.troubled.store(true, Ordering::Release);
    }

    /// Work succeeded again: the problem is over.
    pub fn recovered(&self) {
        if self.troubled.swap(false, Ordering::AcqRel) {
            *lock(&self.current) = None;
        }
    }

    fn snapshot(&self) -> (u64, Option<ProblemSnapshot>) {
        let problem = lock(&self.current)
            .as_ref()
            .map(|(message, at)| ProblemSnapshot {
                message: message.clone(),
                age_seconds: at.elapsed().as_secs_f64(),
            });
        (self.retries.load(Ordering::Relaxed), problem)
    }
}

/// One topic as this process sees it: latest offsets from the producer's acknowledgements
/// and the consumer's offset look-ups, committed offsets and batches from the consumer.
#[derive(Debug, Default)]
pub struct TopicStatus {
    state: Mutex<TopicState>,
    /// The consumer's fetch and write failures.
    pub trouble: Trouble,
}

#[derive(Debug, Default, Clone)]
struct TopicState {
    /// `None` while no consumer of this process reads the topic.
    consumer: Option<RunState>,
    partitions: BTreeMap<i32, PartitionState>,
    batches: u64,
    rows: u64,
    bad_records: u64,
    files: u64,
    last_batch: Option<LastBatch>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PartitionState {
    committed: Option<i64>,
    latest: Option<i64>,
    /// Records (rows and bad) this process consumed from the partition.
    consumed: u64,
}

#[derive(Debug, Clone, Copy)]
struct LastBatch {
    batch: u64,
    records: u64,
    rows: u64,
    bad_records: u64,
    files: u64,
    duration: Duration,
    at: Instant,
}

/// What one committed batch did, as the consumer reports it.
#[derive(Debug, Clone)]
pub struct BatchReport<'a> {
    pub batch: u64,
    /// The planned `[start, end)` offsets per partition.
    pub ranges: &'a BTreeMap<i32, (i64, i64)>,
    pub rows: u64,
    pub bad_records: u64,
    pub files: u64,
    pub duration: Duration,
}

impl TopicStatus {
    fn state(&self) -> std::sync::MutexGuard<'_, TopicState> {
        lock(&self.state)
    }

    pub fn set_consumer_state(&self, state: RunState) {
        self.state().consumer = Some(state);
    }

    /// The offsets the consumer continues from (its checkpoint, or the starting offsets).
    pub fn set_committed(&self, next_offsets: &BTreeMap<i32, i64>) {
        let mut state = self.state();
        for (&p, &offset) in next_offsets {
            state.partitions.entry(p).or_default().committed = Some(offset);
        }
    }

    /// A partition's end offset as last seen; it only moves forward (the producer's and the
    /// consumer's views may arrive out of order).
    pub fn observe_latest(&self, partition: i32, end: i64) {
        let mut state = self.state();
        let latest = &mut state.partitions.entry(partition).or_default().latest;
        *latest = Some(latest.map_or(end, |l| l.max(end)));
    }

    pub fn observe_latest_all(&self, ends: &BTreeMap<i32, i64>) {
        for (&p, &end) in ends {
            self.observe_latest(p, end);
        }
    }

    pub fn record_batch(&self, report: &BatchReport<'_>) {
        let mut state = self.state();
        let mut records = 0;
        for (&p, &(start, end)) in report.ranges {
            let partition = state.partitions.entry(p).or_default();
            let taken = (end - start).max(0) as u64;
            partition.consumed += taken;
            partition.committed = Some(end);
            records += taken;
        }
        state.batches += 1;
        state.rows += report.rows;
        state.bad_records += report.bad_records;
        state.files += report.files;
        state.last_batch = Some(LastBatch {
            batch: report.batch,
            records,
            rows: report.rows,
            bad_records: report.bad_records,
            files: report.files,
            duration: report.duration,
            at: Instant::now(),
        });
    }
}

impl Status {
    /// `command` names what runs (`run`, `produce`, `consume`) on the page and in metrics.
    pub fn new(command: &str) -> Self {
        let started_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Self(Arc::new(Board {
            command: command.to_string(),
            started: Instant::now(),
            started_unix,
            watched: AtomicBool::new(false),
            sources: Mutex::default(),
            topics: Mutex::default(),
        }))
    }

    pub fn is_watched(&self) -> bool {
        self.0.watched.load(Ordering::Relaxed)
    }

    fn set_watched(&self) {
        self.0.watched.store(true, Ordering::Relaxed);
    }

    /// The counters of source `name`; a source registered again (a second run of the same
    /// source in one process) keeps counting where it was.
    pub fn source(&self, name: &str, topic: &str) -> Arc<SourceCounters> {
        let mut sources = lock(&self.0.sources);
        if let Some(entry) = sources.iter().find(|s| s.name == name) {
            entry.counters.set_state(RunState::Running);
            return Arc::clone(&entry.counters);
        }
        let counters = Arc::new(SourceCounters::default());
        sources.push(SourceEntry {
            name: name.to_string(),
            topic: topic.to_string(),
            counters: Arc::clone(&counters),
            rate: Mutex::new(Rate::new()),
        });
        counters
    }

    /// The status of `topic`, shared by everything in this process that touches it.
    pub fn topic(&self, topic: &str) -> Arc<TopicStatus> {
        Arc::clone(lock(&self.0.topics).entry(topic.to_string()).or_default())
    }

    /// Everything, as of now.
    pub fn snapshot(&self) -> Snapshot {
        let board = &self.0;
        let sources = lock(&board.sources)
            .iter()
            .map(|s| {
                let c = &s.counters;
                let records = c.records.load(Ordering::Relaxed);
                let (retries, problem) = c.trouble.snapshot();
                SourceSnapshot {
                    name: s.name.clone(),
                    topic: s.topic.clone(),
                    state: c.state(),
                    records,
                    bad_records: c.bad.load(Ordering::Relaxed),
                    bytes: c.bytes.load(Ordering::Relaxed),
                    skipped: c.skipped.load(Ordering::Relaxed),
                    records_per_second: lock(&s.rate).sample(records),
                    retries,
                    problem,
                }
            })
            .collect();
        let topics = lock(&board.topics)
            .iter()
            .map(|(name, t)| topic_snapshot(name, t))
            .collect();
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            command: board.command.clone(),
            started_at_unix: board.started_unix,
            uptime_seconds: board.started.elapsed().as_secs_f64(),
            sources,
            topics,
        }
    }
}

/// A panic while holding one of these locks leaves plain counters behind: still worth showing.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn topic_snapshot(name: &str, topic: &TopicStatus) -> TopicSnapshot {
    let (retries, problem) = topic.trouble.snapshot();
    let state = topic.state();
    let partitions: Vec<PartitionSnapshot> = state
        .partitions
        .iter()
        .map(|(&partition, p)| PartitionSnapshot {
            partition,
            committed: p.committed,
            latest: p.latest,
            lag: match (p.committed, p.latest) {
                (Some(c), Some(l)) => Some((l - c).max(0)),
                _ => None,
            },
            consumed: p.consumed,
        })
        .collect();
    let lag = partitions
        .iter()
        .map(|p| p.lag)
        .sum::<Option<i64>>()
        .filter(|_| !partitions.is_empty());
    TopicSnapshot {
        topic: name.to_string(),
        consumer: state.consumer,
        lag,
        batches: state.batches,
        rows: state.rows,
        bad_records: state.bad_records,
        files: state.files,
        last_batch: state.last_batch.map(|b| LastBatchSnapshot {
            batch: b.batch,
            records: b.records,
            rows: b.rows,
            bad_records: b.bad_records,
            files: b.files,
            duration_seconds: b.duration.as_secs_f64(),
            age_seconds: b.at.elapsed().as_secs_f64(),
        }),
        retries,
        problem,
        partitions,
    }
}

/// `GET /status`.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    pub command: String,
    pub started_at_unix: f64,
    pub uptime_seconds: f64,
    pub sources: Vec<SourceSnapshot>,
    pub topics: Vec<TopicSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceSnapshot {
    pub name: String,
    pub topic: String,
    pub state: RunState,
    pub records: u64,
    pub bad_records: u64,
    pub bytes: u64,
    pub skipped: u64,
    /// Since the previous reading of the status (at least a second apart).
    pub records_per_second: f64,
    /// Broker and API failures retried so far.
    pub retries: u64,
    /// The failure being retried now; `null` when all is well.
    pub problem: Option<ProblemSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProblemSnapshot {
    pub message: String,
    /// Seconds since it last happened.
    pub age_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicSnapshot {
    pub topic: String,
    /// `null` when this process only produces to the topic.
    pub consumer: Option<RunState>,
    /// Sum over partitions; `null` until both ends are known.
    pub lag: Option<i64>,
    pub batches: u64,
    pub rows: u64,
    pub bad_records: u64,
    pub files: u64,
    pub last_batch: Option<LastBatchSnapshot>,
    /// Fetch and write failures retried so far.
    pub retries: u64,
    /// The failure being retried now (or the one that failed the topic); `null` when all is
    /// well.
    pub problem: Option<ProblemSnapshot>,
    pub partitions: Vec<PartitionSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastBatchSnapshot {
    pub batch: u64,
    pub records: u64,
    pub rows: u64,
    pub bad_records: u64,
    pub files: u64,
    pub duration_seconds: f64,
    /// Seconds since it was committed: a number that keeps growing means a stalled consumer.
    pub age_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionSnapshot {
    pub partition: i32,
    /// The next offset the consumer reads (Kafka's meaning of a committed offset).
    pub committed: Option<i64>,
    /// The partition's end offset as last seen.
    pub latest: Option<i64>,
    pub lag: Option<i64>,
    pub consumed: u64,
}

/// Records per second between two readings of a counter.
#[derive(Debug)]
pub struct Rate {
    at: Instant,
    records: u64,
    rate: f64,
}

impl Rate {
    /// Readings closer together than this keep the previous rate, so that several readers
    /// (a page and a scraper) do not turn it into noise.
    const MIN_INTERVAL: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        Self {
            at: Instant::now(),
            records: 0,
            rate: 0.0,
        }
    }

    /// The rate since the previous update, whatever the interval.
    pub fn update(&mut self, records: u64) -> f64 {
        let secs = self.at.elapsed().as_secs_f64().max(1e-9);
        self.rate = records.saturating_sub(self.records) as f64 / secs;
        self.at = Instant::now();
        self.records = records;
        self.rate
    }

    /// Like [`Rate::update`], but at most once per [`Rate::MIN_INTERVAL`].
    fn sample(&mut self, records: u64) -> f64 {
        if self.at.elapsed() >= Self::MIN_INTERVAL {
            self.update(records);
        }
        self.rate
    }
}

impl Default for Rate {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_needs_both_ends_and_never_goes_negative() {
        let status = Status::new("consume");
        let topic = status.topic("metrics");
        topic.set_committed(&BTreeMap::from([(0, 5), (1, 0)]));
        let s = status.snapshot();
        assert_eq!(s.topics[0].partitions[0].lag, None);
        assert_eq!(s.topics[0].lag, None);

        topic.observe_latest_all(&BTreeMap::from([(0, 12), (1, 3)]));
        topic.observe_latest(0, 9); // an older view arriving late does not move it back
        let s = status.snapshot();
        assert_eq!(s.topics[0].partitions[0].latest, Some(12));
        assert_eq!(s.topics[0].lag, Some(7 + 3));

        let ranges = BTreeMap::from([(0, (5, 12)), (1, (0, 3))]);
        topic.record_batch(&BatchReport {
            batch: 0,
            ranges: &ranges,
            rows: 9,
            bad_records: 1,
            files: 2,
            duration: Duration::from_millis(20),
        });
        let s = status.snapshot();
        let t = &s.topics[0];
        assert_eq!((t.lag, t.batches, t.rows, t.files), (Some(0), 1, 9, 2));
        assert_eq!(t.partitions[0].committed, Some(12));
        assert_eq!(t.partitions[0].consumed, 7);
        assert_eq!(t.last_batch.as_ref().unwrap().records, 10);
    }

    #[test]
    fn trouble_shows_until_the_next_success() {
        let status = Status::new("consume");
        let topic = status.topic("metrics");
        topic.trouble.failed("disk full");
        topic.trouble.failed("disk full");
        let t = &status.snapshot().topics[0];
        assert_eq!(t.retries, 2);
        assert_eq!(t.problem.as_ref().unwrap().message, "disk full");
        topic.trouble.recovered();
        let t = &status.snapshot().topics[0];
        assert_eq!((t.retries, t.problem.is_none()), (2, true));
    }

    #[test]
    fn a_source_registered_twice_keeps_its_counters() {
        let status = Status::new("run");
        let a = status.source("metrics", "metrics");
        a.records.fetch_add(10, Ordering::Relaxed);
        a.set_state(RunState::Finished);
        let b = status.source("metrics", "metrics");
        assert_eq!(b.records.load(Ordering::Relaxed), 10);
        assert_eq!(b.state(), RunState::Running);
        assert_eq!(status.snapshot().sources.len(), 1);
    }
}
