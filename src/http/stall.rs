//! Cutting a response the client stopped reading: a connection's socket, wrapped so that a
//! write which cannot make progress for the idle timeout fails instead of waiting forever.
//!
//! Why writes only: the request head is hyper's (`header_read_timeout`), and while a response
//! streams hyper keeps a read pending to notice a hang-up, so a pending read is no sign of a
//! stuck client. A pending write is: the client's receive window is full because it does not
//! read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::{Instant, Sleep};

/// Why a connection was closed: its client did not read for the whole idle timeout.
#[derive(Debug, thiserror::Error)]
#[error(
    "the client read nothing of the response for {limit:?}: closing the connection (api.idle_timeout for serve-api)"
)]
pub struct StalledWrite {
    pub limit: Duration,
}

/// An I/O object whose writes fail with [`io::ErrorKind::TimedOut`] (source [`StalledWrite`])
/// once they have been pending, without any byte accepted, for `limit`.
pub struct StallGuard<T> {
    inner: T,
    limit: Duration,
    /// Armed at the first pending write, disarmed by any progress; created on first need.
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<T> StallGuard<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            deadline: None,
            armed: false,
        }
    }

    /// Passes `poll` through, arming the deadline when it is pending and failing once the
    /// deadline has passed; any completed write (or error) disarms it.
    fn watch<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        if !self.armed {
            let at = Instant::now() + self.limit;
            match &mut self.deadline {
                Some(deadline) => deadline.as_mut().reset(at),
                None => self.deadline = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            self.armed = true;
        }
        let deadline = self.deadline.as_mut().expect("armed above");
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                StalledWrite { limit: self.limit },
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Read + Unpin> Read for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}
