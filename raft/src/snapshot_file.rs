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

/// A snapshot's bytes in an unnamed temporary file, deleted when dropped.
#[derive(Debug)]
pub struct SnapshotFile {
    file: File,
    /// Where the last `start_seek` left the file, for `poll_complete`.
    seeked: Option<u64>,
}

impl SnapshotFile {
    /// A new, empty file in `dir` (the OS temp dir when `None`).
    pub fn create_in(dir: Option<&Path>) -> io::Result<SnapshotFile> {
        Ok(SnapshotFile {
            file: spill_file(dir)?,
            seeked: None,
        })
    }

    /// A snapshot already written to `file` (an unnamed temporary file: [`crate::seed`]).
    pub(crate) fn from_file(file: File) -> SnapshotFile {
        SnapshotFile { file, seeked: None }
    }

    /// The file, for synchronous reads and writes (the builder and the install).
    pub fn file_mut(&mut self) -> &mut File {
        self.seeked = None;
        &mut self.file
    }

    /// Its length in bytes.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
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
        self.seeked = None;
        self.file.rewind()?;
        let mut out = Vec::new();
        self.file.read_to_end(&mut out)?;
        Ok(out)
    }
}

impl AsyncRead for SnapshotFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

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
