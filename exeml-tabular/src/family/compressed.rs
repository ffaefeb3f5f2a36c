//! zstd compression of the families' weight files. Tree tables and stored rows are mostly small
//! integers and repeated values in f64: they shrink about tenfold, which keeps a model folder
//! (and an ensemble of forests) small to ship. Files written uncompressed by earlier versions
//! still load.

use exeml_core::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Suffix of a compressed file (`forest.safetensors.zst`; `zstd -d` gives back the original).
pub const SUFFIX: &str = ".zst";
/// zstd's default level: about 100 MB/s here, most of the size gain of the higher levels.
const LEVEL: i32 = 3;
/// A damaged or hostile file that would expand past this is an error, not an out-of-memory.
const MAX_EXPANDED_BYTES: u64 = 16 << 30;

/// Write `bytes` compressed to `path` + [`SUFFIX`], atomically; returns that file's name.
pub fn write(path: &Path, bytes: &[u8]) -> Result<String> {
    let packed_path = with_suffix(path);
    let packed = zstd::bulk::compress(bytes, LEVEL).map_err(|e| Error::io(&packed_path, e))?;
    exeml_core::fsio::write_atomic(&packed_path, &packed)?;
    Ok(packed_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default())
}

/// The bytes written by [`write`] for `path` (expanded), or those of `path` itself when it was
/// saved uncompressed; with the path actually read, for error messages.
pub fn read(path: &Path) -> Result<(PathBuf, Vec<u8>)> {
    let packed_path = with_suffix(path);
    let file = match std::fs::File::open(&packed_path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            return Ok((path.to_path_buf(), bytes));
        }
        Err(e) => return Err(Error::io(&packed_path, e)),
    };
    let invalid = |e: std::io::Error| Error::data(&packed_path, format!("invalid zstd data: {e}"));
    let mut bytes = Vec::new();
    zstd::stream::read::Decoder::new(file)
        .map_err(invalid)?
        .take(MAX_EXPANDED_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(invalid)?;
    if bytes.len() as u64 > MAX_EXPANDED_BYTES {
        return Err(Error::data(
            &packed_path,
            format!("expands to more than {} GiB", MAX_EXPANDED_BYTES >> 30),
        ));
    }
    Ok((packed_path, bytes))
}

fn with_suffix(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_shrinks_tree_like_data_and_reads_old_uncompressed_files() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("forest.safetensors");
        let bytes: Vec<u8> = (0..100_000u32)
            .flat_map(|i| f64::from(i % 17).to_le_bytes())
            .collect();
        let name = write(&path, &bytes).expect("write");
        assert_eq!(name, "forest.safetensors.zst");
        let written = std::fs::metadata(dir.path().join(&name))
            .expect("meta")
            .len();
        assert!(written * 10 < bytes.len() as u64, "{written} bytes");
        let (read_from, back) = read(&path).expect("read");
        assert_eq!(back, bytes);
        assert!(read_from.ends_with(&name));

        let old = dir.path().join("knn.safetensors");
        std::fs::write(&old, b"plain").expect("write old");
        assert_eq!(read(&old).expect("read old").1, b"plain");
    }

    #[test]
    fn a_damaged_or_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("gbdt_0.json");
        std::fs::write(dir.path().join("gbdt_0.json.zst"), b"not zstd at all").expect("write");
        let err = read(&path).expect_err("damaged").to_string();
        assert!(
            err.contains("gbdt_0.json.zst") && err.contains("zstd"),
            "{err}"
        );
        let err = read(&dir.path().join("missing.json"))
            .expect_err("missing")
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
    }
}
