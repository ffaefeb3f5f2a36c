//! Backbone loading shared by the speed and device examples (included with `#[path]`).

use exeml::vision::{Backbone, BackboneKind};

/// `kind`'s installed weights, or for a hub backbone (ResNet, ConvNeXt, ViT) not in the hub cache
/// a seeded random one (speed and CPU-vs-GPU agreement do not depend on the values).
pub fn installed_or_random(
    kind: BackboneKind,
    device: &candle_core::Device,
) -> Result<Backbone, Box<dyn std::error::Error>> {
    match Backbone::load(kind, None, device) {
        Err(missing @ exeml::Error::NotFound { .. }) => {
            let Ok(tensors) = exeml::vision::initial_tensors(kind, 0) else {
                return Err(missing.into());
            };
            let file = std::env::temp_dir().join(format!(
                "exeml-example-{kind}-{}.safetensors",
                std::process::id()
            ));
            candle_core::safetensors::save(&tensors, &file)?;
            let backbone = Backbone::load(kind, Some(&file), device);
            std::fs::remove_file(&file)?;
            Ok(backbone?)
        }
        loaded => Ok(loaded?),
    }
}
