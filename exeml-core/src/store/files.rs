//! File-system side of the store: staging folders, atomic copies, removal and stale clean-up.
//!
//! Every hidden name the store writes carries its owner: `.exeml-staging-<pid>-<ns>-…`,
//! `.exeml-tmp-<pid>-<ns>-…` and `.exeml-trash-<pid>-<ns>-…` (`<ns>` identifies the pid namespace
//! on Linux, 0 elsewhere). Clean-up removes one only when its owner is known to be gone, or when
//! it is old and its owner cannot be checked, so a live training in another process never loses
//! its draft.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const STAGING_PREFIX: &str = ".exeml-staging-";
const TMP_PREFIX: &str = ".exeml-tmp-";
const TRASH_PREFIX: &str = ".exeml-trash-";
/// Hidden entries whose owner cannot be checked are removed once they are this old.
const UNKNOWN_OWNER_AGE: Duration = Duration::from_secs(24 * 3600);
/// Hidden entries without an owner in their name (other writers) are removed at this age.
const ANONYMOUS_AGE: Duration = Duration::from_secs(3600);

/// A folder being built under a hidden name next to its final place; dropping it removes it.
///
/// Unlike [`crate::fsio::StagingDir`], the final name is chosen only when publishing (it is
/// allocated inside the registering transaction), and publishing never replaces a folder.
#[derive(Debug)]
pub(super) struct Staging {
    dir: tempfile::TempDir,
}

impl Staging {
    /// Start a staging folder inside `parent`.
    pub(super) fn new_in(parent: &Path) -> Result<Staging> {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let dir = tempfile::Builder::new()
            .prefix(&owned_prefix(STAGING_PREFIX))
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        Ok(Staging { dir })
    }

    /// Where to write the files.
    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Rename the folder to `target`, which must not exist.
    pub(super) fn publish(self, target: &Path) -> Result<()> {
        std::fs::rename(self.dir.path(), target).map_err(|e| Error::io(target, e))?;
        // The folder now lives at `target`: stop the temporary handle from removing it.
        let _moved = self.dir.keep();
        Ok(())
    }
}

/// Removes a freshly published folder unless disarmed (the registering transaction committed).
#[derive(Debug)]
pub(super) struct RemoveOnDrop {
    paths: Vec<PathBuf>,
}

impl RemoveOnDrop {
    /// Guard `paths` (folders or files).
    pub(super) fn new(paths: Vec<PathBuf>) -> Self {
        RemoveOnDrop { paths }
    }

    /// Add a path to remove on failure.
    pub(super) fn push(&mut self, path: PathBuf) {
        self.paths.push(path);
    }

    /// Keep everything: the change it belonged to is committed.
    pub(super) fn disarm(mut self) {
        self.paths.clear();
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in self.paths.drain(..) {
            // Best effort: a leftover is hidden from readers and cleaned later.
            let _ = remove_tree(&path);
        }
    }
}

/// Remove a folder (or file) so that it disappears at once: rename it to a hidden trash name,
/// then delete that. A missing path is not an error.
pub(super) fn remove_tree(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let trash = parent.join(format!("{}{}", owned_prefix(TRASH_PREFIX), unique()));
    match std::fs::rename(path, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    remove_entry(&trash)
}

/// Remove a file or folder, ignoring one that is already gone.
fn remove_entry(path: &Path) -> Result<()> {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Copy `source` to `target` through a hidden temporary file renamed into place, so a reader
/// never sees half a file. Bytes are also fed to `hasher` if one is given.
pub(super) fn copy_atomic(source: &Path, target: &Path, hasher: Option<&mut Sha256>) -> Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut input = File::open(source).map_err(|e| Error::io(source, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&owned_prefix(TMP_PREFIX))
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    match hasher {
        Some(hasher) => {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = input.read(&mut buf).map_err(|e| Error::io(source, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                tmp.write_all(&buf[..n]).map_err(|e| Error::io(target, e))?;
            }
        }
        None => {
            std::io::copy(&mut input, &mut tmp).map_err(|e| Error::io(target, e))?;
        }
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(target, e))?;
    tmp.persist(target)
        .map_err(|e| Error::io(target, e.error))?;
    Ok(())
}

/// Whether two files hold the same bytes.
pub(super) fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let len = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| Error::io(p, e))
    };
    if len(a)? != len(b)? {
        return Ok(false);
    }
    let mut fa = File::open(a).map_err(|e| Error::io(a, e))?;
    let mut fb = File::open(b).map_err(|e| Error::io(b, e))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = fill(&mut fa, &mut ba).map_err(|e| Error::io(a, e))?;
        let nb = fill(&mut fb, &mut bb).map_err(|e| Error::io(b, e))?;
        if ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

/// Read until `buf` is full or the file ends.
fn fill(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Remove the stale hidden entries (staging folders, temporary files, trash) directly inside
/// `dir`. Returns how many were removed; a missing `dir` has none.
pub(super) fn cleanup_dir(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(owner) = [STAGING_PREFIX, TMP_PREFIX, TRASH_PREFIX]
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
        else {
            continue;
        };
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if is_stale(owner, age) {
            remove_entry(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Whether an entry whose name continues with `owner` (`<pid>-<ns>-…`) and has this age is a
/// leftover of a process that is gone.
fn is_stale(owner: &str, age: Option<Duration>) -> bool {
    let older_than = |limit: Duration| age.is_some_and(|a| a >= limit);
    let mut parts = owner.splitn(3, '-');
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    let ns = parts.next().and_then(|n| n.parse::<u64>().ok());
    let (Some(pid), Some(ns), Some(_)) = (pid, ns, parts.next()) else {
        return older_than(ANONYMOUS_AGE);
    };
    if pid == std::process::id() && ns == pid_namespace() {
        return false;
    }
    if ns != 0 && ns == pid_namespace() {
        if let Some(alive) = process_alive(pid) {
            return !alive;
        }
    }
    older_than(UNKNOWN_OWNER_AGE)
}

/// `<prefix><pid>-<ns>-`: the start of a hidden name owned by this process.
fn owned_prefix(prefix: &str) -> String {
    format!("{prefix}{}-{}-", std::process::id(), pid_namespace())
}

/// A value that differs between calls of this process.
fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The pid namespace of this process (its inode), so that pids are only compared within one
/// namespace (two containers may share a workspace); 0 where it cannot be known.
fn pid_namespace() -> u64 {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|link| {
                let text = link.to_string_lossy().into_owned();
                let inner = text.strip_prefix("pid:[")?.strip_suffix(']')?.to_string();
                inner.parse().ok()
            })
            .unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Whether a process of this pid namespace is running (a zombie is not); `None` if unknown.
fn process_alive(pid: u32) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        if !Path::new("/proc/self/stat").exists() {
            return None;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                Some(!matches!(state, Some('Z') | Some('X')))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        None
    }
}

/// Feed one named part into a content hash, length-prefixed so parts cannot run together.
pub(super) fn hash_part(hasher: &mut Sha256, name: &str, bytes: &[u8]) {
    hash_header(hasher, name, bytes.len() as u64);
    hasher.update(bytes);
}

/// The header [`hash_part`] writes before a part's bytes.
pub(super) fn hash_header(hasher: &mut Sha256, name: &str, len: u64) {
    hasher.update((name.len() as u64).to_le_bytes());
    hasher.update(name.as_bytes());
    hasher.update(len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_and_live_entries_are_not_stale() {
        let own = owned_prefix("");
        let own = format!("{own}abc");
        assert!(!is_stale(&own, Some(Duration::from_secs(10 * 24 * 3600))));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn entries_of_dead_processes_are_stale_at_once() {
        // u32::MAX is above any pid limit, so no such process runs.
        let dead = format!("{}-{}-abc", u32::MAX, pid_namespace());
        assert!(is_stale(&dead, Some(Duration::from_secs(1))));
    }

    #[test]
    fn anonymous_entries_wait_for_their_age() {
        assert!(!is_stale("abc123", Some(Duration::from_secs(60))));
        assert!(is_stale("abc123", Some(Duration::from_secs(2 * 3600))));
    }

    #[test]
    fn compares_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        std::fs::write(&a, b"same").expect("write");
        std::fs::write(&b, b"same").expect("write");
        std::fs::write(&c, b"diff").expect("write");
        assert!(same_content(&a, &b).expect("compare"));
        assert!(!same_content(&a, &c).expect("compare"));
    }

    #[test]
    fn staging_publishes_or_vanishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staging = Staging::new_in(dir.path()).expect("staging");
        std::fs::write(staging.path().join("f"), b"1").expect("write");
        staging.publish(&dir.path().join("v1")).expect("publish");
        assert!(dir.path().join("v1/f").is_file());
        drop(Staging::new_in(dir.path()).expect("staging"));
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
