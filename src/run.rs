//! `run`: the whole pipeline in one process with one config: the API (unless `api.enabled` is
//! off), the topics, every producer source and every consumer topic into Parquet.
//!
//! As a daemon it runs until SIGINT/SIGTERM; with `--until-drained` it stops once every source
//! stream has ended and everything produced is committed to Parquet: the producers finish, the
//! running consumers finish their batch, and one last `available-now` pass drains the rest.
//!
//! With the Delta sink and `consumer.compact_interval` set, a task compacts every table each
//! interval meanwhile; its failures are logged and never stop the pipeline.
//!
//! A failure stops the whole run at once: when a producer source or a consumer topic fails,
//! the producers stop reading and write what they read, the consumers commit the batch they
//! hold, the API stops, and the run exits with that first failure. What the stop makes fail
//! afterwards is logged, not reported in its place.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::AdminError;
use crate::api::ApiError;
use crate::consume::{self, ConsumeError, ConsumeOptions, PartitionSelection, TopicSummary};
use crate::failure::Classify;
use crate::kafka::KafkaError;
use crate::produce::{self, ProduceError, ProduceOptions, SourceSummary};
use crate::settings::{Settings, Trigger};
use crate::status::Status;

pub struct RunOptions {
    pub until_drained: bool,
}

/// Why `run` failed: the first part that failed, with its own error as the source.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the built-in API ended unexpectedly: {0}")]
    ApiTask(#[source] tokio::task::JoinError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic}: {source}")]
    CreateTopic {
        topic: String,
        #[source]
        source: Box<AdminError>,
    },
    #[error(transparent)]
    Produce(Box<ProduceError>),
    #[error(transparent)]
    Consume(Box<ConsumeError>),
    #[error(
        "run streams continuously, so its trigger must be a period (e.g. 1s) or 0s, not \
         available-now (which would stop the consumers, and with them the producers, at once); \
         use `run --until-drained` to stop once the streams end, or `consume --trigger \
         available-now` for a one-off pass"
    )]
    AvailableNow,
}

// Boxed: a run's error is rare and passed up a few levels; the others stay small.
impl From<ProduceError> for RunError {
    fn from(error: ProduceError) -> Self {
        Self::Produce(Box::new(error))
    }
}

impl From<ConsumeError> for RunError {
    fn from(error: ConsumeError) -> Self {
        Self::Consume(Box::new(error))
    }
}

impl Classify for RunError {
    fn is_usage(&self) -> bool {
        match self {
            Self::Api(error) => error.is_usage(),
            Self::ApiTask(_) => false,
            Self::Kafka(error) => error.is_usage(),
            Self::CreateTopic { source, .. } => source.is_usage(),
            Self::Produce(error) => error.is_usage(),
            Self::Consume(error) => error.is_usage(),
            Self::AvailableNow => true,
        }
    }
}

pub async fn run(
    settings: &Settings,
    options: &RunOptions,
    status: &Status,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    if settings.consumer.trigger() == Trigger::AvailableNow {
        return Err(RunError::AvailableNow);
    }
    let started = Instant::now();
    let mut settings = settings.clone();
    // The API first, so the producers have something to read.
    let api = BuiltInApi::start(&mut settings, &shutdown).await?;
    create_consumed_topics(&settings).await?;

    let compacting = ScheduledCompaction::start(&settings, &shutdown);
    let mut outcome = run_pipeline(&settings, status, options.until_drained, &shutdown).await;
    if options.until_drained && outcome.may_drain() && !shutdown.is_cancelled() {
        outcome.consumers_ended(drain(&settings, status, &shutdown).await);
    }
    if let Some(compacting) = compacting {
        compacting.stop().await;
    }
    for summary in TopicSummary::combine(std::mem::take(&mut outcome.consumed)) {
        println!("{summary}");
    }
    if let Some(api) = api
        && let Err(error) = api.stop().await
    {
        outcome.failed("the built-in API", error);
    }
    outcome.into_result()?;
    println!(
        "pipeline finished in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// How the producers and consumers ended.
#[derive(Default)]
struct Outcome {
    /// The first failure, the one that stopped the run.
    error: Option<RunError>,
    /// Every source's stream ended before anything stopped the producers.
    streams_ended: bool,
    /// Every consumer pass's per-topic summaries.
    consumed: Vec<TopicSummary>,
}

impl Outcome {
    /// `stopped`: the producers had been told to stop before they ended.
    fn producers_ended(&mut self, ended: Result<Vec<SourceSummary>, ProduceError>, stopped: bool) {
        match ended {
            Ok(_) => self.streams_ended = !stopped,
            Err(error) => self.failed("a producer source", error.into()),
        }
    }

    fn consumers_ended(&mut self, ended: Result<Vec<TopicSummary>, ConsumeError>) {
        match ended {
            Ok(summaries) => self.consumed.extend(summaries),
            Err(error) => self.failed("a consumer topic", error.into()),
        }
    }

    /// Keeps the first failure, to report; a later one is the stop's echo or a consequence,
    /// logged only. (The failing part logs its error itself, and `main` prints the first.)
    fn failed(&mut self, what: &str, error: RunError) {
        if self.error.is_some() {
            tracing::warn!(%error, "{what} also failed while the run stopped");
        } else {
            tracing::warn!(
                "{what} failed: stopping the run once the others have written and committed what they hold"
            );
            self.error = Some(error);
        }
    }

    /// Whether a last pass may take what the consumers have not: everything was produced and
    /// nothing failed.
    fn may_drain(&self) -> bool {
        self.streams_ended && self.error.is_none()
    }

    fn into_result(self) -> Result<(), RunError> {
        self.error.map_or(Ok(()), Err)
    }
}

/// Produces every source and consumes every topic until the streams end (`until_drained`),
/// a shutdown, or the first failure, which stops the other side too.
async fn run_pipeline(
    settings: &Settings,
    status: &Status,
    until_drained: bool,
    shutdown: &CancellationToken,
) -> Outcome {
    let stop = shutdown.child_token();
    let mut outcome = Outcome::default();
    let (every_source, every_topic) = (produce_every_source(), consume_every_topic(settings));
    let producing = produce::run(settings, &every_source, status, stop.clone());
    let consuming = consume::run(settings, &every_topic, status, stop.clone());
    tokio::pin!(producing, consuming);
    tokio::select! {
        produced = &mut producing => {
            outcome.producers_ended(produced, stop.is_cancelled());
            if until_drained || outcome.error.is_some() {
                stop.cancel(); // the consumers finish their batch
            }
            // A daemon keeps consuming what arrives until it is told to stop or fails.
            outcome.consumers_ended(consuming.await);
        }
        consumed = &mut consuming => {
            // Consumers end on their own only when one fails (or on an `available-now`
            // trigger): the producers stop too, rather than fill topics nobody reads.
            outcome.consumers_ended(consumed);
            stop.cancel();
            outcome.producers_ended(producing.await, true);
        }
    }
    outcome
}

/// One last `available-now` pass over every topic, for what arrived after the running
/// consumers' last batch.
async fn drain(
    settings: &Settings,
    status: &Status,
    shutdown: &CancellationToken,
) -> Result<Vec<TopicSummary>, ConsumeError> {
    let mut settings = settings.clone();
    settings.consumer.trigger = Trigger::AvailableNow;
    settings.consumer.max_offsets_per_trigger = 0;
    consume::run(
        &settings,
        &consume_every_topic(&settings),
        status,
        shutdown.clone(),
    )
    .await
}

/// Every source, topics created if missing, resumed (so a restart neither repeats nor skips).
fn produce_every_source() -> ProduceOptions {
    ProduceOptions {
        sources: Vec::new(),
        all: true,
        create_topics: true,
        resume: true,
    }
}

/// Every topic with a schema, into the configured sink (`consumer.sink`).
fn consume_every_topic(settings: &Settings) -> ConsumeOptions {
    ConsumeOptions {
        sink: settings.consumer.sink,
        topics: None,
        partitions: PartitionSelection::All,
        print_summaries: false, // one line per topic for both passes, at the end
        overwrite: false,
    }
}

/// `consumer.compact_interval` with the Delta sink: `compact` on every table each interval,
/// beside the pipeline; its failures are logged, never the run's (see [`crate::compact::every`]).
struct ScheduledCompaction {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ScheduledCompaction {
    fn start(settings: &Settings, shutdown: &CancellationToken) -> Option<Self> {
        let every = settings.consumer.compact_interval.0?;
        if settings.consumer.sink != crate::settings::SinkKind::Delta {
            tracing::warn!(sink = %settings.consumer.sink, "consumer.compact_interval applies to the delta sink only; not compacting");
            return None;
        }
        let stop = shutdown.child_token();
        let task = tokio::spawn(crate::compact::every(settings.clone(), every, stop.clone()));
        Some(Self { stop, task })
    }

    /// Stops after the table being compacted, if any, is done.
    async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "scheduled compaction ended unexpectedly");
        }
    }
}

/// The API served from within `run`.
struct BuiltInApi {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl BuiltInApi {
    /// Starts the API unless `api.enabled` is off, and points the producers at the address it
    /// is bound to.
    async fn start(
        settings: &mut Settings,
        shutdown: &CancellationToken,
    ) -> Result<Option<Self>, RunError> {
        if !settings.api.enabled {
            return Ok(None);
        }
        let (listener, catalog) = crate::api::bind(&settings.api).await?;
        let bound = listener.local_addr().map_err(|source| ApiError::Listen {
            addr: settings.api.bind,
            source,
        })?;
        settings.producer.api_url = format!("http://{}", reachable(bound));
        let stop = shutdown.child_token();
        let task = tokio::spawn(crate::api::serve(listener, catalog, stop.clone()));
        Ok(Some(Self { stop, task }))
    }

    async fn stop(self) -> Result<(), RunError> {
        self.stop.cancel();
        self.task.await.map_err(RunError::ApiTask)
    }
}

/// Where a client on this host reaches a listener bound to `bound`: the address itself, or
/// for an unspecified one (`0.0.0.0`, `[::]`) the loopback of the same family.
fn reachable(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// Producers create their missing topics themselves; consumers need theirs to exist first.
async fn create_consumed_topics(settings: &Settings) -> Result<(), RunError> {
    let kafka = crate::kafka::KafkaClient::connect(&settings.kafka).await?;
    let admin = &settings.admin;
    for topic in settings.consumer.topics.keys() {
        crate::admin::create_topic(
            &kafka,
            topic,
            admin.partitions,
            admin.replication_factor,
            true,
        )
        .await
        .map_err(|source| RunError::CreateTopic {
            topic: topic.clone(),
            source: Box::new(source),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_reach_the_api_where_it_is_bound() {
        let reach = |bound: &str| reachable(bound.parse().unwrap()).to_string();
        assert_eq!(reach("0.0.0.0:5000"), "127.0.0.1:5000");
        assert_eq!(reach("[::]:5000"), "[::1]:5000");
        assert_eq!(reach("10.0.0.5:5000"), "10.0.0.5:5000");
        assert_eq!(reach("127.0.0.2:41000"), "127.0.0.2:41000");
        assert_eq!(reach("[::1]:5000"), "[::1]:5000");
        assert_eq!(reach("[fe80::1]:80"), "[fe80::1]:80");
    }
}
