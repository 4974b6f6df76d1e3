//! The ingest listener's connections: a bound on how many are open (past
//! `ingest.max_connections`, a new connection is closed at once and counted, so that idle or
//! slow clients cannot exhaust the process's file descriptors), and a watch that counts the
//! connections closed while a request's headers were still arriving (hyper closes those at
//! `ingest.header_read_timeout` and reports it to no one).

use std::future::{Future, Ready, ready};
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
            Ok(permit) => {
                self.stats.connections_open.fetch_add(1, Ordering::Relaxed);
                let open = OpenConnection { stats: self.stats.clone(), _permit: permit };
                ready(Ok((Limited { stream, _open: open }, service)))
            }
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
    /// Declared after `stream`, so dropped after it: whatever the stream counts as it closes
    /// (a cut in the headers) is counted before `connections_open` goes down.
    _open: OpenConnection,
}

/// One open connection's permit and its share of `connections_open`.
#[derive(Debug)]
struct OpenConnection {
    stats: Arc<IngestStats>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.connections_open.fetch_sub(1, Ordering::Release);
    }
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

/// An acceptor that wraps each connection of `inner` in a [`Watched`] stream.
#[derive(Debug, Clone)]
pub(crate) struct HeaderWatch<A> {
    inner: A,
    stats: Arc<IngestStats>,
}

impl<A> HeaderWatch<A> {
    /// Counts in `stats.header_timeouts`. Put it outside TLS, so that it reads plain HTTP.
    pub(crate) fn new(inner: A, stats: Arc<IngestStats>) -> HeaderWatch<A> {
        HeaderWatch { inner, stats }
    }
}

/// What accepting a watched connection waits for.
type Accepting<S, V> = Pin<Box<dyn Future<Output = io::Result<(Watched<S>, V)>> + Send>>;

impl<A, I, S> axum_server::accept::Accept<I, S> for HeaderWatch<A>
where
    A: axum_server::accept::Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Watched<A::Stream>;
    type Service = A::Service;
    type Future = Accepting<A::Stream, A::Service>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepting = self.inner.accept(stream, service);
        let stats = self.stats.clone();
        Box::pin(async move {
            let (stream, service) = accepting.await?;
            Ok((Watched { stream, watch: RequestWatch::default(), stats }, service))
        })
    }
}

/// Where a connection is in its current request, as far as its bytes tell.
#[derive(Debug, Default)]
struct RequestWatch {
    /// A request's first bytes came and the blank line that ends its headers did not yet.
    in_headers: bool,
    /// Its headers are complete and nothing has been written back yet (its body may follow).
    in_body: bool,
    /// The last bytes of the headers so far, to find a `\r\n\r\n` split across reads.
    tail: u32,
    /// The client ended the connection (end of file or an error), or it is not HTTP/1.
    ended: bool,
}

impl RequestWatch {
    /// Follows bytes read from the client.
    fn read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            self.ended = true;
            return;
        }
        if self.ended || self.in_body {
            return;
        }
        if !self.in_headers {
            // HTTP/2's preface has a blank line too, and its frames are binary: not watched.
            if bytes.starts_with(b"PRI * HTTP/2") {
                self.ended = true;
                return;
            }
            self.in_headers = true;
            self.tail = 0;
        }
        for &b in bytes {
            self.tail = (self.tail << 8) | u32::from(b);
            if self.tail == u32::from_be_bytes(*b"\r\n\r\n") {
                self.in_headers = false;
                self.in_body = true;
                return;
            }
        }
    }

    /// Follows a response written: the next bytes read start the next request.
    fn wrote(&mut self) {
        self.in_body = false;
    }

    /// Whether the connection is closing while the client was still sending headers.
    fn cut_in_headers(&self) -> bool {
        self.in_headers && !self.ended
    }
}

/// A connection whose close is counted when a request's headers were incomplete.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    stream: S,
    watch: RequestWatch,
    stats: Arc<IngestStats>,
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        if self.watch.cut_in_headers() {
            self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => this.watch.read(&buf.filled()[before..]),
            Poll::Ready(Err(_)) => this.watch.ended = true,
            Poll::Pending => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            this.watch.wrote();
        }
        polled
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
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            this.watch.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::RequestWatch;

    fn watch(reads: &[&[u8]]) -> RequestWatch {
        let mut w = RequestWatch::default();
        reads.iter().for_each(|r| w.read(r));
        w
    }

    #[test]
    fn only_a_connection_cut_inside_its_headers_counts() {
        // Headers trickling in, the blank line never sent: a header timeout.
        assert!(watch(&[b"POST / HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n"]).cut_in_headers());
        // The blank line split across reads ends the headers; the body may stall (a 408).
        assert!(!watch(&[b"POST / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n{\"re"]).cut_in_headers());
        // The client hung up itself.
        assert!(!watch(&[b"POST / HTTP/1.1\r\n", b""]).cut_in_headers());
        // Idle between requests: nothing was arriving.
        let mut w = watch(&[b"GET / HTTP/1.1\r\n\r\n"]);
        w.wrote();
        assert!(!w.cut_in_headers());
        // The next request on the same connection is watched again.
        w.read(b"POST / HTTP/1.1\r\n");
        assert!(w.cut_in_headers());
        assert!(!watch(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\0\0"]).cut_in_headers());
    }
}
