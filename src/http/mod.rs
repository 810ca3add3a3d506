//! The HTTP plumbing shared by the API (`serve-api`) and the status server: an accept loop
//! with graceful shutdown, the [`Limits`] that keep a server answering whatever its clients
//! do, and small response builders. Routing stays with each server.
//!
//! What one client can hold, and for how long:
//! * connections: at most `max_connections_per_client` of the server's `max_connections`
//!   ([`clients`]); more are refused at once with a `503`. So is every new client while the
//!   whole cap is in use, rather than left waiting in the listen backlog ([`refuse`]).
//! * a connection without a complete request head: `header_timeout`, counted from connect and
//!   again from the end of each response. That is hyper's `header_read_timeout`, which (hyper
//!   1.12, `proto/h1/conn.rs`) is armed as soon as the connection waits for a request, not at
//!   its first byte: so it also closes a kept-alive connection left idle between requests.
//! * a response it does not read: `idle_timeout` ([`stall`]).
//! * a request head: hyper's read buffer (~400 KiB, then `431`) and 100 header fields.
//!   Request bodies are never read: after the response, hyper drains what already arrived
//!   and otherwise closes the connection.
//! * after shutdown begins: [`SHUTDOWN_GRACE`] to finish what it asked for; then the
//!   connection is closed, whatever it is waiting for.

mod clients;
mod refuse;
mod stall;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::excerpt::Excerpt;

use clients::{Clients, Slot};
use refuse::{Reason, Refusals};
use stall::StallGuard;

/// How much of a server its clients may hold. The default is serve-api's built-in `api.*`
/// values; the status server always uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once. Each costs one small task; the cap stops a runaway client
    /// from exhausting file descriptors. Further clients are answered `503` at once, by at
    /// most [`refuse::RESERVE`] short refusals at a time (beyond those, closed unanswered):
    /// the server holds at most that many descriptors more than this cap.
    pub max_connections: usize,
    /// Connections one client (an IPv4 address or an IPv6 /64) may hold at once.
    pub max_connections_per_client: usize,
    /// How long a connection may go without a complete request head, from connect and from
    /// the end of each response.
    pub header_timeout: Duration,
    /// How long a response may wait on a client that reads none of it.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    /// 4,096 connections, 256 per client: one client (or one buggy loop) takes a sixteenth at
    /// most. 10 s for a request head: a real client sends it in one packet, and 10 s is what
    /// an idle kept-alive connection may cost. 300 s for a stuck response: above the
    /// producer's `retry_deadline` (120 s), during which it stops reading while the broker is
    /// away, so our own producer is never cut.
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_client: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// How long open connections get to close after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A response body that may fail mid-way (a stream cut by shutdown ends as an error, so the
/// client sees a truncated response rather than a clean end).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// What every connection of one server shares.
#[derive(Clone)]
struct Shared<R> {
    route: R,
    http: Arc<http1::Builder>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
}

/// What a live connection holds until it closes: its place under the cap and its client's.
struct Held {
    _permit: OwnedSemaphorePermit,
    _slot: Slot,
}

/// Serves HTTP/1 on `listener`, answering each request with `route` within `limits`, until
/// `shutdown` is cancelled; then stops accepting, asks open connections to finish, closes
/// those still open after a short grace period, and returns once every one is closed.
pub async fn serve<R>(listener: TcpListener, route: R, limits: Limits, shutdown: CancellationToken)
where
    R: Fn(&Request<Incoming>) -> Response<Body> + Clone + Send + Sync + 'static,
{
    Server::new(route, limits, shutdown, SHUTDOWN_GRACE)
        .run(listener)
        .await;
}

/// One server's accept loop and everything it keeps track of.
struct Server<R> {
    shared: Shared<R>,
    max_connections: usize,
    /// One per connection served; the accept loop never waits for one (see [`Refusals`]).
    permits: Arc<Semaphore>,
    clients: Clients,
    refusals: Refusals,
    /// The connections and refusals under way.
    tasks: TaskTracker,
    /// Cancelled when the grace period is over: every task still under way ends at once.
    abort: CancellationToken,
    grace: Duration,
}

impl<R> Server<R>
where
    R: Fn(&Request<Incoming>) -> Response<Body> + Clone + Send + Sync + 'static,
{
    fn new(route: R, limits: Limits, shutdown: CancellationToken, grace: Duration) -> Self {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        Self {
            shared: Shared {
                route,
                http: Arc::new(http),
                idle_timeout: limits.idle_timeout,
                shutdown,
            },
            max_connections: limits.max_connections,
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            clients: Clients::new(limits.max_connections_per_client),
            refusals: Refusals::new(refuse::RESERVE),
            tasks: TaskTracker::new(),
            abort: CancellationToken::new(),
            grace,
        }
    }

    /// Accepts until shutdown, then closes the listener (so new clients are refused by the
    /// kernel rather than left in its backlog) and waits for the connections to end.
    async fn run(mut self, listener: TcpListener) {
        let shutdown = self.shared.shutdown.clone();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = accept(&listener) => accepted,
            };
            self.admit(stream, peer);
        }
        drop(listener);
        self.close().await;
    }

    /// Serves `stream` if its client is within its share and the server has a place left;
    /// otherwise refuses it. Never waits.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let slot = match self.clients.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => return self.refuse(stream, Reason::OverShare(refused)),
        };
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let max_connections = self.max_connections;
            return self.refuse(stream, Reason::Full { max_connections });
        };
        let held = Held {
            _permit: permit,
            _slot: slot,
        };
        let connection = serve_connection(self.shared.clone(), stream, peer, held);
        self.spawn(connection);
    }

    fn refuse(&mut self, stream: TcpStream, reason: Reason) {
        if let Some(refusal) = self.refusals.refuse(stream, reason) {
            self.spawn(refusal);
        }
    }

    /// Runs `task` until it ends or the grace period is over, whichever comes first. Ending
    /// it drops what it holds: its socket (so the connection closes) and its [`Held`] places.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let abort = self.abort.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                biased;
                _ = abort.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Waits the grace period for the connections to finish, then ends those still open.
    async fn close(self) {
        self.tasks.close();
        if tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.tasks.len(),
                "connections still open {:?} after shutdown began; closing them",
                self.grace
            );
            self.abort.cancel();
            self.tasks.wait().await;
        }
    }
}

/// The next connection. Accept errors (out of descriptors, a reset during the handshake) are
/// not fatal for the server: logged, and retried shortly.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one connection until the client closes it, it outstays a limit, or shutdown.
async fn serve_connection<R>(shared: Shared<R>, stream: TcpStream, peer: SocketAddr, held: Held)
where
    R: Fn(&Request<Incoming>) -> Response<Body> + Clone + Send + Sync + 'static,
{
    let _held = held;
    let _ = stream.set_nodelay(true);
    let route = shared.route;
    let service = hyper::service::service_fn(move |req| {
        let response = route(&req);
        async move { Ok::<_, Infallible>(response) }
    });
    let io = StallGuard::new(TokioIo::new(stream), shared.idle_timeout);
    let conn = shared.http.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shared.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// `405` for anything but GET and HEAD, which is all our servers answer.
pub fn reject_method(req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return None;
    }
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({"error": format!("method {} is not allowed: use GET", Excerpt(req.method().as_str()))}),
    );
    response
        .headers_mut()
        .insert(ALLOW, "GET, HEAD".parse().expect("valid header"));
    Some(response)
}

pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    text_response(status, "application/json", json_body(body))
}

/// `body` as one line of JSON.
fn json_body(body: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string(body).expect("response bodies serialize");
    text.push('\n');
    text
}

/// A complete body of `content_type`, never cached (every answer is the state of the moment).
pub fn text_response(
    status: StatusCode,
    content_type: &'static str,
    text: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header(CACHE_CONTROL, "no-store")
        .body(
            Full::new(text.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BOUND: Duration = Duration::from_secs(10);

    /// A connection still open when the grace period ends (here: half a request head, with
    /// a header timeout far away) is closed, and what it held is released.
    #[tokio::test]
    async fn connections_left_after_the_grace_period_are_closed_and_release_their_share() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let limits = Limits {
            header_timeout: Duration::from_secs(300),
            ..Limits::default()
        };
        let route = |_: &Request<Incoming>| json_response(StatusCode::OK, &"ok");
        let server = Server::new(route, limits, shutdown.clone(), Duration::from_millis(200));
        let (clients, permits) = (server.clients.clone(), Arc::clone(&server.permits));
        let task = tokio::spawn(server.run(listener));

        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let client = half.local_addr().unwrap().ip();
        let served = async {
            while clients.holding(client) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(BOUND, served)
            .await
            .expect("never served");

        shutdown.cancel();
        tokio::time::timeout(BOUND, task)
            .await
            .expect("serve did not return")
            .unwrap();
        assert_eq!(
            clients.holding(client),
            0,
            "the client's share is still held"
        );
        assert_eq!(permits.available_permits(), limits.max_connections);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(BOUND, half.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0))), "not closed: {closed:?}");
    }
}
