//! A bound on the ingest listener's open connections: past `ingest.max_connections`, a new
//! connection is closed at once and counted, so that idle or slow clients cannot exhaust the
//! process's file descriptors.

use std::future::{Ready, ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pipeline::IngestStats;

/// An `axum_server` acceptor that admits at most a fixed number of open connections.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimit {
    permits: Arc<Semaphore>,
    stats: Arc<IngestStats>,
}

impl ConnectionLimit {
    /// Admits `max` connections at once; refusals count in `stats.connections_refused`.
    pub(crate) fn new(max: usize, stats: Arc<IngestStats>) -> ConnectionLimit {
        ConnectionLimit { permits: Arc::new(Semaphore::new(max)), stats }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for ConnectionLimit {
    type Stream = Limited<I>;
    type Service = S;
    type Future = Ready<io::Result<(Limited<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => ready(Ok((Limited { stream, _permit: permit }, service))),
            Err(_) => {
                // Dropping the stream closes the connection; the error is axum-server's cue
                // to go on accepting.
                if self.stats.connections_refused.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("ingest.max_connections reached: refusing new connections");
                }
                ready(Err(io::Error::other("ingest.max_connections reached")))
            }
        }
    }
}

/// A connection holding one of the limit's permits until it is dropped.
#[derive(Debug)]
pub(crate) struct Limited<I> {
    stream: I,
    _permit: OwnedSemaphorePermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Limited<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Limited<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
