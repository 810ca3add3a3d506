//! HTTP/1.1 spoken byte by byte over plain TCP, for the tests where a client misbehaves (sends
//! half a request, never reads) or comes from a chosen loopback address. Independent of hyper:
//! what these read is what went over the wire.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::TEST_TIMEOUT;

/// The usual client address. Linux routes all of 127.0.0.0/8 to loopback, and a server sees
/// each address as a different client: [`OTHER`] is a second client on the same machine.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
pub const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Client number `n`, another loopback address (for tests that need more clients than two).
pub fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, n)
}

/// A request head cut off before its final blank line: the server waits for the rest.
pub const HALF_A_REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n";

/// A TCP connection to `addr` from `from`; with `recv_buffer`, a receive buffer that small
/// (so a client that does not read stalls the server's writes early).
pub async fn connect_from(from: Ipv4Addr, addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    tokio::time::timeout(TEST_TIMEOUT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// A connection from `from` that sent `bytes` and waits.
pub async fn sent(from: Ipv4Addr, addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = connect_from(from, addr, None).await;
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Everything the server sends on `stream` until it closes it, or `None` if it did not close
/// it within `limit`. A reset counts as closing (what came before it is kept).
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read_all = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.ok()?;
    Some(received)
}

/// Reads from `stream` until what arrived ends with `end` (one response on a kept-alive
/// connection); panics if that takes longer than [`TEST_TIMEOUT`].
pub async fn read_until_end(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = [0; 4096];
        while !received.ends_with(end) {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the server closed the connection mid-response");
            received.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(TEST_TIMEOUT, read)
        .await
        .expect("no whole response in time");
    received
}

/// `GET /healthz` from `from` with `Connection: close`: the whole response as text, or `None`
/// if none came within `limit`.
pub async fn healthz_from(from: Ipv4Addr, addr: SocketAddr, limit: Duration) -> Option<String> {
    let request = async {
        let mut stream = sent(
            from,
            addr,
            b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        )
        .await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8(response).expect("a text response")
    };
    tokio::time::timeout(limit, request).await.ok()
}

/// What a real client does: connects from `from`, sends all of `request` at once, and reads
/// until the server closes the connection. Any error on the way (a reset while writing or
/// reading) is returned, as a client would report it, and so is taking longer than `limit`.
pub async fn exchange(
    from: Ipv4Addr,
    addr: SocketAddr,
    request: &[u8],
    limit: Duration,
) -> io::Result<Vec<u8>> {
    let talk = async {
        let mut stream = connect_from(from, addr, None).await;
        stream.write_all(request).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok(response)
    };
    tokio::time::timeout(limit, talk)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")))
}

/// `GET /healthz` from `from`, asked again while the server answers `503` (it is full, or the
/// client's share is not released yet), until it answers `200`; that answer. Panics on
/// anything else, or if no `200` comes within [`TEST_TIMEOUT`].
pub async fn healthz_until_ok(from: Ipv4Addr, addr: SocketAddr) -> String {
    let deadline = tokio::time::Instant::now() + TEST_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let answer = healthz_from(from, addr, left)
            .await
            .expect("/healthz got no answer in time");
        if answer.starts_with("HTTP/1.1 200") {
            return answer;
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz still answers 503 after {TEST_TIMEOUT:?}: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
