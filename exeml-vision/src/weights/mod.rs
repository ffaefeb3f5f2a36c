//! Pretrained weights: reading PyTorch checkpoints (legacy and zip `.pth`), converting them once to
//! safetensors in a cache, and finding installed weight files (pip packages, the Hugging Face
//! cache, a folder named by `$EXEML_WEIGHTS_DIR`).

mod legacy_pth;
mod locate;

pub use legacy_pth::{
    cached_safetensors, convert_pth_to_safetensors, default_cache_dir, read_legacy_pth, read_pth,
};
pub use locate::{locate, locate_with, search_roots, WeightsSource};
