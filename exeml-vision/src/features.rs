//! Features of images through a frozen backbone: decode in parallel, preprocess (optionally with
//! augmented views), run the network batch by batch, pool. The activations entering a chosen
//! block can be kept too, so that the blocks after it can be fine-tuned without running the
//! frozen ones again. Images that fail to decode are listed, never fatal.

use crate::backbone::Backbone;
use crate::data::{decode_file, preprocess, preprocess_augmented};
use crate::nn::candle_error;
use candle_core::Tensor;
use exeml_core::{Budget, Error, Progress, Result};
use rand::SeedableRng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// How to turn images into feature rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtractOptions {
    /// Square input size in pixels.
    pub resolution: u32,
    /// Augmented views per image in addition to the plain centre crop (0 = plain only).
    pub augmented_views: usize,
    /// Colour jitter strength of the augmented views.
    pub jitter: f32,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Seed of the augmentation.
    pub seed: u64,
    /// Keep the activations entering this block (for fine-tuning the blocks from it on).
    pub keep_activations_at: Option<usize>,
    /// Most bytes of kept activations; beyond it they are dropped (and `activations` is `None`).
    pub max_activation_bytes: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            resolution: 224,
            augmented_views: 0,
            jitter: 0.2,
            batch_size: 32,
            seed: 0,
            keep_activations_at: None,
            max_activation_bytes: 3 << 30,
        }
    }
}

/// Rows an image yields with `augmented_views` augmented views: its plain centre crop and each
/// view.
pub fn rows_per_image(augmented_views: usize) -> usize {
    1 + augmented_views
}

/// Feature rows and which image each came from.
#[derive(Debug)]
pub struct Features {
    /// `rows×d`.
    pub x: Tensor,
    /// The activations entering block `keep_activations_at`, `rows×c×h×w`, when asked for and
    /// within `max_activation_bytes`.
    pub activations: Option<Tensor>,
    /// For each row, the index of its image in the input list.
    pub image_of_row: Vec<usize>,
    /// Images that could not be used, with the reason.
    pub failed: Vec<(PathBuf, String)>,
}

/// Features of `images`. Fails with [`Error::BudgetExhausted`] when `budget` runs out, unless
/// `finish` (the first configuration of a search must finish), and with [`Error::Interrupted`]
/// as soon as the budget is cancelled, `finish` or not.
pub fn extract(
    backbone: &Backbone,
    images: &[PathBuf],
    options: &ExtractOptions,
    budget: &Budget,
    finish: bool,
    progress: &dyn Progress,
) -> Result<Features> {
    let device = backbone.device().clone();
    let side = options.resolution as usize;
    let pixels = 3 * side * side;
    let mut chunks = Vec::new();
    let mut kept: Option<Vec<Tensor>> = options.keep_activations_at.map(|_| Vec::new());
    let mut kept_bytes = 0usize;
    let mut image_of_row = Vec::new();
    let mut failed = Vec::new();
    let batch = options.batch_size.max(1);
    for (b, start) in (0..images.len()).step_by(batch).enumerate() {
        if budget.is_cancelled() {
            return Err(Error::Interrupted(format!(
                "extracting features of {} images was cancelled after {start}",
                images.len()
            )));
        }
        if !finish && budget.exhausted() {
            return Err(Error::BudgetExhausted {
                budget_secs: budget.limit().as_secs_f64(),
                what: format!("extracting features of {} images", images.len()),
            });
        }
        let end = (start + batch).min(images.len());
        let views: Vec<(usize, Result<Vec<Vec<f32>>>)> = (start..end)
            .into_par_iter()
            .map(|i| (i, views_of(&images[i], i, options)))
            .collect();
        let mut flat =
            Vec::with_capacity((end - start) * rows_per_image(options.augmented_views) * pixels);
        for (i, result) in views {
            match result {
                Ok(vs) => {
                    for v in vs {
                        flat.extend_from_slice(&v);
                        image_of_row.push(i);
                    }
                }
                Err(e) => failed.push((images[i].clone(), e.to_string())),
            }
        }
        let rows = flat.len() / pixels;
        if rows > 0 {
            let x = Tensor::from_vec(flat, (rows, 3, side, side), &device).map_err(candle_error)?;
            match (options.keep_activations_at, kept.as_mut()) {
                (Some(split), Some(acts)) => {
                    let a = backbone.activations_until(split, &x)?;
                    kept_bytes += a.elem_count() * 4;
                    chunks.push(backbone.features_from(split, &a)?);
                    if kept_bytes > options.max_activation_bytes {
                        kept = None;
                    } else {
                        acts.push(a);
                    }
                }
                _ => chunks.push(backbone.features(&x)?),
            }
        }
        progress.fraction(end as f64 / images.len().max(1) as f64);
        if b == 0 {
            progress.phase(&format!(
                "features: {} images through {} at {side} px",
                images.len(),
                backbone.kind()
            ));
        }
    }
    let x = if chunks.is_empty() {
        Tensor::zeros(
            (0, backbone.kind().feature_dim()),
            candle_core::DType::F32,
            &device,
        )
    } else {
        Tensor::cat(&chunks, 0)
    }
    .map_err(candle_error)?;
    let activations = match kept {
        Some(acts) if !acts.is_empty() => Some(Tensor::cat(&acts, 0).map_err(candle_error)?),
        _ => None,
    };
    Ok(Features {
        x,
        activations,
        image_of_row,
        failed,
    })
}

/// The plain view and the augmented views of one image.
fn views_of(path: &Path, index: usize, options: &ExtractOptions) -> Result<Vec<Vec<f32>>> {
    let image = decode_file(path)?;
    let mut views = Vec::with_capacity(rows_per_image(options.augmented_views));
    views.push(preprocess(&image, options.resolution));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        options.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    for _ in 0..options.augmented_views {
        views.push(preprocess_augmented(
            &image,
            options.resolution,
            options.jitter,
            &mut rng,
        ));
    }
    Ok(views)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_yields_its_plain_view_and_each_augmented_view(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("exeml-views-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("gradient.png");
        image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
            .save(&path)?;
        for augmented_views in [0, 1, 3] {
            let options = ExtractOptions {
                resolution: 32,
                augmented_views,
                ..ExtractOptions::default()
            };
            let views = views_of(&path, 0, &options)?;
            assert_eq!(views.len(), rows_per_image(options.augmented_views));
            assert!(views.iter().all(|v| v.len() == 3 * 32 * 32));
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
