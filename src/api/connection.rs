//! The server's side of a client's TCP connection, shaped so that a unary answer of less than
//! 1 KiB leaves in one `write` (a larger one in two, as through `writev`).
//!
//! h2 writes a frame's payload of 256 bytes or more as a buffer of its own after the frames
//! before it, and writes out everything it holds before it takes the frame after such a payload
//! ("chaining"); over a connection that takes no vectored writes its limit is 1 KiB instead. A
//! gRPC answer is three frames (headers, the message, the trailers with `grpc-status`), and a
//! recorded repayment's message is about 300 bytes: over a plain `TcpStream` every such answer
//! cost two `write`s, each a trip through the loopback's TCP stack and a wake-up of the client.
//!
//! [`Coalescing`] says it takes no vectored writes, so h2 copies payloads under 1 KiB into its
//! own buffer and the three frames go out together; and it gathers what h2 writes until h2
//! flushes, so that a larger payload, still chained, leaves with the frames before it in one
//! `write` as it did through `writev`. Measured with `perf stat` during the bench's single
//! repayments (64 clients, SQLite): the server's writes fell from two an answer to one, and the
//! CPU a repayment took (server and load generator) from about 80 µs to 72 µs (BENCHMARKS-HISTORY.md,
//! change 65).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::Connected;

/// What [`Coalescing`] gathers at most before it writes, allocated with each connection: room
/// for h2's own buffer and a chained payload of one frame at the 16 KiB that tonic's and most
/// clients' HTTP/2 settings allow. A larger write (a client allowing larger frames) goes
/// straight to the socket after what was gathered.
const GATHER_BYTES: usize = 32 * 1024;

/// A client's connection whose writes are gathered until the HTTP/2 layer flushes (a
/// `TcpStream` in the server; any stream in the tests).
pub struct Coalescing<S = TcpStream>(BufWriter<S>);

impl<S: AsyncRead + AsyncWrite> Coalescing<S> {
    pub fn new(stream: S) -> Coalescing<S> {
        Coalescing(BufWriter::with_capacity(GATHER_BYTES, stream))
    }
}

impl<S: Connected + AsyncRead + AsyncWrite> Connected for Coalescing<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().connect_info()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    /// No: h2 then copies payloads under 1 KiB instead of chaining them (module docs).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    #[tokio::test]
    async fn takes_no_vectored_writes_and_keeps_the_peer_address() {
        let (server, client) = tcp_pair().await;
        let server = Coalescing::new(server);
        assert!(!server.is_write_vectored());
        assert_eq!(server.connect_info().remote_addr(), Some(client.local_addr().unwrap()));
    }

    /// What is written reaches the peer whole and in order once flushed, writes larger than what
    /// is gathered at once included; and what the peer sends is read.
    #[tokio::test]
    async fn writes_reach_the_peer_whole_and_in_order() {
        let (server, mut client) = tcp_pair().await;
        let mut server = Coalescing::new(server);
        let big: Vec<u8> = (0..3 * GATHER_BYTES).map(|i| (i % 251) as u8).collect();
        let writing = async {
            server.write_all(b"head").await.unwrap();
            server.write_all(&big).await.unwrap();
            server.write_all(b"tail").await.unwrap();
            server.flush().await.unwrap();
            let mut got = [0u8; 5];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hello");
        };
        let reading = async {
            let mut got = vec![0u8; big.len() + 8];
            client.read_exact(&mut got).await.unwrap();
            client.write_all(b"hello").await.unwrap();
            got
        };
        let ((), got) = tokio::join!(writing, reading);
        assert_eq!(&got[..4], b"head");
        assert_eq!(&got[4..4 + big.len()], &big[..]);
        assert_eq!(&got[4 + big.len()..], b"tail");
    }

    /// A TCP stream that counts the writes that reach it (each one a system call), vectored or
    /// not, as a plain `TcpStream` would make them.
    struct Counted(TcpStream, Arc<AtomicUsize>);

    impl AsyncRead for Counted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let written = Pin::new(&mut self.0).poll_write(cx, buf);
            if matches!(written, Poll::Ready(Ok(_))) {
                self.1.fetch_add(1, Ordering::SeqCst);
            }
            written
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let written = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
            if matches!(written, Poll::Ready(Ok(_))) {
                self.1.fetch_add(1, Ordering::SeqCst);
            }
            written
        }

        fn is_write_vectored(&self) -> bool {
            self.0.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// The writes an HTTP/2 server makes for one answer shaped as a unary gRPC answer (headers,
    /// a message of `message` bytes, trailers), over `wrap(stream)`.
    async fn writes_for_an_answer<S, F>(message: usize, wrap: F) -> usize
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: FnOnce(Counted) -> S,
    {
        let (server, client) = tcp_pair().await;
        let writes = Arc::new(AtomicUsize::new(0));
        let io = wrap(Counted(server, writes.clone()));
        let served = writes.clone();
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(io).await.unwrap();
            let (_request, mut respond) = conn.accept().await.unwrap().unwrap();
            // Counted from here: the answer's frames only.
            served.store(0, Ordering::SeqCst);
            let mut send = respond.send_response(http::Response::new(()), false).unwrap();
            send.send_data(bytes::Bytes::from(vec![7u8; message]), false).unwrap();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            send.send_trailers(trailers).unwrap();
            // Drives the connection until the client has gone.
            while conn.accept().await.is_some() {}
        });
        let (mut sender, conn) = h2::client::handshake(client).await.unwrap();
        tokio::spawn(conn);
        let request =
            http::Request::post("http://localhost/loanledger.v1.LoanService/Get").body(()).unwrap();
        let (answer, _) = sender.send_request(request, true).unwrap();
        let mut body = answer.await.unwrap().into_body();
        let mut got = 0;
        while let Some(chunk) = body.data().await {
            got += chunk.unwrap().len();
        }
        let trailers = body.trailers().await.unwrap().expect("the trailers");
        assert_eq!((got, trailers["grpc-status"].to_str().unwrap()), (message, "0"));
        let counted = writes.load(Ordering::SeqCst);
        drop(sender);
        server.abort();
        counted
    }

    /// The point of [`Coalescing`]: an answer of the size of a recorded repayment's (about 300
    /// bytes) leaves in one write; over the plain stream h2 writes its trailers apart. A larger
    /// one (2 KiB, chained by h2 either way) takes no more writes than over the plain stream.
    /// The three frames are queued before the connection is polled again (this runtime has one
    /// thread), as in the server when the answer's task runs before its connection's; there the
    /// connection may now and then flush between them (perf counted 22,319 sends for 21,837
    /// answers).
    #[tokio::test]
    async fn an_answer_leaves_in_one_write() {
        assert_eq!(writes_for_an_answer(300, Coalescing::new).await, 1);
        assert_eq!(writes_for_an_answer(300, |plain| plain).await, 2, "the plain stream");
        let chained = writes_for_an_answer(2048, Coalescing::new).await;
        assert!(chained <= writes_for_an_answer(2048, |plain| plain).await, "{chained}");
    }
}
