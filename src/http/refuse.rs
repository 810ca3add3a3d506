//! Turning away a connection the server will not serve: one over its client's share, or any
//! while every place of the server is taken. The client is told why, with a `503` and
//! `Retry-After`, rather than left in the listen backlog with no answer and no timeout.
//!
//! A refusal is a small task of its own: it writes the answer, ends its side of the
//! connection, and then reads and drops what the client sends until it closes too. A real
//! client sends its request as soon as it is connected; closing a socket with that request
//! unread makes the kernel send a reset instead of a close, and a client that gets one reports
//! "connection reset" rather than the `503` it was sent. At most [`RESERVE`] refusals run at
//! once, each for at most [`LINGER`] and [`DRAIN_BYTES`], so refusing cannot exhaust
//! descriptors either: beyond the reserve a connection is closed at once, without an answer.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::clients::Refused;
use super::json_body;

/// Refusals under way at once, at most: each holds a descriptor.
pub const RESERVE: usize = 64;

/// How long a refusal may take, answer and draining together.
const LINGER: Duration = Duration::from_secs(1);

/// How much of what a refused client sends is read (and dropped) before closing anyway.
const DRAIN_BYTES: usize = 64 * 1024;

/// While the server stays full, how often that is logged as a warning.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Why a connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its client holds the most connections one client may.
    OverShare(Refused),
    /// Every connection the server takes is in use.
    Full { max_connections: usize },
}

/// Turns connections away for one server; owned by its accept loop.
#[derive(Debug)]
pub struct Refusals {
    reserve: Arc<Semaphore>,
    full: FullEpisode,
}

/// Refusals because the server is full, since the last warning about it: one warning per
/// [`FULL_WARNING_EVERY`] at most (a flood must not flood the log).
#[derive(Debug, Default)]
struct FullEpisode {
    last_warning: Option<Instant>,
    refused_since: u64,
}

impl Refusals {
    /// At most `reserve` refusals under way at once ([`RESERVE`] in servers).
    pub fn new(reserve: usize) -> Self {
        Self {
            reserve: Arc::new(Semaphore::new(reserve)),
            full: FullEpisode::default(),
        }
    }

    /// Logs the refusal of `stream` and returns the task that answers it, or `None` when
    /// [`RESERVE`] refusals are under way already: then `stream` is closed when dropped.
    pub fn refuse(
        &mut self,
        stream: TcpStream,
        reason: Reason,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        self.log(reason);
        let Ok(permit) = Arc::clone(&self.reserve).try_acquire_owned() else {
            tracing::debug!(
                "{RESERVE} refusals are under way: closing a connection without an answer"
            );
            return None;
        };
        Some(answer(stream, response(reason), permit))
    }

    fn log(&mut self, reason: Reason) {
        match reason {
            Reason::OverShare(refused) => log_over_share(refused),
            Reason::Full { max_connections } => self.full.log(max_connections),
        }
    }
}

impl FullEpisode {
    fn log(&mut self, max_connections: usize) {
        self.refused_since += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < FULL_WARNING_EVERY)
        {
            tracing::debug!(max_connections, "refused a connection: the server is full");
            return;
        }
        let refused = std::mem::take(&mut self.refused_since);
        self.last_warning = Some(now);
        tracing::warn!(
            max_connections,
            refused,
            "refusing new connections: all {max_connections} connections the server takes are \
             in use ({refused} refused since the last warning); find the clients that hold them \
             (serve-api: raise api.max_connections if they are legitimate)"
        );
    }
}

/// One warning per episode of a client over its share (see [`Refused::first`]).
fn log_over_share(refused: Refused) {
    let Refused {
        client,
        max_per_client,
        first,
    } = refused;
    if first {
        tracing::warn!(
            %client,
            max_per_client,
            "refusing connections from {client}: it holds {max_per_client}, the most one client may, \
             until it closes some (serve-api: raise api.max_connections_per_client if it is legitimate)"
        );
    } else {
        tracing::debug!(%client, "refused a connection over the per-client maximum");
    }
}

/// The whole `503` for `reason`, closing the connection.
fn response(reason: Reason) -> String {
    let error = match reason {
        Reason::OverShare(Refused {
            client,
            max_per_client,
            ..
        }) => format!(
            "too many connections from {client}: at most {max_per_client} at once; close some and retry"
        ),
        Reason::Full { max_connections } => {
            format!("all {max_connections} connections the server takes are in use; retry shortly")
        }
    };
    let body = json_body(&serde_json::json!({ "error": error }));
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `response` on `stream`, ends our side, and drains the client's until it closes
/// its own, within [`LINGER`]; then closes. `_permit` is the refusal's place in the reserve.
async fn answer(mut stream: TcpStream, response: String, _permit: OwnedSemaphorePermit) {
    let said = tokio::time::timeout(LINGER, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        drain(&mut stream).await
    })
    .await;
    match said {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "a refused client's connection failed"),
        Err(_) => tracing::debug!("a refused client kept its connection open; closed it"),
    }
}

/// Reads and drops what the client sends until it closes its side, or [`DRAIN_BYTES`].
async fn drain(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0; 4096];
    let mut drained = 0;
    while drained < DRAIN_BYTES {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        drained += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::clients::Clients;
    use tokio::net::TcpListener;

    const BOUND: Duration = Duration::from_secs(10);

    /// A connected pair: (client side, server side).
    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    async fn read_all(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut got))
            .await
            .expect("not closed in time")?;
        Ok(got)
    }

    #[tokio::test]
    async fn beyond_the_reserve_a_connection_is_closed_without_an_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut refusals = Refusals::new(1);
        let full = Reason::Full { max_connections: 7 };
        let (mut first, first_server) = pair(&listener).await;
        let answering = refusals
            .refuse(first_server, full)
            .expect("within the reserve");
        let (mut second, second_server) = pair(&listener).await;
        assert!(refusals.refuse(second_server, full).is_none());
        assert_eq!(read_all(&mut second).await.unwrap(), b"");

        tokio::spawn(answering);
        let answer = String::from_utf8(read_all(&mut first).await.unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("all 7 connections"), "{answer}");
        drop(first);
        // The answer ends once the client closed: its place in the reserve is free again.
        let freed = async {
            while refusals.reserve.available_permits() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(BOUND, freed)
            .await
            .expect("never freed");
        let (mut third, third_server) = pair(&listener).await;
        let over = Clients::new(0)
            .admit("10.0.0.1".parse().unwrap())
            .unwrap_err();
        let answering = refusals.refuse(third_server, Reason::OverShare(over));
        tokio::spawn(answering.expect("the reserve is free again"));
        let answer = String::from_utf8(read_all(&mut third).await.unwrap()).unwrap();
        assert!(
            answer.contains("too many connections from 10.0.0.1"),
            "{answer}"
        );
    }
}
