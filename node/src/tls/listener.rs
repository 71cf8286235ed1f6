//! The API's listener: plain TCP, or TLS with the peer's certificate identity handed to
//! every request (`ConnectInfo<PeerInfo>`), so the internal routes can insist on a node.
//!
//! TLS handshakes run in their own tasks (at most [`HANDSHAKES_MAX`] at once, each within
//! [`HANDSHAKE_TIMEOUT_MS`]), never in the accept loop: a client that connects and stays
//! silent holds one handshake slot for a few seconds, not the listener.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use docket_raft::NodeId;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::{node_id_of, NodeTls};

/// Concurrent TLS handshakes on the API port; more wait for a slot (in the kernel's
/// backlog), so a flood of silent connections cannot exhaust memory.
pub const HANDSHAKES_MAX: usize = 256;
/// A client that has not completed its handshake within this is disconnected.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Handshaken connections waiting for the HTTP server to take them.
const ACCEPTED_QUEUE: usize = 64;

/// Who is on the other end of an API connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether it presented a client certificate the cluster CA issued (verified in the
    /// handshake: a certificate of another CA fails it).
    pub certificate: bool,
    /// The node its client certificate names (`docket://node/<id>`), if it presented a
    /// node certificate of the cluster CA.
    pub node: Option<NodeId>,
}

impl Connected<IncomingStream<'_, ApiListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, ApiListener>) -> PeerInfo {
        stream.remote_addr().clone()
    }
}

/// A connection of the API listener.
#[derive(Debug)]
pub enum ApiStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ApiStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ApiStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ApiStream::Plain(s) => s.is_write_vectored(),
            ApiStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The API listener for `axum::serve`.
#[derive(Debug)]
pub enum ApiListener {
    Plain(TcpListener),
    Tls {
        local: SocketAddr,
        accepted: mpsc::Receiver<(ApiStream, PeerInfo)>,
    },
}

impl ApiListener {
    /// TLS over `listener`: handshakes run in tasks fed by an accept loop that ends with
    /// `shutdown` (or when the server stops taking connections).
    pub fn tls(
        listener: TcpListener,
        tls: &Arc<NodeTls>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> io::Result<ApiListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(tls.api_server_config());
        let (send, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(listener, acceptor, send, shutdown));
        Ok(ApiListener::Tls { local, accepted })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    send: mpsc::Sender<(ApiStream, PeerInfo)>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(HANDSHAKES_MAX));
    tokio::pin!(shutdown);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, remote) = tokio::select! {
            _ = &mut shutdown => return,
            _ = send.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "api accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, send) = (acceptor.clone(), send.clone());
        tokio::spawn(async move {
            let deadline = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
            let stream = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(%remote, error = %e, "refused api connection: tls handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "refused api connection: no tls handshake within {deadline:?}");
                    return;
                }
            };
            drop(slot);
            let certificates = stream.get_ref().1.peer_certificates();
            let certificate = certificates.is_some_and(|certs| !certs.is_empty());
            let node = certificates
                .and_then(|certs| certs.first())
                .and_then(node_id_of);
            let info = PeerInfo {
                remote,
                tls: true,
                certificate,
                node,
            };
            let _ = send.send((ApiStream::Tls(Box::new(stream)), info)).await;
        });
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = ApiStream;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (ApiStream, PeerInfo) {
        match self {
            ApiListener::Plain(listener) => {
                // axum's own accept loop for TCP (it retries and logs errors).
                let (tcp, remote) = axum::serve::Listener::accept(listener).await;
                // As on the TLS path: a response must not wait behind Nagle's algorithm
                // for the client's acknowledgement of the one before.
                let _ = tcp.set_nodelay(true);
                let info = PeerInfo {
                    remote,
                    tls: false,
                    certificate: false,
                    node: None,
                };
                (ApiStream::Plain(tcp), info)
            }
            ApiListener::Tls { accepted, .. } => match accepted.recv().await {
                Some(connection) => connection,
                // The accept loop ended (shutdown): serve nothing more, and let the
                // graceful shutdown finish.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<PeerInfo> {
        let remote = match self {
            ApiListener::Plain(listener) => listener.local_addr()?,
            ApiListener::Tls { local, .. } => *local,
        };
        Ok(PeerInfo {
            remote,
            tls: matches!(self, ApiListener::Tls { .. }),
            certificate: false,
            node: None,
        })
    }
}
