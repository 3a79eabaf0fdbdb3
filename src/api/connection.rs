//! The server's side of a client's TCP connection, shaped so that a unary answer leaves in one
//! `write`.
//!
//! h2 writes a frame's payload of more than 256 bytes as a buffer of its own after the frames
//! before it, and writes out everything it holds before it takes the frame after such a payload
//! ("chaining"); over a connection that takes no vectored writes its limit is 1 KiB instead. A
//! gRPC answer is three frames (headers, the message, the trailers with `grpc-status`), and a
//! recorded repayment's message is about 300 bytes: over a plain `TcpStream` every such answer
//! cost two `write`s, each a trip through the loopback's TCP stack and a wake-up of the client.
//!
//! [`Coalescing`] says it takes no vectored writes, so h2 copies payloads of up to 1 KiB into its
//! own buffer and the three frames go out together; and it gathers what h2 writes until h2
//! flushes, so that a larger payload, still chained, leaves with the frames before it in one
//! `write` as it did through `writev`. Measured with `perf stat` during the bench's single
//! repayments (64 clients, SQLite): the server's writes fell from two an answer to one, and the
//! CPU a repayment took (server and load generator) from about 80 µs to 72 µs.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// What [`Coalescing`] gathers at most before it writes, allocated with each connection: room
/// for h2's own buffer and a chained payload of one frame at the 16 KiB that tonic's and most
/// clients' HTTP/2 settings allow. A larger write (a client allowing larger frames) goes
/// straight to the socket after what was gathered.
const GATHER_BYTES: usize = 32 * 1024;

/// A client's connection whose writes are gathered until the HTTP/2 layer flushes.
pub struct Coalescing(BufWriter<TcpStream>);

impl Coalescing {
    pub fn new(stream: TcpStream) -> Coalescing {
        Coalescing(BufWriter::with_capacity(GATHER_BYTES, stream))
    }
}

impl Connected for Coalescing {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().connect_info()
    }
}

impl AsyncRead for Coalescing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Coalescing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    /// No: h2 then copies payloads of up to 1 KiB instead of chaining them (module docs).
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (Coalescing, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (Coalescing::new(server), client)
    }

    #[tokio::test]
    async fn takes_no_vectored_writes_and_keeps_the_peer_address() {
        let (server, client) = pair().await;
        assert!(!server.is_write_vectored());
        assert_eq!(server.connect_info().remote_addr(), Some(client.local_addr().unwrap()));
    }

    /// What is written reaches the peer whole and in order once flushed, writes larger than what
    /// is gathered at once included; and what the peer sends is read.
    #[tokio::test]
    async fn writes_reach_the_peer_whole_and_in_order() {
        let (mut server, mut client) = pair().await;
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
}
