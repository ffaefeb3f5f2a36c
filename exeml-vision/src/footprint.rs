//! What a backbone configuration costs where it is deployed: the median latency of one image
//! through the network on the training device, and the size of the model folder it saves.
//! The search measures every candidate so that `--max-latency-ms` / `--max-model-mb` hold for
//! what it returns (see [`exeml_core::constraints`]).

use crate::backbone::Backbone;
use crate::nn::{candle_error, on_workers};
use exeml_core::constraints::median_latency_ms;
use exeml_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Measured latency and size of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Median milliseconds for one decoded image through backbone and head (decoding and
    /// resizing the file are not included: they depend on the file, not the model).
    pub latency_ms: f64,
    /// Megabytes of the saved model folder.
    pub size_mb: f64,
}

/// Measure `backbone` at `resolution` with a head for `classes` classes.
pub fn measure(backbone: &Backbone, resolution: u32, classes: usize) -> Result<Footprint> {
    let side = resolution as usize;
    let x = candle_core::Tensor::zeros(
        (1, 3, side, side),
        candle_core::DType::F32,
        backbone.device(),
    )
    .map_err(candle_error)?;
    let latency_ms = median_latency_ms(7, 2.0, || {
        // As a prediction runs it: on the pool's workers. Reading the result back waits for
        // the device (a GPU runs asynchronously).
        on_workers(|| {
            let pooled = backbone.features(&x)?;
            pooled.to_vec2::<f32>().map_err(candle_error)?;
            Ok(())
        })
    })?;
    Ok(Footprint {
        latency_ms,
        size_mb: model_megabytes(backbone, classes, 0)?,
    })
}

/// The size of the model folder that saves `backbone` (its weights file is copied), a head for
/// `classes` classes and the top `tuned_blocks` blocks fine-tuned (plus any already tuned).
pub fn model_megabytes(backbone: &Backbone, classes: usize, tuned_blocks: usize) -> Result<f64> {
    let path = backbone.weights_path();
    let weights = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len() as usize;
    let dim = backbone.kind().feature_dim();
    // Weight, bias and the feature standardisation of the linear head, in f32.
    let head = (classes * dim + classes + 2 * dim) * 4;
    let blocks = backbone.blocks();
    let already = backbone
        .tuned_from()
        .map_or(0, |first| blocks.len() - first);
    let tuned: usize = blocks
        .iter()
        .rev()
        .take(tuned_blocks.max(already))
        .flat_map(|b| b.tensors())
        .map(|(_, tensor)| tensor.elem_count() * 4)
        .sum();
    Ok((weights + head + tuned) as f64 / 1e6)
}

/// The size of the model folder that saves an ensemble of `members` models, each with its own
/// head and its own top `tuned_blocks` blocks of `backbone`.
pub fn ensemble_megabytes(
    backbone: &Backbone,
    classes: usize,
    tuned_blocks: usize,
    members: usize,
) -> Result<f64> {
    let one = model_megabytes(backbone, classes, tuned_blocks)?;
    let path = backbone.weights_path();
    let shared = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len() as f64
        / 1e6;
    Ok(one + members.saturating_sub(1) as f64 * (one - shared))
}

/// Median milliseconds for one image at `resolution` through an ensemble whose members (each a
/// backbone with its own tuned blocks from `first` on) share the blocks before `first`.
pub fn ensemble_latency_ms(members: &[&Backbone], first: usize, resolution: u32) -> Result<f64> {
    let Some(shared) = members.first() else {
        return Ok(0.0);
    };
    let side = resolution as usize;
    let x =
        candle_core::Tensor::zeros((1, 3, side, side), candle_core::DType::F32, shared.device())
            .map_err(candle_error)?;
    median_latency_ms(7, 2.0, || {
        let below = shared.activations_until(first, &x)?;
        for backbone in members {
            backbone
                .features_from(first, &below)?
                .to_vec2::<f32>()
                .map_err(candle_error)?;
        }
        Ok(())
    })
}

/// Lower input sizes to try when a configuration is too slow, largest first.
pub fn smaller_resolutions(resolution: u32) -> impl Iterator<Item = u32> {
    [224u32, 192, 160, 128, 112, 96, 64]
        .into_iter()
        .filter(move |&r| r < resolution)
}
