//! [`SnapshotFile`]: openraft's `SnapshotData` for docket, a snapshot spilled to a file.
//!
//! A snapshot is O(ledger) bytes, so neither its builder, its sender nor its receiver may
//! hold it in memory (openraft's default `Cursor<Vec<u8>>` does). It lives in an unnamed
//! temporary file instead: the builder writes it there, the network client
//! (`PeerClient::full_snapshot`) reads it from there in chunks (`AsyncRead + AsyncSeek`),
//! the receiver's transport writes the chunks it gets into one (`AsyncWrite +
//! AsyncSeek`), and the install reads it back entry by entry ([`crate::snapshot`]).
//!
//! ## Why this type, and not `tokio::fs::File`
//!
//! `tokio::fs::File` hands every read, write and seek to tokio's blocking pool and
//! completes when an OS thread is done with it: when that happens is wall-clock timing,
//! which would make the simulator (`sim/`, turmoil, one thread per simulation) schedule
//! differently from run to run. This wrapper does the `std::fs` call inside `poll_*` and
//! is always ready, as a `Cursor` is. The calls are page-cache reads and writes of at most
//! one transport chunk (`network::SNAPSHOT_CHUNK_BYTES`) and nothing is ever `fsync`ed: a
//! snapshot in transit is not durable state (an interrupted transfer starts again), so the
//! file needs no durability and is deleted when dropped.
//!
//! A snapshot a node serves is lazy ([`SnapshotFile::lazy`]): its bytes are written from
//! the ledger as the sender's reads reach them, a page of entries at a time, so the
//! first chunk leaves after one chunk's worth of ledger is read, whatever the ledger's
//! length. Those writes happen inside `poll_read` too, on the sending task: per chunk,
//! the ledger pages that fill it (4 MiB of store reads and file writes, tens of
//! milliseconds), where the whole ledger used to be written on the state machine worker
//! before the first chunk. The sender has the next chunk written ahead on a helper thread
//! while a chunk is on its way ([`SnapshotFile::write_ahead`]), so those writes overlap
//! the round trip; the file is the sender's alone again when the helper is joined, and
//! what the helper wrote is what the reads would have, so the simulator's runs do not
//! depend on when it ran.
//!
//! The file is created in the store's spill directory: the node's data directory on sled
//! (the same file system the node already sizes for its ledger; the OS temp dir may be a
//! RAM-backed tmpfs, which would put the snapshot back in memory), the OS temp dir for a
//! simulated disk, which has no directory (the file is then scratch space of the host
//! process, not simulated state, and nothing about it feeds back into Raft's decisions).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A new unnamed temporary file in `dir` (a store's spill directory), or in the OS temp
/// dir when `None`: where every scratch file of a store goes (see the module docs).
pub(crate) fn spill_file(dir: Option<&Path>) -> io::Result<File> {
    match dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
}

/// What writes a served snapshot's bytes a piece at a time ([`SnapshotFile::lazy`]).
pub(crate) trait Source: Send + std::fmt::Debug {
    /// Appends the next piece of the snapshot to `out` (positioned at the end of what was
    /// written so far); `true` once the snapshot is complete.
    fn step(&mut self, out: &mut File) -> io::Result<bool>;
}

/// A snapshot's bytes in an unnamed temporary file, deleted when dropped.
#[derive(Debug)]
pub struct SnapshotFile {
    file: File,
    /// Where the last `start_seek` left the file, for `poll_complete`.
    seeked: Option<u64>,
    /// A served snapshot whose bytes are still being written: reads write what they reach
    /// first ([`SnapshotFile::lazy`]). `None` once complete, and for every other file.
    source: Option<Box<dyn Source>>,
}

impl SnapshotFile {
    /// A new, empty file in `dir` (the OS temp dir when `None`).
    pub fn create_in(dir: Option<&Path>) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            file: spill_file(dir)?,
            seeked: None,
            source: None,
        })
    }

    /// A snapshot whose bytes `source` writes as they are read, in a new file in `dir`: a
    /// node serving a snapshot sends its first chunk after one chunk's worth of the ledger
    /// is written, not after the whole ledger is (seconds at hundreds of thousands of
    /// entries, during which the receiver heard nothing and campaigned), and the state
    /// machine worker that hands the snapshot over (`get_current_snapshot`) does not stop
    /// applying meanwhile.
    pub(crate) fn lazy(dir: Option<&Path>, source: Box<dyn Source>) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            source: Some(source),
            ..SnapshotFile::create_in(dir)?
        })
    }

    /// A snapshot already written to `file` (an unnamed temporary file: [`crate::seed`]).
    pub(crate) fn from_file(file: File) -> SnapshotFile {
        SnapshotFile {
            file,
            seeked: None,
            source: None,
        }
    }

    /// The file, for synchronous reads and writes (the install); a lazy snapshot is
    /// finished first.
    pub fn file_mut(&mut self) -> io::Result<&mut File> {
        self.finish()?;
        self.seeked = None;
        Ok(&mut self.file)
    }

    /// Its length in bytes (a lazy snapshot is finished first).
    pub fn len(&mut self) -> io::Result<u64> {
        self.finish()?;
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&mut self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The snapshot's length once every byte of it is written; `None` while a lazy
    /// snapshot is still being written.
    pub fn complete_len(&self) -> io::Result<Option<u64>> {
        match self.source {
            Some(_) => Ok(None),
            None => Ok(Some(self.file.metadata()?.len())),
        }
    }

    /// Writes a lazy snapshot on until the file holds at least `target` bytes or the
    /// snapshot is complete; the read position stays where it was.
    fn fill_to(&mut self, target: u64) -> io::Result<()> {
        let Some(source) = self.source.as_mut() else {
            return Ok(());
        };
        let at = self.file.stream_position()?;
        let mut written = || -> io::Result<bool> {
            let mut len = self.file.seek(SeekFrom::End(0))?;
            while len < target {
                if source.step(&mut self.file)? {
                    return Ok(true);
                }
                len = self.file.stream_position()?;
            }
            Ok(false)
        };
        let complete = written();
        // The read position is put back whatever happened, so a failed step leaves the
        // file as readable as it was.
        self.file.seek(SeekFrom::Start(at))?;
        if complete? {
            self.source = None;
        }
        Ok(())
    }

    /// Writes the rest of a lazy snapshot.
    fn finish(&mut self) -> io::Result<()> {
        self.fill_to(u64::MAX)
    }

    /// Whether bytes of this snapshot are still to be written (a lazy one, not complete).
    pub fn is_lazy(&self) -> bool {
        self.source.is_some()
    }

    /// Writes a lazy snapshot on until the file holds `target` bytes, on a helper thread,
    /// while the caller does something else (the sender: a chunk's round trip); the file
    /// comes back from [`WriteAhead::join`]. What the helper writes is what a read would
    /// have written (the same steps, in order), and nothing sees the file until the join,
    /// so when the writes happen does not show: the simulator stays deterministic.
    pub fn write_ahead(mut self: Box<Self>, target: u64) -> WriteAhead {
        let helper = std::thread::Builder::new()
            .name("docket-snapshot-ahead".into())
            .spawn(move || {
                let written = self.fill_to(target);
                (self, written)
            });
        WriteAhead { helper }
    }

    /// A file holding `bytes`, positioned at its start (tests that forge snapshots).
    pub fn from_bytes(bytes: &[u8]) -> io::Result<SnapshotFile> {
        let mut out = SnapshotFile::create_in(None)?;
        out.file.write_all(bytes)?;
        out.file.rewind()?;
        Ok(out)
    }

    /// The whole contents, read from the start; leaves the position at the end. Tests
    /// and tools only: it holds the whole snapshot in memory.
    pub fn to_bytes(&mut self) -> io::Result<Vec<u8>> {
        self.finish()?;
        self.seeked = None;
        self.file.rewind()?;
        let mut out = Vec::new();
        self.file.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// A lazy snapshot being written ahead of its reader ([`SnapshotFile::write_ahead`]).
#[derive(Debug)]
pub struct WriteAhead {
    helper: io::Result<std::thread::JoinHandle<(Box<SnapshotFile>, io::Result<()>)>>,
}

impl WriteAhead {
    /// Waits for the helper and gives the file back, or what its writes failed with
    /// (which a read of those bytes would have failed with). Blocks the calling thread:
    /// on a multi-threaded tokio runtime, through `block_in_place`, so the worker's other
    /// tasks move on meanwhile; the helper's writes are a chunk's worth, tens of
    /// milliseconds, and usually done by the time the chunk's answer arrives.
    pub fn join(self) -> io::Result<Box<SnapshotFile>> {
        let helper = self.helper?;
        let wait = move || helper.join();
        let joined = match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        let (file, written) = joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        written.map(|()| file)
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.source.is_some() {
            let at = this.file.stream_position()?;
            this.fill_to(at.saturating_add(buf.remaining() as u64))?;
        }
        let n = this.file.read(buf.initialize_unfilled())?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SnapshotFile {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().file.write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Not durable by design (see the module docs): `File::flush` is a no-op and no
        // `fsync` is wanted.
        Poll::Ready(self.get_mut().file.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

impl AsyncSeek for SnapshotFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let this = self.get_mut();
        if matches!(position, SeekFrom::End(_)) {
            this.finish()?;
        }
        this.seeked = Some(this.file.seek(position)?);
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let this = self.get_mut();
        match this.seeked.take() {
            Some(position) => Poll::Ready(Ok(position)),
            None => Poll::Ready(this.file.stream_position()),
        }
    }
}

/// A lazy snapshot's source for tests: `pieces` pieces of `piece` bytes, the byte of each
/// its piece number, counting the steps taken.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Pieces {
    pub piece: usize,
    pub pieces: usize,
    pub steps: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

#[cfg(test)]
impl Source for Pieces {
    fn step(&mut self, out: &mut File) -> io::Result<bool> {
        let step = self.steps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        out.write_all(&vec![step as u8; self.piece])?;
        Ok(step + 1 == self.pieces)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_lazy_snapshot_is_written_as_far_as_it_is_read() {
        let steps = Arc::default();
        let source = Pieces {
            piece: 1000,
            pieces: 10,
            steps: Arc::clone(&steps),
        };
        let mut file = SnapshotFile::lazy(None, Box::new(source)).expect("create");
        assert_eq!(file.complete_len().expect("len"), None);
        let mut first = vec![0; 2500];
        file.read_exact(&mut first).await.expect("read");
        assert_eq!(
            steps.load(Ordering::SeqCst),
            3,
            "reading 2,500 bytes writes three pieces, not ten"
        );
        assert_eq!(first[999..1001], [0, 1]);
        assert_eq!(file.complete_len().expect("len"), None);
        // A chunk re-read from an earlier offset (a retry) writes nothing more.
        file.seek(SeekFrom::Start(500)).await.expect("seek");
        let mut again = vec![0; 1000];
        file.read_exact(&mut again).await.expect("read");
        assert_eq!(steps.load(Ordering::SeqCst), 3);
        assert_eq!(again, first[500..1500]);
        let mut rest = Vec::new();
        file.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest.len(), 10_000 - 1500);
        assert_eq!(file.complete_len().expect("len"), Some(10_000));
        assert_eq!(steps.load(Ordering::SeqCst), 10);
        // Seeking to the end of an unfinished one finishes it.
        let steps = Arc::default();
        let mut other = SnapshotFile::lazy(
            None,
            Box::new(Pieces {
                piece: 10,
                pieces: 4,
                steps: Arc::clone(&steps),
            }),
        )
        .expect("create");
        assert_eq!(other.seek(SeekFrom::End(0)).await.expect("seek"), 40);
        assert_eq!(other.to_bytes().expect("bytes")[30..], [3; 10]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lazy_snapshot_written_ahead_reads_as_one_written_as_read() {
        let steps = Arc::default();
        let mut file = Box::new(
            SnapshotFile::lazy(
                None,
                Box::new(Pieces {
                    piece: 1000,
                    pieces: 10,
                    steps: Arc::clone(&steps),
                }),
            )
            .expect("create"),
        );
        let mut first = vec![0; 1500];
        file.read_exact(&mut first).await.expect("read");
        assert_eq!(steps.load(Ordering::SeqCst), 2);
        // Ahead to 4,500 bytes: five pieces in all, the read position kept.
        let mut file = file.write_ahead(4500).join().expect("written ahead");
        assert_eq!(steps.load(Ordering::SeqCst), 5);
        assert!(file.is_lazy());
        let mut next = vec![0; 3000];
        file.read_exact(&mut next).await.expect("read");
        assert_eq!(
            steps.load(Ordering::SeqCst),
            5,
            "the read wrote nothing more"
        );
        assert_eq!(next[..500], [1; 500]);
        assert_eq!(next[2500..], [4; 500]);
        // Ahead past the end completes it.
        let mut file = file.write_ahead(u64::MAX).join().expect("written ahead");
        assert!(!file.is_lazy());
        assert_eq!(file.complete_len().expect("len"), Some(10_000));
        let whole = file.to_bytes().expect("bytes");
        let expected: Vec<u8> = (0..10u8).flat_map(|piece| [piece; 1000]).collect();
        assert_eq!(whole, expected);
    }

    /// A source whose second step fails.
    #[derive(Debug)]
    struct FailsAtSecond(usize);

    impl Source for FailsAtSecond {
        fn step(&mut self, out: &mut File) -> io::Result<bool> {
            self.0 += 1;
            if self.0 == 2 {
                return Err(io::Error::other("the ledger read failed"));
            }
            out.write_all(&[7; 100])?;
            Ok(false)
        }
    }

    #[test]
    fn a_write_ahead_that_fails_hands_back_the_failure() {
        let file = Box::new(SnapshotFile::lazy(None, Box::new(FailsAtSecond(0))).expect("create"));
        let error = file.write_ahead(1000).join().expect_err("the step fails");
        assert_eq!(error.to_string(), "the ledger read failed");
    }

    #[tokio::test]
    async fn reads_writes_and_seeks_like_a_cursor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = SnapshotFile::create_in(Some(dir.path())).expect("create");
        assert!(file.is_empty().expect("len"));
        file.write_all(b"hello world").await.expect("write");
        // openraft's receiver writes a chunk at an offset it seeks to.
        assert_eq!(file.seek(SeekFrom::Start(6)).await.expect("seek"), 6);
        file.write_all(b"WORLD").await.expect("write");
        assert_eq!(file.seek(SeekFrom::End(0)).await.expect("seek"), 11);
        file.shutdown().await.expect("shutdown");
        // openraft's sender seeks to an offset and reads a chunk.
        file.seek(SeekFrom::Start(2)).await.expect("seek");
        let mut chunk = vec![0; 4];
        file.read_exact(&mut chunk).await.expect("read");
        assert_eq!(chunk, b"llo ");
        assert_eq!(file.to_bytes().expect("bytes"), b"hello WORLD");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "unnamed: nothing left in the directory"
        );
    }
}
