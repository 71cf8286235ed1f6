//! Snapshots: what a new or lagging node needs to end with the identical ledger and state
//! hash, and the checks a node makes before it accepts one.
//!
//! ## Format
//!
//! ```text
//! magic     8 bytes  "dktsnap3"
//! header    u64 little-endian length (at most HEADER_BYTES_MAX), then bincode
//!           Header { last_applied, last_membership, ledger_len,
//!                    core: Option<{ state_hash, head_hash, state_bytes: 0 }> }
//! ledger    ledger_len times: u64 little-endian length (at most ENTRY_BYTES_MAX),
//!           then LedgerEntry::to_bytes()
//! ```
//!
//! The ledger is the whole ledger, from genesis, so the receiver ends with the same ledger
//! as the sender, not only the same state. Nothing follows it: the receiver replays the
//! ledger anyway (see "Trust"), and the replay builds its state rows, so the state itself
//! is not shipped; the header carries its hash, which the replay must reach.
//! (`dktsnap2` shipped the state's bytes after the ledger; `dktsnap1` inside the header.)
//!
//! ## Streaming
//!
//! A snapshot never exists whole in memory. Building one only records its header
//! ([`SnapshotBuilder`]); serving it (`get_current_snapshot`) hands over a lazy
//! [`SnapshotFile`] ([`serve`]) in O(1), whose bytes a [`Spill`] writes as the network
//! client's reads reach them (a temporary file; the client reads it in chunks and the
//! receiver's transport writes them into one), the ledger read from the store a page of
//! [`BUILD_PAGE_ENTRIES`] at a time through a [`IO_BUFFER_BYTES`] buffer. So the first
//! chunk leaves after one chunk's worth of ledger is read, and chunks keep arriving: a
//! receiver holds its elections back while they do (`SnapshotsReceiving`). Writing the
//! whole file first took seconds at hundreds of thousands of entries, during which the
//! receiver heard nothing from its leader, campaigned, and deposed it; the next leader
//! started the same snapshot over (a growth benchmark with snapshots every 200 Raft
//! entries and no log kept churned through 512 terms in 9 minutes), and it held the
//! state machine worker, which applies nothing meanwhile. The receiver reads the
//! file back through a buffer of the same size, one entry at a time, on a thread of its own
//! that decodes and checks each entry and hands them on in batches of
//! [`PIPELINE_BATCH_BYTES`] (at most [`PIPELINE_BATCHES`] ahead) to the replay, which
//! applies each and hands it to the store's staging area (`Store::begin_install`), which
//! writes it in batches of `STAGE_BATCH_BYTES`; the replay writes its state rows to the
//! next generation of the store's rows whenever `REPLAY_PENDING_ROWS_MAX` are pending.
//! Memory is O(one entry + the batches in flight + a page of rows + the deferred set),
//! whatever the size of the ledger or the state.
//!
//! ## Trust
//!
//! A received snapshot is checked as if it came from a stranger, as it is read: the chain
//! is verified from genesis entry by entry (indexes, links, entry hashes, proposal ids,
//! canonical encoding), each entry is replayed (trusted replay, `State::apply`) as it
//! arrives, and the replayed state must have the shipped state hash. Entries and rows are
//! written only to the staging area and the next generation of rows while this goes on;
//! the ledger, the state and the applied position are switched over (`Staging::commit`)
//! only after every check passed. A snapshot that fails any check, or ends early, is refused with a
//! `StorageError` and the staging area is cleared: the node keeps exactly what it had.
//!
//! A snapshot this node serves is read back from its own ledger tree, and its chain is
//! checked against the captured head on the way out, on the stored bytes
//! (`ChainVerifier::push_canonical`: links, times, genesis and one hash an entry, with no
//! decoding and no id recomputation), so a torn local ledger is noticed by the sender,
//! not only by the receiver; a build checks the head entry alone.
//!
//! ## Limits
//!
//! The whole ledger is shipped, even to a node that has a prefix of it (the receiver skips
//! rewriting entries it already has, but they cross the network and are verified again).
//! Sending a snapshot writes its file from the store as it goes: O(ledger) time, bounded
//! memory, paid once per send (building one and serving it are O(1)).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use docket_core::ledger::ChainVerifier;
use docket_core::state::{ApplyError, Changes};
use docket_core::{ChainError, EntryHash, LedgerEntry, Rows, State, StateHash};
use openraft::{AnyError, RaftSnapshotBuilder, StorageError, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::snapshot_file::SnapshotFile;
use crate::state_machine::REPLAY_PENDING_ROWS_MAX;
use crate::store::{CoreRecord, SnapshotRecord, Staging, Store, StoreError};
use crate::{LogId, NodeId, SnapshotMeta, StoredMembership, TypeConfig};

pub(crate) const MAGIC: &[u8; 8] = b"dktsnap3";

/// Largest encoded header accepted. A header is two log ids, a membership and two hashes:
/// hundreds of bytes for any realistic cluster; the bound only keeps a corrupt length
/// from allocating.
pub const HEADER_BYTES_MAX: u64 = 1024 * 1024;

/// Largest ledger entry accepted. An entry is produced by applying one command, and every
/// command reached the log inside a Raft frame, so no honest entry is larger than a frame.
pub const ENTRY_BYTES_MAX: u64 = crate::network::FRAME_BYTES_MAX as u64;

/// Buffer between a snapshot file and the code that writes or reads it: the builder's
/// writes and the receiver's reads go through one buffer of this size.
pub const IO_BUFFER_BYTES: usize = 64 * 1024;

/// Ledger entries read from the store per page while a snapshot is written (a simulated
/// disk copies a scanned range out before visiting it, so the page bounds that too).
pub const BUILD_PAGE_ENTRIES: u64 = 1024;

/// Everything in a snapshot but the ledger entries.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct Header {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
    pub ledger_len: u64,
    /// `None` exactly when `ledger_len == 0` (no genesis yet). Its `state_bytes` is 0.
    pub core: Option<CoreRecord>,
}

impl Header {
    pub fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.last_membership.clone(),
            snapshot_id: snapshot_id(self.last_applied.as_ref()),
        }
    }

    pub fn record(&self) -> SnapshotRecord {
        SnapshotRecord {
            meta: self.meta(),
            ledger_len: self.ledger_len,
            core: self.core.clone(),
            generation: 0,
        }
    }

    pub fn from_record(record: &SnapshotRecord) -> Header {
        Header {
            last_applied: record.meta.last_log_id,
            last_membership: record.meta.last_membership.clone(),
            ledger_len: record.ledger_len,
            core: record.core.clone(),
        }
    }
}

/// A snapshot's id is its last log id: the log prefix determines the ledger, the state and
/// the membership, so two snapshots with the same last log id have the same contents on any
/// node. That makes ids deterministic (the simulator can replay them).
pub fn snapshot_id(last_log_id: Option<&LogId>) -> String {
    match last_log_id {
        Some(id) => id.to_string(),
        None => "empty".to_owned(),
    }
}

/// Why a received snapshot is refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a docket snapshot (bad magic)")]
    Magic,
    #[error("header of {bytes} bytes is over the limit HEADER_BYTES_MAX ({HEADER_BYTES_MAX})")]
    HeaderTooLarge { bytes: u64 },
    #[error("header does not decode: {0}")]
    Header(codec::Error),
    #[error("truncated in the {at}")]
    Truncated { at: String },
    #[error("{0} unexpected bytes after the ledger")]
    Trailing(u64),
    #[error("snapshot contents disagree with its metadata ({what})")]
    Meta { what: &'static str },
    #[error("a snapshot with {ledger_len} ledger entries must {what}")]
    Shape { ledger_len: u64, what: &'static str },
    #[error(
        "ledger entry {index} of {bytes} bytes is over the limit ENTRY_BYTES_MAX ({ENTRY_BYTES_MAX})"
    )]
    EntryTooLarge { index: u64, bytes: u64 },
    #[error("ledger entry {index} does not decode: {message}")]
    Entry { index: u64, message: String },
    #[error("ledger entry {index} is not in canonical encoding")]
    NotCanonical { index: u64 },
    #[error("hash chain: {0}")]
    Chain(#[from] ChainError),
    #[error("replaying ledger entry {index}: {error}")]
    Replay { index: u64, error: ApplyError },
    #[error("head hash {found:?} differs from the shipped {expected:?}")]
    Head {
        expected: EntryHash,
        found: EntryHash,
    },
    #[error("replaying the ledger gives state {found}, the snapshot says {expected}")]
    StateHash {
        expected: StateHash,
        found: StateHash,
    },
    #[error("the header announces a state section of {0} bytes; this format ships none")]
    StateSection(u64),
}

/// Why an install stopped: the snapshot was refused, or this node's storage failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error(transparent)]
    Refused(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn write_error(source: io::Error) -> StoreError {
    StoreError::Io {
        context: "writing a snapshot file".to_owned(),
        source,
    }
}

fn read_error(source: io::Error) -> StoreError {
    StoreError::Io {
        context: "reading a snapshot file".to_owned(),
        source,
    }
}

/// Notes that the snapshot code holds `bytes` in buffers of its own right now; tests read
/// the high-water mark ([`meter`]) to check that memory does not grow with the ledger.
#[inline]
pub(crate) fn note_held(bytes: usize) {
    #[cfg(test)]
    meter::note(bytes);
    #[cfg(not(test))]
    let _ = bytes;
}

/// The high-water mark of [`note_held`], per thread (tests only).
#[cfg(test)]
pub(crate) mod meter {
    use std::cell::Cell;

    thread_local!(static HIGH_WATER_BYTES: Cell<usize> = const { Cell::new(0) });

    pub fn reset() {
        HIGH_WATER_BYTES.with(|h| h.set(0));
    }

    pub fn note(bytes: usize) {
        HIGH_WATER_BYTES.with(|h| h.set(h.get().max(bytes)));
    }

    pub fn high_water_bytes() -> usize {
        HIGH_WATER_BYTES.with(Cell::get)
    }
}

/// A writer that notes the size of each write passing through it ([`note_held`]).
struct Metered<W>(W);

impl<W: Write> Write for Metered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        note_held(buf.len());
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Writes the snapshot of `header` a piece at a time: the magic and header first, then
/// this node's own ledger `[0, header.ledger_len)`, read from the store in pages of
/// [`BUILD_PAGE_ENTRIES`] and chain-checked on the way, one page per [`Spill::step`]; the
/// last step checks that the ledger ends at the captured head.
#[derive(Debug)]
pub(crate) struct Spill {
    header: Header,
    verifier: ChainVerifier,
    head: Option<EntryHash>,
    /// The next ledger index to write; `None` before the header is.
    next: Option<u64>,
}

impl Spill {
    pub(crate) fn new(header: Header) -> Spill {
        Spill {
            header,
            verifier: ChainVerifier::from_genesis(),
            head: None,
            next: None,
        }
    }

    /// Writes the next piece to `out`; returns whether the snapshot is complete.
    pub(crate) fn step(&mut self, store: &Store, out: impl Write) -> Result<bool, StoreError> {
        let mut out = BufWriter::with_capacity(IO_BUFFER_BYTES, Metered(out));
        let lo = match self.next {
            None => {
                let encoded = codec::encode(&self.header).map_err(|source| StoreError::Encode {
                    what: "snapshot header",
                    source,
                })?;
                out.write_all(MAGIC).map_err(write_error)?;
                out.write_all(&(encoded.len() as u64).to_le_bytes())
                    .map_err(write_error)?;
                out.write_all(&encoded).map_err(write_error)?;
                0
            }
            Some(lo) => {
                let hi = self
                    .header
                    .ledger_len
                    .min(lo.saturating_add(BUILD_PAGE_ENTRIES));
                let (verifier, head) = (&mut self.verifier, &mut self.head);
                store.ledger_for_each(lo, hi, |_, bytes| {
                    // On the stored bytes, with no decoding: one hash an entry (a decode
                    // and a re-encode took most of a chunk's time).
                    let hash = verifier
                        .push_canonical(bytes)
                        .map_err(|e| StoreError::Corrupt(format!("local ledger: {e}")))?;
                    *head = Some(hash);
                    note_held(IO_BUFFER_BYTES + bytes.len());
                    out.write_all(&(bytes.len() as u64).to_le_bytes())
                        .map_err(write_error)?;
                    out.write_all(bytes).map_err(write_error)
                })?;
                hi
            }
        };
        self.next = Some(lo);
        let complete = lo >= self.header.ledger_len;
        if complete && self.head != self.header.core.as_ref().map(|c| c.head_hash) {
            return Err(StoreError::Corrupt(format!(
                "local ledger head {:?} differs from the snapshot's state head",
                self.head
            )));
        }
        out.flush().map_err(write_error)?;
        Ok(complete)
    }
}

/// Writes the snapshot of `header` to `out` whole (see [`Spill`]).
pub(crate) fn write(store: &Store, header: &Header, mut out: impl Write) -> Result<(), StoreError> {
    let mut spill = Spill::new(header.clone());
    while !spill.step(store, &mut out)? {}
    Ok(())
}

/// A [`Spill`] of this node's store, run as a lazy [`SnapshotFile`] is read.
#[derive(Debug)]
struct Served {
    store: Arc<Store>,
    spill: Spill,
}

impl crate::snapshot_file::Source for Served {
    fn step(&mut self, out: &mut std::fs::File) -> io::Result<bool> {
        self.spill.step(&self.store, out).map_err(io::Error::other)
    }
}

/// The snapshot of `header` as a lazy [`SnapshotFile`] in the store's spill directory:
/// O(1) now, its bytes written from the ledger as they are read.
pub(crate) fn serve(store: Arc<Store>, header: Header) -> Result<SnapshotFile, StoreError> {
    let dir = store.spill_dir();
    SnapshotFile::lazy(
        dir.as_deref(),
        Box::new(Served {
            store,
            spill: Spill::new(header),
        }),
    )
    .map_err(write_error)
}

/// A snapshot that passed every check; its ledger and rows went to the receiver as they
/// were read.
#[derive(Debug)]
pub(crate) struct Verified {
    pub header: Header,
    /// The replayed state, `None` before genesis. Its pending rows (those not yet handed
    /// to the receiver) are still in it.
    pub state: Option<State>,
}

/// Where a verified snapshot goes while it is read.
pub(crate) trait Receiver {
    /// Takes verified ledger entry `index` (canonical bytes); returns the bytes it holds in
    /// memory (for the meter).
    fn entry(&mut self, index: u64, bytes: &[u8]) -> Result<usize, StoreError>;
    /// Takes a page of the replayed state's rows.
    fn rows(&mut self, changes: Changes) -> Result<(), StoreError>;
}

impl Receiver for Staging<'_> {
    fn entry(&mut self, index: u64, bytes: &[u8]) -> Result<usize, StoreError> {
        Staging::entry(self, index, bytes)
    }

    fn rows(&mut self, changes: Changes) -> Result<(), StoreError> {
        Staging::rows(self, changes)
    }
}

fn read_exact_or(
    reader: &mut impl Read,
    buf: &mut [u8],
    at: impl FnOnce() -> String,
) -> Result<(), VerifyError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(SnapshotError::Truncated { at: at() }.into())
        }
        Err(e) => Err(read_error(e).into()),
    }
}

fn read_u64(reader: &mut impl Read, at: impl FnOnce() -> String) -> Result<u64, VerifyError> {
    let mut bytes = [0u8; 8];
    read_exact_or(reader, &mut bytes, at)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Reads exactly `len` bytes into `buf` (cleared first). The buffer grows only as bytes
/// arrive, so a length that lies allocates no more than the input holds.
fn read_len(
    reader: &mut impl Read,
    len: u64,
    buf: &mut Vec<u8>,
    at: impl FnOnce() -> String,
) -> Result<(), VerifyError> {
    buf.clear();
    let n = reader
        .by_ref()
        .take(len)
        .read_to_end(buf)
        .map_err(read_error)?;
    if n as u64 != len {
        return Err(SnapshotError::Truncated { at: at() }.into());
    }
    Ok(())
}

/// Ledger bytes the snapshot reader hands the replay at once (one batch: at least one
/// entry, whatever its size; see [`verify`]).
pub const PIPELINE_BATCH_BYTES: usize = 16 * 1024;

/// Batches the reader may have read ahead of the replay, besides the one each side holds.
pub const PIPELINE_BATCHES: usize = 2;

/// Entries the reader read, decoded and checked, for the replay: their bytes back to back.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Each entry's index, end in `bytes` and decoded form.
    entries: Vec<(u64, usize, LedgerEntry)>,
}

/// What the reader sends the replay: a batch, then the end of the ledger or why it stopped.
enum Handed {
    Batch(Batch),
    End,
    Refused(VerifyError),
}

/// Reads a received snapshot from `input` and checks it against the metadata it came
/// with, as it reads (see "Trust" in the module docs). Each ledger entry, once verified and
/// replayed, goes to `receiver`. The replayed state lives on `rows` (the generation the
/// install builds), its rows handed to the receiver whenever
/// [`REPLAY_PENDING_ROWS_MAX`] are pending; with `rows` `None` the state stays in memory.
///
/// Two threads share the work: a reader (`docket-snap-read`) reads each entry, decodes it,
/// checks its chain link, hash, ids and encoding, and hands the entries on in batches of
/// [`PIPELINE_BATCH_BYTES`], at most [`PIPELINE_BATCHES`] ahead; the calling thread
/// replays them in order and gives them to the receiver. The checks are the same and in
/// the same order as one thread's: the replay sees every entry before the reader's refusal
/// of a later one, so a snapshot is refused for the first fault in it either way.
/// Memory: the read buffer, the batches in flight, one entry, a page of rows and the
/// deferred set.
pub(crate) fn verify(
    input: impl Read + Send,
    meta: &SnapshotMeta,
    receiver: &mut impl Receiver,
    rows: Option<Arc<dyn Rows>>,
) -> Result<Verified, VerifyError> {
    let mut reader = BufReader::with_capacity(IO_BUFFER_BYTES, input);
    let header = read_header(&mut reader, meta)?;
    let ledger_len = header.ledger_len;
    let in_flight = AtomicUsize::new(0);
    let (send, batches) = mpsc::sync_channel(PIPELINE_BATCHES);
    let replayed = std::thread::scope(|scope| {
        let in_flight = &in_flight;
        let read = std::thread::Builder::new()
            .name("docket-snap-read".to_owned())
            .spawn_scoped(scope, move || {
                let last = match read_ledger(&mut reader, ledger_len, &send, in_flight) {
                    Ok(()) => Handed::End,
                    Err(error) => Handed::Refused(error),
                };
                // The replay may have stopped first; then nobody is listening.
                let _ = send.send(last);
            })
            .map_err(|e| {
                VerifyError::Store(StoreError::Io {
                    context: "starting the snapshot reader".to_owned(),
                    source: e,
                })
            })?;
        let replayed = replay(&batches, receiver, rows, in_flight);
        // A replay that stopped early lets the reader's next send fail, so it ends too.
        drop(batches);
        if read.join().is_err() {
            // Its panic is the cause of whatever the replay saw.
            return Err(VerifyError::Store(StoreError::Corrupt(
                "the snapshot reader panicked".to_owned(),
            )));
        }
        replayed
    })?;
    let (state, head) = replayed;

    if let (Some(core), Some(replayed), Some(head)) = (&header.core, &state, head) {
        if head != core.head_hash {
            return Err(SnapshotError::Head {
                expected: core.head_hash,
                found: head,
            }
            .into());
        }
        let found = replayed.hash();
        if found != core.state_hash {
            return Err(SnapshotError::StateHash {
                expected: core.state_hash,
                found,
            }
            .into());
        }
    }
    Ok(Verified { header, state })
}

/// The header, checked against the metadata the snapshot came with.
fn read_header(reader: &mut impl Read, meta: &SnapshotMeta) -> Result<Header, VerifyError> {
    let mut magic = [0u8; 8];
    read_exact_or(reader, &mut magic, || "magic".to_owned())?;
    if &magic != MAGIC {
        return Err(SnapshotError::Magic.into());
    }
    let header_len = read_u64(reader, || "header length".to_owned())?;
    if header_len > HEADER_BYTES_MAX {
        return Err(SnapshotError::HeaderTooLarge { bytes: header_len }.into());
    }
    let mut buf = Vec::new();
    read_len(reader, header_len, &mut buf, || "header".to_owned())?;
    let header: Header = codec::decode(&buf).map_err(SnapshotError::Header)?;
    if header.last_applied != meta.last_log_id {
        return Err(SnapshotError::Meta {
            what: "last log id",
        }
        .into());
    }
    if header.last_membership != meta.last_membership {
        return Err(SnapshotError::Meta { what: "membership" }.into());
    }
    let ledger_len = header.ledger_len;
    if let Some(core) = header.core.as_ref().filter(|c| c.state_bytes != 0) {
        return Err(SnapshotError::StateSection(core.state_bytes).into());
    }
    match (&header.core, ledger_len) {
        (None, 0) | (Some(_), 1..) => Ok(header),
        (Some(_), 0) => Err(SnapshotError::Shape {
            ledger_len,
            what: "carry no state",
        }
        .into()),
        (None, _) => Err(SnapshotError::Shape {
            ledger_len,
            what: "carry the state",
        }
        .into()),
    }
}

/// The reader's side of [`verify`]: every ledger entry read, decoded and checked (chain,
/// hash, ids, canonical encoding), sent on in batches; then nothing may follow. Stops
/// quietly when the replay stopped listening.
fn read_ledger(
    reader: &mut impl Read,
    ledger_len: u64,
    send: &mpsc::SyncSender<Handed>,
    in_flight: &AtomicUsize,
) -> Result<(), VerifyError> {
    let mut verifier = ChainVerifier::from_genesis();
    let mut batch = Batch::default();
    let mut buf = Vec::new();
    let hand_on = |batch: &mut Batch| -> bool {
        in_flight.fetch_add(batch.bytes.len(), Ordering::Relaxed);
        send.send(Handed::Batch(std::mem::take(batch))).is_ok()
    };
    for index in 0..ledger_len {
        let checked = (|| {
            let len = read_u64(reader, || format!("length of ledger entry {index}"))?;
            if len > ENTRY_BYTES_MAX {
                return Err(SnapshotError::EntryTooLarge { index, bytes: len }.into());
            }
            read_len(reader, len, &mut buf, || format!("ledger entry {index}"))?;
            let entry = LedgerEntry::from_bytes(&buf).map_err(|e| SnapshotError::Entry {
                index,
                message: e.to_string(),
            })?;
            verifier.push(&entry, true).map_err(SnapshotError::Chain)?;
            if entry.to_bytes() != buf {
                return Err(SnapshotError::NotCanonical { index }.into());
            }
            Ok::<_, VerifyError>(entry)
        })();
        let entry = match checked {
            Ok(entry) => entry,
            Err(error) => {
                // What came before the fault is replayed first, as one thread would.
                if !batch.entries.is_empty() && !hand_on(&mut batch) {
                    return Ok(());
                }
                return Err(error);
            }
        };
        batch.bytes.extend_from_slice(&buf);
        batch.entries.push((index, batch.bytes.len(), entry));
        if batch.bytes.len() >= PIPELINE_BATCH_BYTES && !hand_on(&mut batch) {
            return Ok(());
        }
    }
    if !batch.entries.is_empty() && !hand_on(&mut batch) {
        return Ok(());
    }
    let trailing = io::copy(reader, &mut io::sink()).map_err(read_error)?;
    if trailing > 0 {
        return Err(SnapshotError::Trailing(trailing).into());
    }
    Ok(())
}

/// The replay's side of [`verify`]: each checked entry applied in order and given to the
/// receiver, until the reader reports the end or a refusal. Returns the replayed state and
/// the last entry's hash.
fn replay(
    batches: &mpsc::Receiver<Handed>,
    receiver: &mut impl Receiver,
    rows: Option<Arc<dyn Rows>>,
    in_flight: &AtomicUsize,
) -> Result<(Option<State>, Option<EntryHash>), VerifyError> {
    let mut state: Option<State> = None;
    let mut head = None;
    loop {
        let batch = match batches.recv() {
            Ok(Handed::Batch(batch)) => batch,
            Ok(Handed::End) => return Ok((state, head)),
            Ok(Handed::Refused(error)) => return Err(error),
            // The reader always ends with `End` or a refusal; without one, it panicked
            // (`verify` joins it and reports that first).
            Err(mpsc::RecvError) => {
                return Err(VerifyError::Store(StoreError::Corrupt(
                    "the snapshot reader stopped before the end of the ledger".to_owned(),
                )))
            }
        };
        let mut start = 0;
        for (index, end, entry) in &batch.entries {
            let (index, bytes) = (*index, &batch.bytes[start..*end]);
            start = *end;
            let replayed = match &mut state {
                None => {
                    let genesis = State::from_genesis_entry(entry)
                        .map_err(|error| SnapshotError::Replay { index, error })?;
                    state.insert(match &rows {
                        Some(rows) => genesis.on_rows(rows.clone()),
                        None => genesis,
                    })
                }
                Some(state) => {
                    state
                        .apply(entry)
                        .map_err(|error| SnapshotError::Replay { index, error })?;
                    state
                }
            };
            if rows.is_some() && replayed.pending_rows() >= REPLAY_PENDING_ROWS_MAX {
                receiver.rows(replayed.take_changes())?;
            }
            head = Some(entry.hash);
            let held = receiver.entry(index, bytes)?;
            note_held(IO_BUFFER_BYTES + in_flight.load(Ordering::Relaxed) + held);
        }
        in_flight.fetch_sub(batch.bytes.len(), Ordering::Relaxed);
    }
}

/// A receiver that keeps nothing (tests).
#[cfg(test)]
struct Discard;

#[cfg(test)]
impl Receiver for Discard {
    fn entry(&mut self, _index: u64, _bytes: &[u8]) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn rows(&mut self, _changes: Changes) -> Result<(), StoreError> {
        Ok(())
    }
}

/// [`verify`] of bytes in memory, keeping the state in memory (tests).
#[cfg(test)]
pub(crate) fn verify_bytes(bytes: &[u8], meta: &SnapshotMeta) -> Result<Verified, SnapshotError> {
    match verify(bytes, meta, &mut Discard, None) {
        Ok(verified) => Ok(verified),
        Err(VerifyError::Refused(e)) => Err(e),
        Err(VerifyError::Store(e)) => panic!("a sink that stores nothing failed: {e}"),
    }
}

/// Records a snapshot from a header captured while applies were paused (see
/// `StateMachine::get_snapshot_builder`) as the current snapshot.
///
/// Building writes no snapshot bytes. openraft 0.9 keeps only the meta of a snapshot it
/// has built (its state machine worker maps the result to `Response::BuildSnapshot(meta)`
/// and drops the data) and uses it to purge the log; what it sends a lagging node comes
/// from `get_current_snapshot`, which spills the ledger named by the recorded header when
/// it is needed ([`spill`]: the ledger is append-only, so its first `ledger_len` entries
/// are the same then as now). Spilling at build time wrote the whole ledger to a file no
/// one read, every `snapshot_logs_since_last` Raft entries on every node: O(ledger) work
/// per snapshot (546 MB at 911k entries, measured in the growth benchmark's log).
/// So the build is O(1): it checks that the ledger's entry at `ledger_len - 1` is the
/// captured head (the chain itself is checked whenever the snapshot is served), records
/// the header, and hands back an empty file.
#[derive(Debug)]
pub struct SnapshotBuilder {
    pub(crate) store: Arc<Store>,
    pub(crate) header: Header,
}

impl SnapshotBuilder {
    /// The ledger holds the captured head at `ledger_len - 1` (nothing before genesis).
    fn check_head(&self) -> Result<(), StoreError> {
        let Some(core) = &self.header.core else {
            return Ok(());
        };
        let last = self.header.ledger_len.checked_sub(1).ok_or_else(|| {
            StoreError::Corrupt("a snapshot with a state has an empty ledger".to_owned())
        })?;
        let head = self.store.ledger_get(last)?.map(|entry| entry.hash);
        if head != Some(core.head_hash) {
            return Err(StoreError::Corrupt(format!(
                "local ledger entry {last} is {head:?}, not the snapshot's state head {:?}",
                core.head_hash
            )));
        }
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(
        &mut self,
    ) -> Result<openraft::Snapshot<TypeConfig>, StorageError<NodeId>> {
        let meta = self.header.meta();
        let write_error = |e: StoreError| -> StorageError<NodeId> {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into()
        };
        self.check_head().map_err(write_error)?;
        let current = self
            .store
            .save_snapshot(self.header.record())
            .map_err(write_error)?;
        let empty = SnapshotFile::create_in(self.store.spill_dir().as_deref())
            .map_err(|e| write_error(self::write_error(e)))?;
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            ledger_len = self.header.ledger_len,
            current,
            "built snapshot"
        );
        Ok(openraft::Snapshot {
            meta,
            snapshot: Box::new(empty),
        })
    }
}
