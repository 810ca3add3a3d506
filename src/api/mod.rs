//! `serve-api`: the stand-in for the plant's machines. Streams every JSON file of the data dir as
//! NDJSON at `GET /stream_data_{file stem}`, in `time` order, with a delay between records.
//! It knows nothing of Kafka; `produce` reads it like any machine gateway.

mod data;
mod scan;
mod server;

pub use data::{DataError, Dataset, Symlinks, load_dir, load_dir_with};
pub use server::{Catalog, serve};

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::failure::Classify;

use crate::http::Limits;
use crate::settings::ApiSettings;

/// Why serve-api cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(
        "cannot listen on {addr}: {source}; is another process using it? choose another with --bind or api.bind"
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the data dir failed unexpectedly: {0}")]
    Loader(#[source] tokio::task::JoinError),
}

impl Classify for ApiError {
    /// A data dir that cannot be served is the user's to fix; a busy port is not a usage
    /// error of the command line.
    fn is_usage(&self) -> bool {
        matches!(self, Self::Data(_))
    }
}

/// Loads the data dir, binds, and serves until `shutdown` is cancelled.
pub async fn run(settings: &ApiSettings, shutdown: CancellationToken) -> Result<(), ApiError> {
    let (listener, catalog) = bind(settings).await?;
    serve(listener, catalog, shutdown).await;
    Ok(())
}

/// Loads the data dir and binds, without serving yet: the caller learns the address first.
pub async fn bind(settings: &ApiSettings) -> Result<(tokio::net::TcpListener, Catalog), ApiError> {
    let dir = settings.data_dir.clone();
    let symlinks = if settings.follow_symlinks {
        Symlinks::Follow
    } else {
        Symlinks::Inside
    };
    // Parsing a large file is CPU work: keep it off the async workers.
    let datasets = tokio::task::spawn_blocking(move || load_dir_with(&dir, symlinks))
        .await
        .map_err(ApiError::Loader)??;
    let addr = settings.bind;
    let listen = |source| ApiError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
    let catalog = Catalog::new(datasets, settings.delay.duration()).with_limits(limits(settings));
    let addr = listener.local_addr().map_err(listen)?;
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
