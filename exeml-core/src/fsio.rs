//! Atomic file and folder writes: a reader sees the old content or the new, never half of either.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` through a temporary file in the same folder, synced and renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".exeml-tmp-")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Serialize `value` as pretty JSON and write it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::data(path, format!("cannot serialize JSON: {e}")))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Read and parse a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::data(path, format!("invalid JSON: {e}")))
}

/// A folder being built next to its final place; [`StagingDir::commit`] renames it into place,
/// and dropping it uncommitted removes it, so a failed or killed writer leaves no half folder
/// under the final name.
#[derive(Debug)]
pub struct StagingDir {
    tmp: Option<tempfile::TempDir>,
    target: PathBuf,
}

impl StagingDir {
    /// Start building the folder that will become `target`.
    pub fn new(target: &Path) -> Result<Self> {
        let parent = parent_dir(target);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".exeml-staging-")
            .tempdir_in(&parent)
            .map_err(|e| Error::io(&parent, e))?;
        Ok(StagingDir {
            tmp: Some(tmp),
            target: target.to_path_buf(),
        })
    }

    /// Where to write the files now.
    pub fn path(&self) -> &Path {
        self.tmp
            .as_ref()
            .map(|t| t.path())
            .expect("staging dir is present until commit")
    }

    /// The final place.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Move the folder into place, replacing an existing folder at the target.
    pub fn commit(mut self) -> Result<PathBuf> {
        let tmp = self
            .tmp
            .take()
            .expect("staging dir is present until commit");
        let staged = tmp.keep();
        if self.target.exists() {
            let old = parent_dir(&self.target).join(format!(
                ".exeml-old-{}-{}",
                std::process::id(),
                self.target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ));
            std::fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
            std::fs::rename(&staged, &self.target).map_err(|e| Error::io(&self.target, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
        } else {
            std::fs::rename(&staged, &self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        Ok(self.target.clone())
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").expect("write");
        write_atomic(&path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[test]
    fn uncommitted_staging_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("model");
        {
            let staging = StagingDir::new(&target).expect("staging");
            std::fs::write(staging.path().join("x"), b"1").expect("write");
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn committed_staging_replaces_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("model");
        for content in [b"old", b"new"] {
            let staging = StagingDir::new(&target).expect("staging");
            std::fs::write(staging.path().join("f"), content).expect("write");
            staging.commit().expect("commit");
        }
        assert_eq!(std::fs::read(target.join("f")).expect("read"), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
    }
}
