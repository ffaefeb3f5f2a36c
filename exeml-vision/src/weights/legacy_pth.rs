//! PyTorch's legacy (pre-1.6, non-zip) checkpoint format, read by hand: candle reads only the zip
//! format, and the ImageNet weights installable here (ASSETS.md) are legacy files.
//!
//! Layout: five pickles (magic number, protocol version, system info, the state dict whose
//! tensors point at storages through persistent ids, the list of storage keys), then each
//! storage in key order as an 8-byte little-endian element count followed by its raw
//! little-endian elements. candle's pickle VM parses the pickles; this module checks every size
//! and index against the file, so a truncated or hostile file is an error, never a panic.

use crate::nn::candle_error;
use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use exeml_core::fsio::write_atomic;
use exeml_core::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = &[0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::data(path, message.into())
}

/// Every tensor of a `.pth` checkpoint (legacy or zip format), in file order.
pub fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.read(&mut head).map_err(|e| Error::io(path, e))?;
    if n == 4 && &head == b"PK\x03\x04" {
        return candle_core::pickle::read_all(path)
            .map_err(|e| bad(path, format!("not a readable PyTorch zip checkpoint: {e}")));
    }
    read_legacy_pth(path)
}

/// Run one pickle from `bytes[*pos..]`, advancing `pos` past it.
fn read_pickle(bytes: &[u8], pos: &mut usize, path: &Path, what: &str) -> Result<Object> {
    let rest = bytes.get(*pos..).unwrap_or_default();
    // candle's pickle VM can panic on hostile input (e.g. a LONG1 of more than 8 bytes
    // overflows a shift): contain that and report the file as corrupt.
    let parsed = std::panic::catch_unwind(|| {
        let mut reader = rest;
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut reader)
            .and_then(|()| stack.finalize())
            .map(|obj| (obj, rest.len() - reader.len()))
            .map_err(|e| e.to_string())
    })
    .unwrap_or_else(|_| Err("the pickle cannot be parsed".into()));
    let (obj, used) = parsed.map_err(|e| bad(path, format!("corrupt {what} pickle: {e}")))?;
    *pos += used;
    Ok(obj)
}

/// A tensor's place in its storage, from `_rebuild_tensor_v2`.
struct TensorRef {
    name: String,
    key: String,
    dtype: DType,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn tensor_ref(name: Object, value: Object, path: &Path) -> Result<Option<TensorRef>> {
    let dir = Path::new("");
    let info = match value.into_tensor_info(name, dir) {
        Ok(Some(info)) => info,
        Ok(None) => return Ok(None),
        Err(e) => return Err(bad(path, format!("unexpected tensor record: {e}"))),
    };
    let key = info
        .path
        .rsplit('/')
        .next()
        .unwrap_or(info.path.as_str())
        .to_string();
    Ok(Some(TensorRef {
        name: info.name,
        key,
        dtype: info.dtype,
        offset: info.layout.start_offset() / info.dtype.size_in_bytes(),
        shape: info.layout.dims().to_vec(),
        stride: info.layout.stride().to_vec(),
    }))
}

/// Every tensor of a legacy-format `.pth` checkpoint, in file order.
pub fn read_legacy_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes, path)
}

fn parse(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    if bytes.len() < 2 || bytes[0] != 0x80 {
        return Err(bad(path, "not a PyTorch checkpoint (no pickle header)"));
    }
    // The magic-number pickle, `PROTO 2, LONG1 10 <magic>, STOP`, is matched byte for byte:
    // candle's VM cannot hold a 10-byte integer.
    let magic_pickle = [&[0x80, 0x02, 0x8a, 0x0a][..], MAGIC, b"."].concat();
    if !bytes.starts_with(&magic_pickle) {
        return Err(bad(
            path,
            "not a legacy PyTorch checkpoint (no magic number)",
        ));
    }
    let mut pos = magic_pickle.len();
    read_pickle(bytes, &mut pos, path, "protocol version")?;
    read_pickle(bytes, &mut pos, path, "system info")?;
    let state = read_pickle(bytes, &mut pos, path, "state dict")?;
    let keys = read_pickle(bytes, &mut pos, path, "storage keys")?;
    let keys: Vec<String> = match keys {
        Object::List(items) | Object::Tuple(items) => items
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|o| bad(path, format!("storage key {o:?}")))
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(bad(
                path,
                format!("storage key list expected, got {other:?}"),
            ))
        }
    };
    let entries = dict_entries(state, path)?;
    let mut refs = Vec::new();
    for (name, value) in entries {
        if let Some(r) = tensor_ref(name, value, path)? {
            refs.push(r);
        }
    }
    let dtypes: HashMap<&str, DType> = refs.iter().map(|r| (r.key.as_str(), r.dtype)).collect();
    let mut storages: HashMap<String, (DType, &[u8])> = HashMap::new();
    for key in &keys {
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| bad(path, format!("truncated before storage {key}")))?;
        let count = u64::from_le_bytes(count_bytes.try_into().map_err(|_| bad(path, "size"))?);
        pos += 8;
        let dtype = dtypes.get(key.as_str()).copied().unwrap_or(DType::U8);
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(dtype.size_in_bytes()))
            .filter(|&l| l <= bytes.len().saturating_sub(pos))
            .ok_or_else(|| {
                bad(
                    path,
                    format!("storage {key} claims {count} elements: file is truncated"),
                )
            })?;
        storages.insert(key.clone(), (dtype, &bytes[pos..pos + len]));
        pos += len;
    }
    refs.into_iter()
        .map(|r| {
            let (dtype, data) = storages.get(&r.key).ok_or_else(|| {
                bad(
                    path,
                    format!("tensor {} uses missing storage {}", r.name, r.key),
                )
            })?;
            let tensor = materialise(&r, *dtype, data, path)?;
            Ok((r.name, tensor))
        })
        .collect()
}

fn dict_entries(state: Object, path: &Path) -> Result<Vec<(Object, Object)>> {
    match state {
        Object::Dict(entries) => Ok(entries),
        // OrderedDict(): a reduce whose state is set by BUILD or SETITEMS.
        Object::Build { callable, args } => {
            let mut entries = dict_entries(*callable, path)?;
            if let Object::Dict(more) = *args {
                entries.extend(more);
            }
            Ok(entries)
        }
        Object::Reduce { .. } => Ok(Vec::new()),
        other => Err(bad(path, format!("state dict expected, got {other:?}"))),
    }
}

/// Gather the (possibly strided) elements of a tensor into a contiguous tensor.
fn materialise(r: &TensorRef, dtype: DType, data: &[u8], path: &Path) -> Result<Tensor> {
    if dtype != r.dtype {
        return Err(bad(
            path,
            format!("tensor {} disagrees on its storage type", r.name),
        ));
    }
    let size = dtype.size_in_bytes();
    let elements = data.len() / size;
    let numel: usize = r.shape.iter().product();
    let mut index = vec![0usize; r.shape.len()];
    let mut out = Vec::with_capacity(numel * size);
    for _ in 0..numel {
        let at = r.offset
            + index
                .iter()
                .zip(&r.stride)
                .map(|(i, s)| i.saturating_mul(*s))
                .fold(0usize, usize::saturating_add);
        if at >= elements {
            return Err(bad(
                path,
                format!("tensor {} reads past the end of its storage", r.name),
            ));
        }
        out.extend_from_slice(&data[at * size..(at + 1) * size]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < r.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Tensor::from_raw_buffer(&out, dtype, &r.shape, &Device::Cpu).map_err(candle_error)
}

/// Write the tensors of `pth` to a safetensors file at `out`, atomically.
pub fn convert_pth_to_safetensors(pth: &Path, out: &Path) -> Result<()> {
    let tensors: HashMap<String, Tensor> = read_pth(pth)?.into_iter().collect();
    let dir = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    candle_core::safetensors::save(&tensors, tmp.path())
        .map_err(|e| Error::data(out, format!("cannot write safetensors: {e}")))?;
    let bytes = std::fs::read(tmp.path()).map_err(|e| Error::io(tmp.path(), e))?;
    write_atomic(out, &bytes)
}

/// The safetensors copy of `pth` in `cache_dir`, named by the file's SHA-256; converted once.
pub fn cached_safetensors(pth: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let bytes = std::fs::read(pth).map_err(|e| Error::io(pth, e))?;
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let stem = pth
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("weights");
    let out = cache_dir.join(format!("{stem}-{hex}.safetensors"));
    if !out.exists() {
        convert_pth_to_safetensors(pth, &out)?;
    }
    Ok(out)
}

/// The cache of converted weights: `$EXEML_CACHE`, `$XDG_CACHE_HOME/exeml` or `~/.cache/exeml`,
/// plus `/weights`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("EXEML_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("exeml")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/exeml")))
        .unwrap_or_else(|| std::env::temp_dir().join("exeml-cache"));
    base.join("weights")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny_legacy.pth"
        ))
    }

    fn values(tensors: &[(String, Tensor)], name: &str) -> (Vec<usize>, Vec<f32>) {
        let t = &tensors.iter().find(|(n, _)| n == name).expect("present").1;
        let v = t
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("values");
        (t.dims().to_vec(), v)
    }

    #[test]
    fn reads_contiguous_permuted_offset_and_scalar_tensors() {
        let t = read_legacy_pth(&fixture()).expect("read");
        let mut names: Vec<&str> = t.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["num_batches_tracked", "offset", "permuted", "plain"]
        );
        assert_eq!(
            values(&t, "plain"),
            (vec![2, 3], vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
        );
        // Storage 0..12 viewed as shape (2,3,2) with strides (1,4,2): element [a,b,c] = a + 4b + 2c.
        let (dims, v) = values(&t, "permuted");
        assert_eq!(dims, [2, 3, 2]);
        let want: Vec<f32> = (0..2)
            .flat_map(|a| (0..3).flat_map(move |b| (0..2).map(move |c| (a + 4 * b + 2 * c) as f32)))
            .collect();
        assert_eq!(v, want);
        // The last 3 elements of the plain tensor's storage.
        assert_eq!(values(&t, "offset"), (vec![3], vec![1.5, 2.0, 2.5]));
        assert_eq!(values(&t, "num_batches_tracked"), (vec![], vec![7.0]));
    }

    #[test]
    fn every_truncation_and_garbage_is_an_error_not_a_panic() {
        let bytes = std::fs::read(fixture()).expect("fixture");
        let path = Path::new("cut.pth");
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len], path).is_err(), "cut at {len}");
        }
        let mut flipped = bytes.clone();
        for i in (0..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            let _ = parse(&flipped, path);
        }
        let err = parse(b"hello world", path).expect_err("garbage");
        assert!(err.to_string().contains("cut.pth"), "{err}");
    }

    #[test]
    fn conversion_is_cached_and_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = cached_safetensors(&fixture(), dir.path()).expect("convert");
        let modified = std::fs::metadata(&first)
            .and_then(|m| m.modified())
            .expect("mtime");
        let again = cached_safetensors(&fixture(), dir.path()).expect("cached");
        assert_eq!(first, again);
        let still = std::fs::metadata(&again)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(modified, still);
        let loaded = candle_core::safetensors::load(&first, &Device::Cpu).expect("load");
        let permuted: Vec<f32> = loaded["permuted"]
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .expect("values");
        assert_eq!(permuted[1], 2.0);
        assert_eq!(permuted[2], 4.0);
    }
}
