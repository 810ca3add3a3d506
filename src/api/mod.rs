//! `serve-api`: the stand-in for the plant's machines. Streams every JSON file of the data dir as
//! NDJSON at `GET /stream_data_{file stem}`, in `time` order, with a delay between records.
//! It knows nothing of Kafka; `produce` reads it like any machine gateway.

mod data;
mod server;

pub use data::{DataError, Dataset, load_dir};
pub use server::{Catalog, serve};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::settings::ApiSettings;

/// Loads the data dir, binds, and serves until `shutdown` is cancelled.
pub async fn run(settings: &ApiSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (listener, catalog) = bind(settings).await?;
    serve(listener, catalog, shutdown).await;
    Ok(())
}

/// Loads the data dir and binds, without serving yet: the caller learns the address first.
pub async fn bind(settings: &ApiSettings) -> anyhow::Result<(tokio::net::TcpListener, Catalog)> {
    let dir = settings.data_dir.clone();
    // Parsing a large file is CPU work: keep it off the async workers.
    let datasets = tokio::task::spawn_blocking(move || load_dir(&dir))
        .await
        .context("loading the data dir panicked")??;
    let listener = tokio::net::TcpListener::bind(settings.bind)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another process using it? choose another with --bind or api.bind",
                settings.bind
            )
        })?;
    let catalog = Catalog::new(datasets, settings.delay.duration());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, endpoints = %catalog.paths().join(" "), "serving");
    Ok((listener, catalog))
}
