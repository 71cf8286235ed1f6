//! The Raft port over mutual TLS: a [`Transport`] and an [`Acceptor`] around raft's plain
//! TCP code. Raft's framing, checks and deadlines are unchanged; the simulator keeps its own
//! plain transport.

use std::io;
use std::sync::Arc;

use docket_raft::network::{Acceptor, Transport};
use docket_raft::NodeId;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{node_id_of, NodeTls};

/// The node an authenticated stream's peer certificate names.
fn peer_node(certs: Option<&[rustls::pki_types::CertificateDer<'static>]>) -> Option<NodeId> {
    certs.and_then(|certs| certs.first()).and_then(node_id_of)
}

fn refused(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, message)
}

/// Connects to peers over TLS and checks that the server is the node it meant to reach.
#[derive(Clone)]
pub struct TlsTransport {
    connector: TlsConnector,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl TlsTransport {
    pub fn new(tls: &Arc<NodeTls>) -> TlsTransport {
        TlsTransport {
            connector: TlsConnector::from(tls.raft_client_config()),
        }
    }

    async fn open(
        &self,
        target: Option<NodeId>,
        addr: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        // Host names are not what identifies a node (its certificate's node id is), so the
        // name only fills SNI.
        let name = ServerName::try_from("docket-node").expect("invariant: a valid DNS name");
        let stream = self.connector.connect(name, tcp).await?;
        let peer = peer_node(stream.get_ref().1.peer_certificates());
        match (target, peer) {
            (_, None) => Err(refused(format!(
                "the server at {addr} presented a certificate of the cluster CA that names no \
                 node"
            ))),
            (Some(target), Some(peer)) if peer != target => Err(refused(format!(
                "the server at {addr} is node {peer}, not node {target}: check the member's \
                 address"
            ))),
            _ => Ok(stream),
        }
    }
}

impl Transport for TlsTransport {
    type Stream = tokio_rustls::client::TlsStream<TcpStream>;

    async fn connect(&self, addr: &str) -> io::Result<Self::Stream> {
        self.open(None, addr).await
    }

    async fn connect_to(&self, target: NodeId, addr: &str) -> io::Result<Self::Stream> {
        self.open(Some(target), addr).await
    }
}

/// Accepts Raft connections over mutual TLS: a certificate of the cluster CA that names a
/// node, or the connection is closed before any frame.
#[derive(Clone)]
pub struct TlsRaftAcceptor {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsRaftAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("TlsRaftAcceptor")
    }
}

impl TlsRaftAcceptor {
    pub fn new(tls: &Arc<NodeTls>) -> TlsRaftAcceptor {
        TlsRaftAcceptor {
            acceptor: TlsAcceptor::from(tls.raft_server_config()),
        }
    }
}

impl Acceptor for TlsRaftAcceptor {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;

    async fn accept(&self, tcp: TcpStream) -> io::Result<(Self::Stream, Option<NodeId>)> {
        let _ = tcp.set_nodelay(true);
        let stream = self.acceptor.accept(tcp).await?;
        match peer_node(stream.get_ref().1.peer_certificates()) {
            Some(peer) => Ok((stream, Some(peer))),
            None => Err(refused(
                "the peer's certificate is the cluster CA's but names no node (a client \
                 certificate?): Raft connections are for nodes"
                    .to_owned(),
            )),
        }
    }
}
