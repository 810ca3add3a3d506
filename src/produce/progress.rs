//! Progress while producing: a live line per source on a terminal, periodic log lines
//! otherwise (so logs collected by a service manager stay readable).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::status::{Rate, SourceCounters};

/// How often the terminal line refreshes.
const TICK: Duration = Duration::from_millis(250);

/// Reports on `sources` until `done` is cancelled.
pub fn spawn(
    sources: Vec<(String, Arc<SourceCounters>)>,
    log_interval: Duration,
    done: CancellationToken,
) -> JoinHandle<()> {
    if std::io::stderr().is_terminal() {
        tokio::spawn(live(sources, done))
    } else {
        tokio::spawn(logged(sources, log_interval, done))
    }
}

async fn live(sources: Vec<(String, Arc<SourceCounters>)>, done: CancellationToken) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix}: {msg}").expect("valid template");
    let bars: Vec<ProgressBar> = sources
        .iter()
        .map(|(name, _)| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(name.clone());
            bar
        })
        .collect();
    let mut rates: Vec<Rate> = sources.iter().map(|_| Rate::new()).collect();
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = ticker.tick() => {}
        }
        for ((bar, (_, stats)), rate) in bars.iter().zip(&sources).zip(&mut rates) {
            let records = stats.records.load(Ordering::Relaxed);
            bar.set_message(format!(
                "{records} records, {:.0} records/s, {} bad",
                rate.update(records),
                stats.bad.load(Ordering::Relaxed)
            ));
            bar.tick();
        }
    }
    for bar in bars {
        bar.finish_and_clear();
    }
}

async fn logged(
    sources: Vec<(String, Arc<SourceCounters>)>,
    interval: Duration,
    done: CancellationToken,
) {
    let mut rates: Vec<Rate> = sources.iter().map(|_| Rate::new()).collect();
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = ticker.tick() => {}
        }
        for ((name, stats), rate) in sources.iter().zip(&mut rates) {
            let records = stats.records.load(Ordering::Relaxed);
            tracing::info!(
                source = %name,
                records,
                records_per_sec = rate.update(records).round(),
                bad = stats.bad.load(Ordering::Relaxed),
                "progress"
            );
        }
    }
}
