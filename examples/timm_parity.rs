//! Checks exeml's backbones against timm's own forward pass, on the files
//! `benches/vision/timm_parity.py OUT_DIR` writes (random weights, random norms):
//!
//! ```text
//! cargo run --release --example timm_parity -- OUT_DIR
//! ```
//!
//! For every `OUT_DIR/NAME/` whose NAME is an exeml backbone, loads `model.safetensors` as that
//! backbone, runs `check.safetensors`'s `input` through it and prints the largest difference of
//! the pooled features and of the ImageNet logits from timm's, relative to their largest
//! magnitude. Exits with an error when any is above 1e-4.

use candle_core::{Device, Tensor};
use exeml::vision::{Backbone, BackboneKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: timm_parity DIR")?);
    let mut failed = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&root)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = name.parse::<BackboneKind>() else {
            println!("{name}: not an exeml backbone, skipped");
            continue;
        };
        let folder = entry.path();
        let backbone = Backbone::load(kind, Some(&folder.join("model.safetensors")), &Device::Cpu)?;
        let check = candle_core::safetensors::load(folder.join("check.safetensors"), &Device::Cpu)?;
        let input = &check["input"];
        let features = relative_difference(&backbone.features(input)?, &check["features"])?;
        let logits = match backbone.imagenet_logits(input)? {
            Some(ours) => relative_difference(&ours, &check["logits"])?,
            None => f32::NAN,
        };
        println!("{name}: features {features:.2e}, logits {logits:.2e} (relative)");
        if !(features <= 1e-4 && logits <= 1e-4) {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("differ from timm beyond 1e-4: {}", failed.join(", ")).into())
    }
}

/// `max |ours − theirs| / max |theirs|`.
fn relative_difference(ours: &Tensor, theirs: &Tensor) -> candle_core::Result<f32> {
    let largest = |t: &Tensor| t.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>();
    Ok(largest(&(ours - theirs)?)? / largest(theirs)?)
}
