//! `serve-api`: the stand-in for the plant's machines. Streams every JSON file of the data dir as
//! NDJSON at `GET /stream_data_{file stem}`, in `time` order, with a delay between records.
//! It knows nothing of Kafka; `produce` reads it like any machine gateway.

mod data;
mod server;

pub use data::{DataError, Dataset, Symlinks, load_dir, load_dir_with};
pub use server::{Catalog, serve};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::http::Limits;
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
    let symlinks = if settings.follow_symlinks {
        Symlinks::Follow
    } else {
        Symlinks::Inside
    };
    // Parsing a large file is CPU work: keep it off the async workers.
    let datasets = tokio::task::spawn_blocking(move || load_dir_with(&dir, symlinks))
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
    let catalog = Catalog::new(datasets, settings.delay.duration()).with_limits(limits(settings));
    let addr = listener.local_addr()?;
    tracing::info!(%addr, endpoints = %catalog.paths().join(" "), "serving");
    Ok((listener, catalog))
}

/// The connection limits `settings` ask for.
fn limits(settings: &ApiSettings) -> Limits {
    Limits {
        max_connections: settings.max_connections,
        max_connections_per_client: settings.max_connections_per_client,
        header_timeout: settings.header_timeout(),
        idle_timeout: settings.idle_timeout(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status server, which has no settings of its own, uses [`Limits::default`]: it must
    /// be what serve-api gets from its built-in settings.
    #[test]
    fn default_limits_are_the_default_settings() {
        assert_eq!(limits(&ApiSettings::default()), Limits::default());
    }
}
