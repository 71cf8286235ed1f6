//! Raft RPC over TCP: length-delimited bincode frames, on the node's own Raft port.
//!
//! Every request frame names the cluster, the target node id and the sender's genesis
//! entry hash; a server refuses a frame for another cluster or another node, or from a
//! node whose genesis differs from its own (connecting to the wrong address must not
//! corrupt anything: a node of cluster A answering votes for cluster B would merge two
//! quorums, and a node initialized on its own by mistake holds a history of its own under
//! the right cluster id). A node without a genesis yet (fresh, about to receive the
//! cluster's by replication or snapshot) claims none and is refused by no one.
//! Every call has a deadline. A connection is opened lazily on first use (openraft calls
//! `new_client` inside its core loop, so that must not dial), carries one request at a
//! time, and is dropped after any error so the next call starts clean.
//!
//! The byte stream sits behind [`Transport`], so the simulator runs this same code over
//! turmoil's simulated TCP by supplying its own `Transport` and feeding accepted streams
//! to [`serve_connection`].
//!
//! Authentication of the peer (mutual TLS in the node) wraps this code on both sides
//! without it knowing TLS: a [`Transport`] may check whom it reached in
//! [`Transport::connect_to`], and an [`Acceptor`] turns an accepted TCP stream into an
//! authenticated one and names the node it proved to be. [`serve_with`] then refuses any
//! frame whose sender is not that node (`Refused { WrongPeer }`, before the frame is acted
//! on), and a stream the acceptor refuses is closed before a byte of it is read as a frame.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::SnapshotResponse;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, Raft, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use docket_core::EntryHash;

use crate::codec;
use crate::pacing::{self, ApplyPacing};
use crate::{NodeAddr, NodeId, TypeConfig, Vote};

/// Largest frame accepted in either direction. Snapshot chunks are sized well below it
/// (see `SNAPSHOT_CHUNK_BYTES`) and append batches are bounded by openraft's
/// `max_payload_entries` times the per-proposal payload limit.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Snapshot chunk size handed to openraft, a sixteenth of the frame cap.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// The slowest rate, in snapshot bytes per second, at which a receiver is expected to verify
/// and replay a snapshot: the final chunk's deadline grows with the snapshot at this rate
/// ([`install_deadline`]). A receiver answers the final chunk only once the whole snapshot
/// is verified, replayed and committed; this 2-core machine does that at ~40 MB/s
/// (32,000 ledger entries/s), so the floor leaves a tenfold margin.
pub const SNAPSHOT_INSTALL_BYTES_PER_S_MIN: u64 = 4 * 1024 * 1024;

/// Consecutive failed attempts at one snapshot chunk before the stream gives up (openraft's
/// replication then starts over with a fresh snapshot, after its backoff).
pub const SNAPSHOT_CHUNK_ATTEMPTS_MAX: u32 = 3;

/// A snapshot being sent: in hand, or with a helper writing its next chunk.
enum Ahead {
    Here(Box<crate::SnapshotFile>),
    Writing(crate::snapshot_file::WriteAhead),
}

impl Ahead {
    fn join(self) -> io::Result<Box<crate::SnapshotFile>> {
        match self {
            Ahead::Here(file) => Ok(file),
            Ahead::Writing(ahead) => ahead.join(),
        }
    }
}

/// Pause before a failed snapshot chunk is sent again, times the failures so far.
pub const SNAPSHOT_CHUNK_RETRY_MS: u64 = 100;

/// The final chunk's deadline: a chunk's, plus the time a receiver at
/// [`SNAPSHOT_INSTALL_BYTES_PER_S_MIN`] takes to install `snapshot_bytes`.
pub fn install_deadline(chunk_deadline: Duration, snapshot_bytes: u64) -> Duration {
    chunk_deadline + Duration::from_secs(snapshot_bytes.div_ceil(SNAPSHOT_INSTALL_BYTES_PER_S_MIN))
}

/// Concurrent inbound Raft connections per node. A cluster needs a few per peer (openraft
/// keeps a log stream and a snapshot stream per target, plus votes); anything beyond this
/// is refused rather than allowed to exhaust file descriptors.
pub const INBOUND_CONNECTIONS_MAX: usize = 256;

/// Who a node is on the Raft network: what inbound frames must name.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: NodeId,
    /// This node's genesis entry hash, once it has one.
    pub genesis: GenesisCell,
    /// Set when the cluster's voters refused this node's vote request because it is not a
    /// member (it was removed); cleared when a leader replicates to it again (re-added).
    pub removed: Removed,
    /// When this node last accepted a leader's append (heartbeats included).
    pub leader_heard: LeaderHeard,
    /// How appends wait for this node's applies ([`crate::pacing`]).
    pub pacing: ApplyPacing,
    /// Snapshot chunks this node is taking from a leader right now, and when the last one
    /// ended: the service holds its elections back while one is installed.
    pub snapshots: SnapshotsReceiving,
}

/// Snapshot chunks being received, the last of which waits for the whole install.
///
/// A leader sends a follower nothing else while a snapshot is in flight to it (openraft
/// 0.9 keeps one request in flight per follower, and heartbeats wait behind it), and the
/// last chunk is in flight until the follower has verified, replayed and committed the
/// snapshot: seconds per hundred thousand entries. A voter would take that silence for a
/// dead leader and campaign, again and again, and its higher terms depose the leader that
/// is feeding it (seen in the growth benchmark: 18 campaigns during a 30 s install, the
/// catch-up doubled). So the service holds this node's elections back while a chunk is
/// being taken and for one lease after ([`SnapshotsReceiving::hold_elections`]), by
/// which time the leader's next append has reset openraft's timer. Votes for others are
/// unaffected.
#[derive(Clone, Debug, Default)]
pub struct SnapshotsReceiving(Arc<std::sync::Mutex<Receiving>>);

#[derive(Debug, Default)]
struct Receiving {
    active: u32,
    last_ended: Option<tokio::time::Instant>,
}

impl SnapshotsReceiving {
    /// Counts a chunk as being taken until the guard drops.
    pub fn begin(&self) -> ReceivingGuard {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).active += 1;
        ReceivingGuard(self.clone())
    }

    /// Whether elections wait: a chunk is being taken, or the last ended within `lease`.
    pub fn hold_elections(&self, lease: Duration) -> bool {
        let receiving = self.0.lock().unwrap_or_else(|e| e.into_inner());
        receiving.active > 0
            || receiving
                .last_ended
                .is_some_and(|ended| ended.elapsed() < lease)
    }
}

/// Ends a chunk's count in [`SnapshotsReceiving`] when dropped.
#[derive(Debug)]
pub struct ReceivingGuard(SnapshotsReceiving);

impl Drop for ReceivingGuard {
    fn drop(&mut self) {
        let mut receiving = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
        receiving.active = receiving.active.saturating_sub(1);
        receiving.last_ended = Some(tokio::time::Instant::now());
    }
}

/// When this node last accepted an append from a leader: the silence after which a
/// follower may campaign. The service's election trigger reads it (see
/// `docket_service`'s `elections`), because openraft 0.9 exposes no such time to its host.
/// Tokio time, so the simulator's virtual clock drives it there.
#[derive(Clone, Debug, Default)]
pub struct LeaderHeard(Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl LeaderHeard {
    /// Records an accepted append now.
    pub fn mark(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokio::time::Instant::now());
    }

    /// The last accepted append, if any since this node started.
    pub fn last(&self) -> Option<tokio::time::Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether the cluster told this node it is no longer a member. Shared by the network
/// (which learns it) and the service (which stops elections at once and says so to
/// clients).
#[derive(Clone, Debug)]
pub struct Removed(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Removed {
    fn default() -> Removed {
        Removed(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Removed {
    pub fn get(&self) -> bool {
        *self.0.borrow()
    }

    pub fn set(&self, removed: bool) {
        self.0
            .send_if_modified(|now| std::mem::replace(now, removed) != removed);
    }

    /// Sees every change.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// A node's genesis entry hash, read from its ledger until it has one and then
/// remembered: a genesis never changes, so the read costs nothing after the first hit.
#[derive(Clone)]
pub struct GenesisCell {
    known: Arc<std::sync::OnceLock<EntryHash>>,
    read: Arc<dyn Fn() -> Option<EntryHash> + Send + Sync>,
}

impl GenesisCell {
    /// A cell that asks `read` (the node's ledger entry 0) until it answers.
    pub fn new(read: impl Fn() -> Option<EntryHash> + Send + Sync + 'static) -> GenesisCell {
        GenesisCell {
            known: Arc::new(std::sync::OnceLock::new()),
            read: Arc::new(read),
        }
    }

    /// A fixed answer (tests).
    pub fn fixed(genesis: Option<EntryHash>) -> GenesisCell {
        GenesisCell::new(move || genesis)
    }

    pub fn get(&self) -> Option<EntryHash> {
        if let Some(known) = self.known.get() {
            return Some(*known);
        }
        let read = (self.read)()?;
        Some(*self.known.get_or_init(|| read))
    }
}

impl std::fmt::Debug for GenesisCell {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_tuple("GenesisCell")
            .field(&self.known.get())
            .finish()
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(#[serde(with = "chunk_wire")] InstallSnapshotRequest<TypeConfig>),
}

/// A snapshot chunk on the wire: openraft's [`InstallSnapshotRequest`] field for field,
/// with its data as one byte string (`serde_bytes`) instead of a sequence of `u8`. bincode
/// writes both as a `u64` length and the bytes, so the frame is the same on the wire (a
/// test pins it); serde visits a sequence one element at a time, which cost 3.4 ms to
/// encode and 5.4 ms to decode every 4 MiB chunk, a fifth of a chunk's round trip.
mod chunk_wire {
    use openraft::raft::InstallSnapshotRequest;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::{SnapshotMeta, TypeConfig, Vote};

    #[derive(Serialize)]
    struct ChunkRef<'a> {
        vote: &'a Vote,
        meta: &'a SnapshotMeta,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: &'a [u8],
        done: bool,
    }

    #[derive(Deserialize)]
    struct Chunk {
        vote: Vote,
        meta: SnapshotMeta,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        done: bool,
    }

    pub fn serialize<S: Serializer>(
        chunk: &InstallSnapshotRequest<TypeConfig>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        ChunkRef {
            vote: &chunk.vote,
            meta: &chunk.meta,
            offset: chunk.offset,
            data: &chunk.data,
            done: chunk.done,
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<InstallSnapshotRequest<TypeConfig>, D::Error> {
        let Chunk {
            vote,
            meta,
            offset,
            data,
            done,
        } = Chunk::deserialize(deserializer)?;
        Ok(InstallSnapshotRequest {
            vote,
            meta,
            offset,
            data,
            done,
        })
    }
}

/// A request on the wire.
#[derive(Serialize, Deserialize, Debug)]
pub struct RequestFrame {
    pub cluster_id: String,
    pub target: NodeId,
    pub from: NodeId,
    /// The sender's genesis entry hash (`None`: it has none yet).
    pub genesis: Option<EntryHash>,
    pub rpc: Rpc,
}

/// A response on the wire: the callee's whole `Result`, or a refusal of the frame itself.
#[derive(Serialize, Deserialize, Debug)]
pub enum ResponseFrame {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    /// The frame named another cluster or node, or could not be decoded. Nothing was done.
    Refused {
        code: RefusalCode,
        message: String,
    },
}

/// Why a server refused a frame. Stable: operators grep logs for these.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    WrongCluster,
    WrongNode,
    Malformed,
    /// The sender's genesis entry differs from this node's: one of them holds a history
    /// that is not the cluster's.
    WrongGenesis,
    /// A vote request from a node that is not a member of this node's configuration: it
    /// was removed, and must not campaign.
    NotAMember,
    /// The frame names a sender other than the node the connection authenticated as (its
    /// certificate's node id): a peer speaking for another node.
    WrongPeer,
}

/// Opens byte streams to peers. Production uses [`TcpTransport`]; the simulator supplies
/// one over turmoil.
pub trait Transport: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static;
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// Opens a stream to node `target` at `addr`. A transport that authenticates its peer
    /// (the node's mutual TLS) refuses a peer that is not `target`; the default is
    /// [`Transport::connect`], which cannot tell.
    fn connect_to(
        &self,
        target: NodeId,
        addr: &str,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send {
        let _ = target;
        self.connect(addr)
    }
}

/// Turns an accepted TCP stream into the stream Raft frames are read from, and says which
/// node the peer proved to be (`None`: the stream does not authenticate its peer, as plain
/// TCP does not). An error closes the connection before any frame is read.
pub trait Acceptor: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(
        &self,
        stream: TcpStream,
    ) -> impl Future<Output = io::Result<(Self::Stream, Option<NodeId>)>> + Send;
}

/// Plain TCP: nothing to check, no peer identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainAcceptor;

impl Acceptor for PlainAcceptor {
    type Stream = TcpStream;
    async fn accept(&self, stream: TcpStream) -> io::Result<(TcpStream, Option<NodeId>)> {
        Ok((stream, None))
    }
}

/// How long an accepted connection may take to authenticate (the TLS handshake) before it
/// is closed: a peer that opens connections and says nothing must not hold permits.
pub const ACCEPT_TIMEOUT_MS: u64 = 5_000;

/// Real TCP, with Nagle off (Raft messages are small and latency-bound).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    type Stream = TcpStream;
    async fn connect(&self, addr: &str) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn framed<S: AsyncRead + AsyncWrite>(stream: S) -> Framed<S, LengthDelimitedCodec> {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(FRAME_BYTES_MAX)
        .new_codec();
    Framed::new(stream, codec)
}

/// The openraft network factory: hands out lazily-connecting clients.
#[derive(Clone, Debug)]
pub struct Network<T: Transport> {
    transport: T,
    identity: Identity,
    rpc_timeout: Duration,
}

impl<T: Transport> Network<T> {
    pub fn new(transport: T, identity: Identity, rpc_timeout: Duration) -> Network<T> {
        Network {
            transport,
            identity,
            rpc_timeout,
        }
    }
}

impl<T: Transport> RaftNetworkFactory<TypeConfig> for Network<T> {
    type Network = PeerClient<T>;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> PeerClient<T> {
        PeerClient {
            transport: self.transport.clone(),
            identity: self.identity.clone(),
            target,
            addr: node.raft_addr.clone(),
            rpc_timeout: self.rpc_timeout,
            conn: None,
        }
    }
}

/// A client for one peer. Not shared: openraft owns each client and calls it sequentially.
pub struct PeerClient<T: Transport> {
    transport: T,
    identity: Identity,
    target: NodeId,
    addr: String,
    rpc_timeout: Duration,
    conn: Option<Framed<T::Stream, LengthDelimitedCodec>>,
}

impl<T: Transport> std::fmt::Debug for PeerClient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("target", &self.target)
            .field("addr", &self.addr)
            .finish()
    }
}

/// What went wrong with a call, before it is shaped into openraft's error type.
#[derive(Debug)]
enum CallError {
    /// Could not connect, or the peer refused the frame: back off before retrying.
    Unreachable(io::Error),
    /// The connection broke or the deadline passed mid-call.
    Network(io::Error),
}

impl CallError {
    fn into_io(self) -> io::Error {
        match self {
            CallError::Unreachable(e) | CallError::Network(e) => e,
        }
    }

    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, NodeAddr, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

impl<T: Transport> PeerClient<T> {
    /// One call within `ttl`, and never longer than the client's `rpc_timeout`.
    async fn call(&mut self, rpc: Rpc, ttl: Duration) -> Result<ResponseFrame, CallError> {
        self.call_within(rpc, ttl.min(self.rpc_timeout)).await
    }

    async fn call_within(
        &mut self,
        rpc: Rpc,
        deadline: Duration,
    ) -> Result<ResponseFrame, CallError> {
        match tokio::time::timeout(deadline, self.call_inner(rpc)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                self.conn = None;
                Err(error)
            }
            Err(_) => {
                // The stream may hold half a frame: never reuse it.
                self.conn = None;
                Err(CallError::Network(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "raft rpc to node {} at {} exceeded {deadline:?}",
                        self.target, self.addr
                    ),
                )))
            }
        }
    }

    async fn call_inner(&mut self, rpc: Rpc) -> Result<ResponseFrame, CallError> {
        if self.conn.is_none() {
            let stream = self
                .transport
                .connect_to(self.target, &self.addr)
                .await
                .map_err(CallError::Unreachable)?;
            self.conn = Some(framed(stream));
        }
        let conn = self.conn.as_mut().expect("invariant: connected above");
        let frame = RequestFrame {
            cluster_id: self.identity.cluster_id.clone(),
            target: self.target,
            from: self.identity.node_id,
            genesis: self.identity.genesis.get(),
            rpc,
        };
        let bytes = codec::encode(&frame)
            .map_err(|e| CallError::Network(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        conn.send(tokio_util::bytes::Bytes::from(bytes))
            .await
            .map_err(CallError::Network)?;
        let reply = match conn.next().await {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => return Err(CallError::Network(e)),
            None => {
                return Err(CallError::Network(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed the connection",
                )))
            }
        };
        let response: ResponseFrame = codec::decode(&reply)
            .map_err(|e| CallError::Network(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        if let ResponseFrame::Refused { code, message } = &response {
            if *code == RefusalCode::NotAMember {
                if !self.identity.removed.get() {
                    tracing::warn!(target_node = self.target, %message,
                        "this node was removed from the cluster: it stops campaigning");
                }
                self.identity.removed.set(true);
                return Err(CallError::Unreachable(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    message.clone(),
                )));
            }
            tracing::error!(target_node = self.target, addr = %self.addr, ?code, %message,
                "peer refused our raft frame: check the cluster id, the node's address and its history");
            return Err(CallError::Unreachable(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "node {} at {} refused the frame ({code:?}): {message}",
                    self.target, self.addr
                ),
            )));
        }
        Ok(response)
    }

    /// Streams `snapshot` in chunks of `chunk_bytes`, each within `chunk_ttl` (capped at
    /// the client's `rpc_timeout`) but the last, which gets [`install_deadline`]: the
    /// receiver answers it only after verifying and replaying the whole snapshot. A chunk
    /// that fails is sent again, up to [`SNAPSHOT_CHUNK_ATTEMPTS_MAX`] times in a row; a
    /// receiver that lost track of the stream (`SnapshotMismatch`) is sent it from the
    /// start.
    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + Send,
        chunk_ttl: Duration,
        chunk_bytes: usize,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let signature = snapshot.meta.signature();
        let read_error = |e: io::Error| -> StorageError<NodeId> {
            StorageIOError::read_snapshot(Some(signature.clone()), AnyError::new(&e)).into()
        };
        // A served snapshot is written as it is read (`SnapshotFile::lazy`): its length is
        // known once its last byte is, and the last chunk is the one that reaches it.
        let chunk_deadline = chunk_ttl.min(self.rpc_timeout);
        let mut cancel = std::pin::pin!(cancel);
        let mut offset = 0u64;
        let mut failures = 0u32;
        let openraft::Snapshot {
            meta,
            snapshot: file,
        } = snapshot;
        // While a chunk is on its way, the next one of a lazy snapshot is written on a
        // helper thread (`SnapshotFile::write_ahead`): its ledger reads and checks then
        // overlap the chunk's round trip instead of following it.
        let mut file = Ahead::Here(file);
        loop {
            let mut here = file.join().map_err(read_error)?;
            here.seek(io::SeekFrom::Start(offset))
                .await
                .map_err(read_error)?;
            let mut data = Vec::with_capacity(chunk_bytes);
            (&mut *here)
                .take(chunk_bytes as u64)
                .read_to_end(&mut data)
                .await
                .map_err(read_error)?;
            let sent = data.len() as u64;
            let end = here.complete_len().map_err(read_error)?;
            let done = end.is_some_and(|end| offset + sent >= end);
            file = if here.is_lazy() {
                let next_end = (offset + sent).saturating_add(chunk_bytes as u64);
                Ahead::Writing(here.write_ahead(next_end))
            } else {
                Ahead::Here(here)
            };
            let request = InstallSnapshotRequest {
                vote,
                meta: meta.clone(),
                offset,
                data,
                done,
            };
            let deadline = match end {
                Some(end) if done => install_deadline(chunk_deadline, end),
                _ => chunk_deadline,
            };
            let answer = tokio::select! {
                closed = &mut cancel => return Err(closed.into()),
                answer = self.call_within(Rpc::Snapshot(request), deadline) => answer,
            };
            let failure: StreamingError<TypeConfig, Fatal<NodeId>> = match answer {
                Ok(ResponseFrame::Snapshot(Ok(response))) => {
                    if response.vote > vote || done {
                        return Ok(SnapshotResponse::new(response.vote));
                    }
                    offset += sent;
                    failures = 0;
                    continue;
                }
                Ok(ResponseFrame::Snapshot(Err(RaftError::APIError(
                    InstallSnapshotError::SnapshotMismatch(mismatch),
                )))) => {
                    tracing::warn!(target_node = self.target, %mismatch,
                        "the receiver lost track of the snapshot stream: sending it from the start");
                    offset = 0;
                    failures = 0;
                    continue;
                }
                Ok(ResponseFrame::Snapshot(Err(RaftError::Fatal(fatal)))) => {
                    return Err(RemoteError::new(self.target, fatal).into());
                }
                Ok(_) => NetworkError::new(&self.mismatch().into_io()).into(),
                Err(CallError::Unreachable(e)) => Unreachable::new(&e).into(),
                Err(CallError::Network(e)) => NetworkError::new(&e).into(),
            };
            failures += 1;
            tracing::warn!(target_node = self.target, offset, failures, error = %failure,
                "snapshot chunk failed");
            if failures >= SNAPSHOT_CHUNK_ATTEMPTS_MAX {
                return Err(failure);
            }
            let pause = Duration::from_millis(SNAPSHOT_CHUNK_RETRY_MS * u64::from(failures));
            tokio::select! {
                closed = &mut cancel => return Err(closed.into()),
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    fn mismatch(&self) -> CallError {
        CallError::Network(io::Error::new(
            io::ErrorKind::InvalidData,
            "response kind does not match the request",
        ))
    }
}

impl<T: Transport> RaftNetwork<TypeConfig> for PeerClient<T> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        match self
            .call(Rpc::Append(rpc), option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?
        {
            ResponseFrame::Append(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.mismatch().into_rpc()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeAddr, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .call(Rpc::Snapshot(rpc), option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?
        {
            ResponseFrame::Snapshot(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.mismatch().into_rpc()),
        }
    }

    /// openraft's default (its `Chunked` sender) gives every chunk the same deadline, and
    /// this client caps each call at `rpc_timeout`, so a final chunk whose install took
    /// longer (a few seconds per hundred thousand ledger entries) timed out, and the leader
    /// started over: a new snapshot file written from its whole ledger and streamed again,
    /// every few seconds, while the receiver was still replaying the first, both nodes
    /// spending a core on it. [`PeerClient::send_snapshot`] is that sender with the final
    /// chunk's deadline scaled to the snapshot ([`install_deadline`]).
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::Snapshot<TypeConfig>,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let chunk_bytes = option
            .snapshot_chunk_size()
            .unwrap_or(SNAPSHOT_CHUNK_BYTES as usize);
        self.send_snapshot(vote, snapshot, cancel, option.hard_ttl(), chunk_bytes)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeAddr, RaftError<NodeId>>> {
        match self
            .call(Rpc::Vote(rpc), option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?
        {
            ResponseFrame::Vote(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.mismatch().into_rpc()),
        }
    }
}

/// Accepts Raft connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    identity: Identity,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(listener, PlainAcceptor, raft, identity, shutdown).await
}

/// Accepts Raft connections until `shutdown` resolves, each through `acceptor` (within
/// [`ACCEPT_TIMEOUT_MS`]) before any frame is read.
pub async fn serve_with<A: Acceptor>(
    listener: TcpListener,
    acceptor: A,
    raft: Raft<TypeConfig>,
    identity: Identity,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(INBOUND_CONNECTIONS_MAX));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Per-connection errors (e.g. EMFILE) must not kill the listener.
                    tracing::warn!(error = %e, "raft accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = INBOUND_CONNECTIONS_MAX, "refusing raft connection: too many open");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        let identity = identity.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let deadline = Duration::from_millis(ACCEPT_TIMEOUT_MS);
            let accepted = match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(accepted)) => accepted,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "refused raft connection before any frame");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "refused raft connection: no handshake within {deadline:?}");
                    return;
                }
            };
            let (stream, authenticated) = accepted;
            if let Err(e) = serve_authenticated(stream, raft, identity, authenticated).await {
                tracing::debug!(%peer, error = %e, "raft connection closed");
            }
            drop(permit);
        });
    }
}

/// Serves one Raft connection: one request at a time, each answered before the next is read.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    raft: Raft<TypeConfig>,
    identity: Identity,
) -> io::Result<()> {
    serve_authenticated(stream, raft, identity, None).await
}

/// [`serve_connection`] for a stream whose peer proved to be node `authenticated`: a frame
/// from any other sender is refused (`WrongPeer`) and the connection closed.
pub async fn serve_authenticated<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    raft: Raft<TypeConfig>,
    identity: Identity,
    authenticated: Option<NodeId>,
) -> io::Result<()> {
    let mut conn = framed(stream);
    while let Some(frame) = conn.next().await {
        let response = match codec::decode::<RequestFrame>(&frame?) {
            Err(e) => ResponseFrame::Refused {
                code: RefusalCode::Malformed,
                message: e.to_string(),
            },
            Ok(request) => match authenticated {
                Some(peer) if peer != request.from => {
                    tracing::error!(
                        peer,
                        claimed = request.from,
                        "refused raft frame: the sender claims another node's id"
                    );
                    ResponseFrame::Refused {
                        code: RefusalCode::WrongPeer,
                        message: format!(
                            "this connection authenticated as node {peer}, but the frame \
                             claims to come from node {}",
                            request.from
                        ),
                    }
                }
                _ => handle(&raft, &identity, request).await,
            },
        };
        let refused = matches!(response, ResponseFrame::Refused { .. });
        let bytes =
            codec::encode(&response).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        conn.send(tokio_util::bytes::Bytes::from(bytes)).await?;
        if refused {
            // A peer speaking for another cluster or node gets one answer, then silence.
            return Ok(());
        }
    }
    Ok(())
}

async fn handle(
    raft: &Raft<TypeConfig>,
    identity: &Identity,
    request: RequestFrame,
) -> ResponseFrame {
    if request.cluster_id != identity.cluster_id {
        tracing::error!(from = request.from, theirs = %request.cluster_id, ours = %identity.cluster_id,
            "refused raft frame for another cluster");
        return ResponseFrame::Refused {
            code: RefusalCode::WrongCluster,
            message: format!(
                "this node belongs to cluster {:?}, not {:?}",
                identity.cluster_id, request.cluster_id
            ),
        };
    }
    if request.target != identity.node_id {
        tracing::error!(
            from = request.from,
            target = request.target,
            ours = identity.node_id,
            "refused raft frame addressed to another node"
        );
        return ResponseFrame::Refused {
            code: RefusalCode::WrongNode,
            message: format!(
                "this is node {}, not node {}",
                identity.node_id, request.target
            ),
        };
    }
    if let (Some(theirs), Some(ours)) = (request.genesis, identity.genesis.get()) {
        if theirs != ours {
            tracing::error!(from = request.from, %theirs, %ours,
                "refused raft frame from a node with another genesis");
            return ResponseFrame::Refused {
                code: RefusalCode::WrongGenesis,
                message: format!(
                    "node {} holds genesis entry {ours}; node {} holds {theirs}: one of them \
                     holds a history that is not this cluster's (initialized on its own, or \
                     by another cluster). Stop that node, move its data directory away, start \
                     it empty and add it again",
                    identity.node_id, request.from
                ),
            };
        }
    }
    match &request.rpc {
        Rpc::Vote(vote) => {
            // A removed voter that never received the configuration without it keeps
            // campaigning in ever higher terms; its votes are refused, and the refusal tells
            // it why. Only votes: a leader this node does not know yet (a lagging node two
            // configurations behind) must still be able to replicate to it.
            //
            // Only when this node's configuration is news to the candidate: a removed voter
            // never received the configuration that left it out, so its last log id is
            // below that configuration's. A candidate whose log already reaches past it is
            // asking a lagging node that has not seen the configuration adding it yet: that
            // refusal would mark a member as removed, and one elected anyway (by the nodes
            // that know it) would lead while answering every client `REMOVED`, with nothing
            // to clear the mark (a leader receives no appends). Found by the simulator
            // (seed 1021, five nodes).
            let metrics = raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            let known = membership.nodes().next().is_some();
            let news_to_candidate = vote.last_log_id < *metrics.membership_config.log_id();
            if known && news_to_candidate && membership.get_node(&request.from).is_none() {
                tracing::info!(
                    from = request.from,
                    "refused a vote request from a non-member"
                );
                return ResponseFrame::Refused {
                    code: RefusalCode::NotAMember,
                    message: format!(
                        "node {from} is not a member of cluster {cluster:?} as node {id} knows \
                         it: it was removed. Stop it, or add it back with `docket member add \
                         {from}`",
                        from = request.from,
                        cluster = identity.cluster_id,
                        id = identity.node_id,
                    ),
                };
            }
        }
        Rpc::Append(_) | Rpc::Snapshot(_) => {
            // A leader replicates to this node: it is a member again (if it ever was not).
            if identity.removed.get() {
                tracing::info!(
                    from = request.from,
                    "a leader replicates to this node again"
                );
                identity.removed.set(false);
            }
        }
    }
    match request.rpc {
        Rpc::Append(rpc) => {
            // Marked on arrival too: a long append (a large batch, a slow flush) must not
            // look like silence to the election trigger while it is being written. (A
            // deposed leader's appends mark it as well, which only holds the trigger back:
            // openraft's own timer, which such appends do not reset, still runs.)
            identity.leader_heard.mark();
            let (rpc, kept_last) = pacing::pace(raft, rpc, identity.pacing).await;
            let response = raft
                .append_entries(rpc)
                .await
                .map(|r| pacing::answer(r, kept_last));
            // Any answer but a higher vote means this node follows the sender's term.
            if matches!(
                &response,
                Ok(AppendEntriesResponse::Success
                    | AppendEntriesResponse::PartialSuccess(_)
                    | AppendEntriesResponse::Conflict)
            ) {
                identity.leader_heard.mark();
            }
            ResponseFrame::Append(response)
        }
        Rpc::Vote(rpc) => ResponseFrame::Vote(raft.vote(rpc).await),
        Rpc::Snapshot(rpc) => {
            let _receiving = identity.snapshots.begin();
            let leader_vote = rpc.vote;
            let response = raft.install_snapshot(rpc).await;
            // A chunk this node took under the sender's vote is word from its leader, as
            // an accepted append is: the election trigger's silence starts after it.
            if matches!(&response, Ok(taken) if taken.vote == leader_vote) {
                identity.leader_heard.mark();
            }
            ResponseFrame::Snapshot(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use openraft::{CommittedLeaderId, LogId, SnapshotMeta, StoredMembership};

    use super::*;
    use crate::snapshot_file::SnapshotFile;

    /// What the fake receiver saw of one chunk: its offset, its size, and whether it was
    /// the last.
    type Seen = Arc<Mutex<Vec<(u64, usize, bool)>>>;

    /// A receiver that answers every chunk at once except the last, which it answers after
    /// `install`, as a node does once it has verified and replayed the snapshot. With
    /// `drop_at`, it closes the connection the first time that offset arrives.
    async fn receiver(install: Duration, drop_at: Option<u64>) -> (String, Seen) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let seen: Seen = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            let mut dropped = false;
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                let mut conn = framed(stream);
                while let Some(Ok(bytes)) = conn.next().await {
                    let frame: RequestFrame = codec::decode(&bytes).expect("a request frame");
                    let Rpc::Snapshot(request) = frame.rpc else {
                        panic!("only snapshot chunks are sent here");
                    };
                    log.lock().expect("seen").push((
                        request.offset,
                        request.data.len(),
                        request.done,
                    ));
                    if drop_at == Some(request.offset) && !dropped {
                        dropped = true;
                        break;
                    }
                    if request.done {
                        tokio::time::sleep(install).await;
                    }
                    let response =
                        ResponseFrame::Snapshot(Ok(InstallSnapshotResponse { vote: request.vote }));
                    let encoded = codec::encode(&response).expect("encode");
                    if conn
                        .send(tokio_util::bytes::Bytes::from(encoded))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        (addr, seen)
    }

    fn client(addr: String, rpc_timeout: Duration) -> PeerClient<TcpTransport> {
        PeerClient {
            transport: TcpTransport,
            identity: Identity {
                cluster_id: "snapshot-test".to_owned(),
                node_id: 1,
                genesis: GenesisCell::fixed(None),
                removed: Removed::default(),
                leader_heard: LeaderHeard::default(),
                pacing: ApplyPacing::new(8, Duration::from_millis(50)),
                snapshots: SnapshotsReceiving::default(),
            },
            target: 2,
            addr,
            rpc_timeout,
            conn: None,
        }
    }

    fn snapshot(bytes: usize) -> openraft::Snapshot<TypeConfig> {
        let last = LogId::new(CommittedLeaderId::new(1, 1), 9);
        openraft::Snapshot {
            meta: SnapshotMeta {
                last_log_id: Some(last),
                last_membership: StoredMembership::default(),
                snapshot_id: "1-1-9".to_owned(),
            },
            snapshot: Box::new(SnapshotFile::from_bytes(&vec![7u8; bytes]).expect("file")),
        }
    }

    const CHUNK_BYTES: usize = 4096;
    const RPC_TIMEOUT: Duration = Duration::from_millis(100);

    fn vote() -> Vote {
        Vote::new_committed(1, 1)
    }

    /// Streams a snapshot of `bytes` in chunks of [`CHUNK_BYTES`], never cancelled.
    async fn send(
        peer: &mut PeerClient<TcpTransport>,
        bytes: usize,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        peer.send_snapshot(
            vote(),
            snapshot(bytes),
            std::future::pending(),
            Duration::from_secs(2),
            CHUNK_BYTES,
        )
        .await
    }

    #[tokio::test]
    async fn the_last_chunk_waits_for_an_install_longer_than_a_call_may_take() {
        // The install takes four times the deadline of any other call; it is answered,
        // and no chunk is sent twice.
        let (addr, seen) = receiver(RPC_TIMEOUT * 4, None).await;
        let mut peer = client(addr, RPC_TIMEOUT);
        let response = send(&mut peer, 2 * CHUNK_BYTES + 100)
            .await
            .expect("the snapshot is installed");
        assert_eq!(response.vote, vote());
        assert_eq!(
            *seen.lock().expect("seen"),
            [
                (0, CHUNK_BYTES, false),
                (CHUNK_BYTES as u64, CHUNK_BYTES, false),
                (2 * CHUNK_BYTES as u64, 100, true),
            ]
        );
    }

    /// A served snapshot is written as it is read (`SnapshotFile::lazy`): its length is
    /// unknown when the first chunk goes, and the chunk that reaches its end is the last,
    /// also when that end falls on a chunk boundary.
    #[tokio::test]
    async fn a_snapshot_written_as_it_is_sent_ends_with_the_chunk_that_reaches_its_end() {
        for (pieces, last) in [(9, CHUNK_BYTES / 4), (12, CHUNK_BYTES)] {
            let (addr, seen) = receiver(Duration::ZERO, None).await;
            let mut peer = client(addr, RPC_TIMEOUT);
            let steps = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut lazy = snapshot(0);
            lazy.snapshot = Box::new(
                SnapshotFile::lazy(
                    None,
                    Box::new(crate::snapshot_file::Pieces {
                        piece: CHUNK_BYTES / 4,
                        pieces,
                        steps: steps.clone(),
                    }),
                )
                .expect("file"),
            );
            peer.send_snapshot(
                vote(),
                lazy,
                std::future::pending(),
                Duration::from_secs(2),
                CHUNK_BYTES,
            )
            .await
            .expect("the snapshot is installed");
            assert_eq!(
                *seen.lock().expect("seen"),
                [
                    (0, CHUNK_BYTES, false),
                    (CHUNK_BYTES as u64, CHUNK_BYTES, false),
                    (2 * CHUNK_BYTES as u64, last, true),
                ],
                "{pieces} pieces"
            );
        }
    }

    #[tokio::test]
    async fn a_chunk_whose_connection_drops_is_sent_again() {
        let (addr, seen) = receiver(Duration::ZERO, Some(CHUNK_BYTES as u64)).await;
        let mut peer = client(addr, RPC_TIMEOUT);
        send(&mut peer, 2 * CHUNK_BYTES)
            .await
            .expect("the snapshot is installed after one retry");
        assert_eq!(
            *seen.lock().expect("seen"),
            [
                (0, CHUNK_BYTES, false),
                (CHUNK_BYTES as u64, CHUNK_BYTES, true),
                (CHUNK_BYTES as u64, CHUNK_BYTES, true),
            ]
        );
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_fails_the_stream_after_its_attempts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        // Accepts and reads, never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                held.push(stream);
            }
        });
        let mut peer = client(addr, Duration::from_millis(20));
        let error = send(&mut peer, 3 * CHUNK_BYTES)
            .await
            .expect_err("nobody answers");
        assert!(
            matches!(error, StreamingError::Network(_)),
            "a timed-out chunk is a network error: {error:?}"
        );
    }

    #[tokio::test]
    async fn elections_wait_while_a_snapshot_is_taken_and_for_one_lease_after() {
        let long = Duration::from_secs(60);
        let short = Duration::from_millis(10);
        let receiving = SnapshotsReceiving::default();
        assert!(!receiving.hold_elections(long), "nothing received yet");
        let first = receiving.begin();
        let second = receiving.clone().begin();
        tokio::time::sleep(short * 2).await;
        assert!(
            receiving.hold_elections(short),
            "a chunk in progress holds elections however long it takes"
        );
        drop(first);
        assert!(receiving.hold_elections(short), "one chunk is still taken");
        drop(second);
        assert!(
            receiving.hold_elections(long),
            "within a lease of the last chunk"
        );
        tokio::time::sleep(short * 2).await;
        assert!(
            !receiving.hold_elections(short),
            "a lease after the last chunk, elections resume"
        );
    }

    #[test]
    fn the_last_chunk_deadline_grows_with_the_snapshot() {
        let chunk = Duration::from_secs(1);
        assert_eq!(install_deadline(chunk, 0), chunk);
        assert_eq!(install_deadline(chunk, 1), chunk + Duration::from_secs(1));
        let three_gib = 3 * 1024 * 1024 * 1024;
        assert_eq!(
            install_deadline(chunk, three_gib),
            chunk + Duration::from_secs(three_gib / SNAPSHOT_INSTALL_BYTES_PER_S_MIN)
        );
    }

    #[test]
    fn a_snapshot_chunk_is_framed_as_openraft_encodes_it_and_decodes_back() {
        let chunk = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 77)),
                last_membership: StoredMembership::default(),
                snapshot_id: "3-1-77".into(),
            },
            offset: 4 << 20,
            data: (0..5_000u32).map(|i| (i * 7) as u8).collect(),
            done: true,
        };
        let ours = codec::encode(&Rpc::Snapshot(chunk.clone())).expect("encode");
        // openraft's own derive, behind the variant index (2: `Snapshot`).
        let mut theirs = 2u32.to_le_bytes().to_vec();
        theirs.extend(codec::encode(&chunk).expect("encode"));
        assert_eq!(ours, theirs, "the frame is unchanged on the wire");
        match codec::decode::<Rpc>(&ours).expect("decode") {
            Rpc::Snapshot(back) => assert_eq!(back, chunk),
            other => panic!("decoded {other:?}"),
        }
        // A length past the bytes is refused, not allocated.
        let mut short = ours.clone();
        short.truncate(ours.len() - 100);
        assert!(codec::decode::<Rpc>(&short).is_err());
    }
}
