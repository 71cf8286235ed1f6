//! A directory that file effects cannot leave.
//!
//! Paths are relative to the sandbox root and checked twice: lexically (no absolute paths,
//! no `..` or `.`, no empty components, no NUL or other control characters, bounded length
//! and depth) and on disk (no component may be a symbolic link — even one pointing inside —
//! and the canonical parent must lie under the canonical root). The on-disk check runs at
//! the gate and again right before the write, because the disk can change in between.
//! Writes go to a new temporary file beside the target, are synced, and are renamed over
//! it, so a reader never sees half a file and a symlink planted at the target is replaced,
//! not followed.
//!
//! Known limit: the checks and the write are separate system calls (no `openat` with
//! `O_NOFOLLOW` here), so a local process that can write inside the sandbox and swaps a
//! directory for a link in that instant could still redirect a write. The sandbox confines
//! what the *ledger* asks for; the directory itself must not be writable by others. The
//! temporary file's name (`.<name>.tmp`) is the same for every writer of one path, so
//! writers of one sandbox serialize their writes ([`FileWriteEffect`] holds a lock).
//!
//! [`FileWriteEffect`]: crate::effects::FileWriteEffect

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Components in a sandboxed path. Deployment files are two deep (`<subject>/<file>`).
pub const PATH_DEPTH_MAX: usize = 8;
/// Bytes of one path component (the common file-system limit).
pub const COMPONENT_BYTES_MAX: usize = 255;
/// Bytes of a whole sandboxed path.
pub const PATH_BYTES_MAX: usize = 1024;

/// A path refused by the sandbox, or an I/O failure inside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// The path would leave the sandbox or is not a plain relative path: a gate refusal.
    #[error("path {path:?} is refused: {reason}")]
    Escape { path: String, reason: String },
    /// Reading or writing failed.
    #[error("{op} {path:?}: {message}")]
    Io {
        op: &'static str,
        path: String,
        message: String,
    },
}

/// A sandbox rooted at a directory.
#[derive(Debug, Clone)]
pub struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    /// Creates the root directory if needed and canonicalizes it (the root itself may be
    /// reached through a symlink; what is below it may not).
    pub fn open(dir: &Path) -> std::io::Result<Sandbox> {
        fs::create_dir_all(dir)?;
        Ok(Sandbox {
            root: fs::canonicalize(dir)?,
        })
    }

    /// A sandbox at an existing directory (nothing is created).
    pub fn at(dir: &Path) -> std::io::Result<Sandbox> {
        Ok(Sandbox {
            root: fs::canonicalize(dir)?,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lexical check of a sandbox-relative path.
    pub fn check_lexical(path: &Path) -> Result<(), SandboxError> {
        let refuse = |reason: &str| {
            Err(SandboxError::Escape {
                path: path.to_string_lossy().into_owned(),
                reason: reason.to_owned(),
            })
        };
        let text = path.to_string_lossy();
        if text.is_empty() {
            return refuse("empty path");
        }
        if text.len() > PATH_BYTES_MAX {
            return refuse("path is too long");
        }
        if text.contains('\0') {
            return refuse("NUL byte in path");
        }
        // The core's `path_is_relative` refuses them too; here they are refused even under a
        // constitution without that rule (a newline in a name forges lines in any listing).
        if text.chars().any(char::is_control) {
            return refuse("control character in path");
        }
        // `Path::components` silently drops interior `.` and empty segments; the text is
        // checked too, so what is refused does not depend on that normalization.
        if text.starts_with('/') {
            return refuse("absolute path outside the sandbox");
        }
        for segment in text.split('/') {
            match segment {
                "" => return refuse("empty path component"),
                "." => return refuse("`.` component"),
                ".." => return refuse("`..` would leave the sandbox"),
                _ => {}
            }
        }
        let mut depth = 0;
        for component in path.components() {
            match component {
                Component::Normal(name) => {
                    if name.len() > COMPONENT_BYTES_MAX {
                        return refuse("a path component is too long");
                    }
                    if name.to_string_lossy().contains('\\') {
                        return refuse("backslash in path");
                    }
                    depth += 1;
                }
                Component::ParentDir => return refuse("`..` would leave the sandbox"),
                Component::CurDir => return refuse("`.` component"),
                Component::RootDir | Component::Prefix(_) => {
                    return refuse("absolute path outside the sandbox")
                }
            }
        }
        if depth == 0 {
            return refuse("no file name");
        }
        if depth > PATH_DEPTH_MAX {
            return refuse("path is too deep");
        }
        Ok(())
    }

    /// Full check of a relative path against the disk as it is now; answers the absolute
    /// path to write. Components that do not exist yet are fine (they will be created as
    /// directories, and checked again then).
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, SandboxError> {
        Sandbox::check_lexical(path)?;
        let escape = |reason: String| SandboxError::Escape {
            path: path.to_string_lossy().into_owned(),
            reason,
        };
        let mut current = self.root.clone();
        for component in path.components() {
            current.push(component);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let shown = current.strip_prefix(&self.root).unwrap_or(&current);
                    return Err(escape(format!(
                        "{} is a symbolic link; links are refused inside the sandbox",
                        shown.display()
                    )));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => {
                    return Err(SandboxError::Io {
                        op: "inspect",
                        path: current.display().to_string(),
                        message: e.to_string(),
                    })
                }
            }
        }
        let target = self.root.join(path);
        // Belt and braces: the deepest existing ancestor must canonicalize under the root.
        let mut existing = target.parent().unwrap_or(&self.root).to_path_buf();
        while !existing.exists() {
            if !existing.pop() {
                break;
            }
        }
        let canonical = fs::canonicalize(&existing).map_err(|e| SandboxError::Io {
            op: "canonicalize",
            path: existing.display().to_string(),
            message: e.to_string(),
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(escape(format!(
                "resolves to {}, outside the sandbox {}",
                canonical.display(),
                self.root.display()
            )));
        }
        Ok(target)
    }

    /// Writes `content` to `path` atomically (temporary file, sync, rename) and reads it back.
    /// Answers the bytes read back.
    pub fn write(
        &self,
        path: &Path,
        content: &[u8],
        read_bytes_max: usize,
    ) -> Result<Vec<u8>, SandboxError> {
        let target = self.resolve(path)?;
        let io = |op: &'static str, at: &Path, e: std::io::Error| SandboxError::Io {
            op,
            path: at.display().to_string(),
            message: e.to_string(),
        };
        let parent = target
            .parent()
            .expect("invariant: a resolved path has a parent");
        fs::create_dir_all(parent).map_err(|e| io("create directory", parent, e))?;
        // Directories were created: check again that no link appeared on the way.
        let target = self.resolve(path)?;
        let name = target
            .file_name()
            .expect("invariant: a resolved path ends in a file name")
            .to_string_lossy();
        let temporary = parent.join(format!(".{name}.tmp"));
        let _ = fs::remove_file(&temporary); // A leftover of an interrupted write.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(|e| io("create", &temporary, e))?;
        let written = file
            .write_all(content)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write", &temporary, e));
        drop(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&temporary);
            return Err(e);
        }
        if let Err(e) = fs::rename(&temporary, &target) {
            let _ = fs::remove_file(&temporary);
            return Err(io("rename", &target, e));
        }
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all(); // Makes the rename durable where the platform allows.
        }
        self.read(path, read_bytes_max)
    }

    /// Reads a file inside the sandbox, at most `bytes_max` bytes (more is an error).
    pub fn read(&self, path: &Path, bytes_max: usize) -> Result<Vec<u8>, SandboxError> {
        let target = self.resolve(path)?;
        let io = |op: &'static str, e: std::io::Error| SandboxError::Io {
            op,
            path: target.display().to_string(),
            message: e.to_string(),
        };
        let meta = fs::symlink_metadata(&target).map_err(|e| io("inspect", e))?;
        if !meta.is_file() {
            return Err(SandboxError::Escape {
                path: path.to_string_lossy().into_owned(),
                reason: "not a regular file".into(),
            });
        }
        let file = fs::File::open(&target).map_err(|e| io("open", e))?;
        let mut out = Vec::new();
        let limit = u64::try_from(bytes_max)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        file.take(limit)
            .read_to_end(&mut out)
            .map_err(|e| io("read", e))?;
        if out.len() > bytes_max {
            return Err(io(
                "read",
                std::io::Error::other(format!("file is larger than {bytes_max} bytes")),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_escapes_are_refused() {
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "./a",
            "a/./b",
            "a\\..\\b",
            "a\0b",
            "a\nb",
            "a/\u{7f}",
        ] {
            assert!(
                matches!(
                    Sandbox::check_lexical(Path::new(bad)),
                    Err(SandboxError::Escape { .. })
                ),
                "{bad:?} should be refused"
            );
        }
        let deep = ["d"; PATH_DEPTH_MAX + 1].join("/");
        assert!(Sandbox::check_lexical(Path::new(&deep)).is_err());
        Sandbox::check_lexical(Path::new("kes-1/v2.json")).expect("plain path");
    }

    #[test]
    fn writes_inside_and_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = Sandbox::open(&dir.path().join("box")).expect("opens");
        let back = sandbox
            .write(Path::new("kes-1/v1.json"), b"hello", 1024)
            .expect("writes");
        assert_eq!(back, b"hello");
        // Rewriting replaces atomically.
        let back = sandbox
            .write(Path::new("kes-1/v1.json"), b"again", 1024)
            .expect("rewrites");
        assert_eq!(back, b"again");
        assert!(
            sandbox.read(Path::new("kes-1/v1.json"), 2).is_err(),
            "read cap"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_even_when_they_point_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).expect("mkdir");
        let sandbox = Sandbox::open(&dir.path().join("box")).expect("opens");
        std::os::unix::fs::symlink(&outside, sandbox.root().join("evil")).expect("symlink");
        let error = sandbox
            .write(Path::new("evil/file"), b"x", 16)
            .expect_err("escapes");
        assert!(matches!(error, SandboxError::Escape { .. }), "{error}");
        assert!(!outside.join("file").exists());

        fs::create_dir_all(sandbox.root().join("real")).expect("mkdir");
        std::os::unix::fs::symlink(sandbox.root().join("real"), sandbox.root().join("alias"))
            .expect("symlink");
        assert!(sandbox.resolve(Path::new("alias/f")).is_err());
        std::os::unix::fs::symlink(outside.join("target"), sandbox.root().join("real/f"))
            .expect("symlink");
        assert!(
            sandbox.resolve(Path::new("real/f")).is_err(),
            "final component link"
        );
    }
}
