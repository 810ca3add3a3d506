//! `run`: the whole pipeline in one process with one config: the API (unless `api.enabled` is
//! off), the topics, every producer source and every consumer topic into Parquet.
//!
//! As a daemon it runs until SIGINT/SIGTERM; with `--until-drained` it stops once every source
//! stream has ended and everything produced is committed to Parquet: the producers finish, the
//! running consumers finish their batch, and one last `available-now` pass drains the rest.

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::consume::{self, ConsumeOptions, PartitionSelection, SinkKind, TopicSummary};
use crate::produce::{self, ProduceOptions};
use crate::settings::{Settings, Trigger};
use crate::status::Status;

pub struct RunOptions {
    pub until_drained: bool,
}

pub async fn run(
    settings: &Settings,
    options: &RunOptions,
    status: &Status,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    let started = std::time::Instant::now();

    // The API first, so the producers have something to read.
    let api_stop = shutdown.child_token();
    let api = start_api(&mut settings, api_stop.clone()).await?;
    create_consumed_topics(&settings).await?;

    let consumers_stop = shutdown.child_token();
    let parquet = ConsumeOptions {
        sink: SinkKind::Parquet,
        topics: None,
        partitions: PartitionSelection::All,
        print_summaries: false, // one line per topic for both phases, below
        overwrite: false,
    };
    let mut consumers = tokio::spawn({
        let (settings, parquet, stop) = (settings.clone(), parquet.clone(), consumers_stop.clone());
        let status = status.clone();
        async move { consume::run(&settings, &parquet, &status, stop).await }
    });
    let produce_options = ProduceOptions {
        sources: Vec::new(),
        all: true,
        create_topics: true,
        resume: true,
    };
    // Consumers end on their own only when one fails; then the producers stop too, rather
    // than fill topics nobody reads.
    let producers_stop = shutdown.child_token();
    let producing = produce::run(&settings, &produce_options, status, producers_stop.clone());
    tokio::pin!(producing);
    let mut consumers_ended = None;
    let produced = tokio::select! {
        produced = &mut producing => produced,
        ended = &mut consumers => {
            consumers_ended = Some(ended);
            producers_stop.cancel();
            producing.await
        }
    };
    if consumers_ended.is_none() && produced.is_ok() && !options.until_drained {
        // A daemon keeps consuming what arrives until it is told to stop.
        tokio::select! {
            _ = shutdown.cancelled() => {}
            ended = &mut consumers => consumers_ended = Some(ended),
        }
    }
    let consumer_failed_first = consumers_ended.is_some();
    let drain = options.until_drained
        && produced.is_ok()
        && !consumer_failed_first
        && !shutdown.is_cancelled();

    // Everything is in Kafka (or we are stopping): the running consumers finish their batch.
    consumers_stop.cancel();
    let ended = match consumers_ended {
        Some(ended) => ended,
        None => consumers.await,
    };
    let mut consumed = Vec::new();
    let mut consumer_error: Option<anyhow::Error> = None;
    match ended.context("consumer task panicked")? {
        Ok(summaries) => consumed.extend(summaries),
        Err(error) => consumer_error = Some(error.into()),
    }
    if drain && consumer_error.is_none() {
        // One last pass takes whatever arrived after the consumers' last batch.
        let mut settings = settings.clone();
        settings.consumer.trigger = Trigger::AvailableNow;
        settings.consumer.max_offsets_per_trigger = 0;
        match consume::run(&settings, &parquet, status, shutdown.clone()).await {
            Ok(summaries) => consumed.extend(summaries),
            Err(error) => consumer_error = Some(error.into()),
        }
    }
    for summary in TopicSummary::combine(consumed) {
        println!("{summary}");
    }
    api_stop.cancel();
    if let Some(api) = api {
        api.await.context("API task panicked")?;
    }
    // The error that stopped the pipeline first is the one to report.
    match (consumer_error, produced) {
        (Some(error), _) if consumer_failed_first => return Err(error),
        (_, Err(error)) => return Err(error.into()),
        (Some(error), Ok(_)) => return Err(error),
        (None, Ok(_)) => {}
    }
    println!(
        "pipeline finished in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts the built-in API unless `api.enabled` is off, and points the producers at it.
async fn start_api(
    settings: &mut Settings,
    stop: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if !settings.api.enabled {
        return Ok(None);
    }
    let (listener, catalog) = crate::api::bind(&settings.api).await?;
    let addr = listener.local_addr()?;
    // Our own producers reach it on loopback whatever address it is bound to.
    settings.producer.api_url = format!("http://127.0.0.1:{}", addr.port());
    Ok(Some(tokio::spawn(crate::api::serve(
        listener, catalog, stop,
    ))))
}

/// Producers create their missing topics themselves; consumers need theirs to exist first.
async fn create_consumed_topics(settings: &Settings) -> anyhow::Result<()> {
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
        .with_context(|| format!("creating topic {topic}"))?;
    }
    Ok(())
}
