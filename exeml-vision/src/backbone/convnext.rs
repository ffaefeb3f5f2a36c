//! ConvNeXt (Liu et al. 2022) atto to tiny with timm's tensor names (`stem.0/1`,
//! `stages.S.downsample.0/1`, `stages.S.blocks.B.{conv_dw, norm, mlp.fc1, mlp.fc2, gamma}`,
//! `head.norm`, `head.fc`), so a timm checkpoint from the Hugging Face hub cache or a safetensors
//! export of one loads as it is. The layer norms' scales and shifts and the layer scales are
//! folded into the neighbouring convolutions at load time (exact, as batch norm is for the other
//! backbones), so probing, fine-tuning and saving tuned blocks work as on them.

use super::block::{Block, ConvNextBlock, Pool};
use super::fold::{fold_norm, linear, norm, scale};
use super::init::Checkpoint;
use crate::nn::{candle_error, Activation, ConvBn, ConvKind, Tensors};
use candle_core::Tensor;
use exeml_core::Result;
use std::collections::HashMap;

/// Which ConvNeXt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 3.7 M parameters, widths 40…320.
    Atto,
    /// 5.2 M parameters, widths 48…384.
    Femto,
    /// 9.1 M parameters, widths 64…512.
    Pico,
    /// 15.6 M parameters, widths 80…640.
    Nano,
    /// 28.6 M parameters, widths 96…768.
    Tiny,
}

impl Size {
    /// Blocks per stage and the width of each stage.
    pub fn plan(self) -> ([usize; 4], [usize; 4]) {
        match self {
            Size::Atto => ([2, 2, 6, 2], [40, 80, 160, 320]),
            Size::Femto => ([2, 2, 6, 2], [48, 96, 192, 384]),
            Size::Pico => ([2, 2, 6, 2], [64, 128, 256, 512]),
            Size::Nano => ([2, 2, 8, 2], [80, 160, 320, 640]),
            Size::Tiny => ([3, 3, 9, 3], [96, 192, 384, 768]),
        }
    }

    /// Width of the pooled features.
    pub fn feature_dim(self) -> usize {
        self.plan().1[3]
    }
}

/// The ImageNet classifier's tensor names (weight, bias).
pub const CLASSIFIER: (&str, &str) = ("head.fc.weight", "head.fc.bias");

/// The layers of a ConvNeXt up to its pooled, normalised features: the patchify stem and its
/// norm, four stages (normalised 2×2 downsampling before stages 2–4), and the head's norm after
/// global average pooling.
pub fn layers(t: &Tensors, size: Size) -> Result<Vec<Block>> {
    let (depths, dims) = size.plan();
    let stem = ConvBn {
        weight: t.get_dims("stem.0.weight", &[dims[0], 3, 4, 4])?,
        bias: t.get_dims("stem.0.bias", &[dims[0]])?,
        kind: ConvKind::Patchify,
        activation: Activation::Identity,
    };
    let mut blocks = vec![
        Block::Conv(stem),
        Block::ChannelNorm {
            affine: scale(t, "stem.1", dims[0])?,
            pool: Pool::None,
        },
    ];
    for (stage, (&depth, &dim)) in depths.iter().zip(&dims).enumerate() {
        if stage > 0 {
            let p = format!("stages.{stage}.downsample");
            let previous = dims[stage - 1];
            let (gamma, beta) = norm(t, &format!("{p}.0"), previous)?;
            let weight = t.get_dims(&format!("{p}.1.weight"), &[dim, previous, 2, 2])?;
            let bias = t.get_dims(&format!("{p}.1.bias"), &[dim])?;
            let (weight, bias) = fold_norm(&weight, &bias, &gamma, &beta).map_err(candle_error)?;
            blocks.push(Block::NormConv(ConvBn {
                weight,
                bias,
                kind: ConvKind::Patchify,
                activation: Activation::Identity,
            }));
        }
        for index in 0..depth {
            blocks.push(Block::ConvNext(block(
                t,
                &format!("stages.{stage}.blocks.{index}"),
                dim,
            )?));
        }
    }
    blocks.push(Block::ChannelNorm {
        affine: scale(t, "head.norm", dims[3])?,
        pool: Pool::Average,
    });
    Ok(blocks)
}

/// One block, its norm folded into the expansion and its layer scale into the projection.
fn block(t: &Tensors, p: &str, dim: usize) -> Result<ConvNextBlock> {
    let depthwise = ConvBn {
        weight: t.get_dims(&format!("{p}.conv_dw.weight"), &[dim, 1, 7, 7])?,
        bias: t.get_dims(&format!("{p}.conv_dw.bias"), &[dim])?,
        kind: ConvKind::Depthwise { stride: 1 },
        activation: Activation::Identity,
    };
    let normed = norm(t, &format!("{p}.norm"), dim)?;
    let expand = linear(
        t,
        &format!("{p}.mlp.fc1"),
        (4 * dim, dim),
        Some(&normed),
        Activation::Gelu,
    )?;
    let mut project = linear(
        t,
        &format!("{p}.mlp.fc2"),
        (dim, 4 * dim),
        None,
        Activation::Identity,
    )?;
    // Checkpoints trained without layer scale have no γ: the projection is used as it is.
    let layer_scale = format!("{p}.gamma");
    if t.map.contains_key(&layer_scale) {
        let gamma = t.get_dims(&layer_scale, &[dim])?;
        let scaled = || -> candle_core::Result<(Tensor, Tensor)> {
            Ok((
                project.weight.broadcast_mul(&gamma.reshape((dim, 1))?)?,
                (&project.bias * &gamma)?,
            ))
        };
        (project.weight, project.bias) = scaled().map_err(candle_error)?;
    }
    Ok(ConvNextBlock {
        depthwise,
        expand,
        project,
    })
}

/// Every tensor of a `size` checkpoint, initialised as timm does for training from scratch
/// (weights ≈ N(0, 0.02²) as a seeded uniform of that spread, biases 0, norms the identity,
/// layer scales 10⁻⁶).
pub fn initial_tensors(size: Size, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut c = Checkpoint::new(seed);
    let (depths, dims) = size.plan();
    c.random("stem.0.weight", vec![dims[0], 3, 4, 4], 0.02)?;
    c.constant("stem.0.bias", dims[0], 0.0)?;
    c.identity_norm("stem.1", dims[0])?;
    for (stage, (&depth, &dim)) in depths.iter().zip(&dims).enumerate() {
        if stage > 0 {
            let p = format!("stages.{stage}.downsample");
            c.identity_norm(&format!("{p}.0"), dims[stage - 1])?;
            c.random(
                format!("{p}.1.weight"),
                vec![dim, dims[stage - 1], 2, 2],
                0.02,
            )?;
            c.constant(format!("{p}.1.bias"), dim, 0.0)?;
        }
        for index in 0..depth {
            let p = format!("stages.{stage}.blocks.{index}");
            c.random(format!("{p}.conv_dw.weight"), vec![dim, 1, 7, 7], 0.02)?;
            c.constant(format!("{p}.conv_dw.bias"), dim, 0.0)?;
            c.identity_norm(&format!("{p}.norm"), dim)?;
            c.linear(&format!("{p}.mlp.fc1"), 4 * dim, dim)?;
            c.linear(&format!("{p}.mlp.fc2"), dim, 4 * dim)?;
            c.constant(format!("{p}.gamma"), dim, 1e-6)?;
        }
    }
    c.identity_norm("head.norm", dims[3])?;
    c.linear("head.fc", 1000, dims[3])?;
    Ok(c.into_tensors())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::block::LAYER_NORM_EPS;
    use crate::backbone::testing::{assert_close, features_of};
    use candle_core::Device;
    use candle_core::D;

    /// The checkpoint with every norm, bias and layer scale drawn at random (so that folding
    /// them is tested), and the small ConvNeXts' 1×1-kernel form of the MLP weights.
    fn checkpoint(size: Size, kernel_mlp: bool) -> HashMap<String, Tensor> {
        let mut tensors = initial_tensors(size, 7).expect("tensors");
        let names: Vec<String> = tensors.keys().cloned().collect();
        for name in names {
            let t = &tensors[&name];
            let dims = t.dims().to_vec();
            let replaced = if dims.len() == 1 {
                // Every 1-d `weight` is a norm's scale; scales and layer scales around 1,
                // shifts and biases around 0.
                let around = if name.ends_with(".weight") || name.ends_with(".gamma") {
                    1.0
                } else {
                    0.0
                };
                Some(Tensor::rand(
                    around - 0.5f32,
                    around + 0.5,
                    dims[0],
                    &Device::Cpu,
                ))
            } else if kernel_mlp && name.contains("mlp.fc") {
                Some(t.reshape((dims[0], dims[1], 1, 1)))
            } else if name.contains("weight") {
                // Wider than timm's initial spread, so activations are not all near zero.
                Some(t * 10.0)
            } else {
                None
            };
            if let Some(t) = replaced {
                tensors.insert(name, t.expect("random"));
            }
        }
        tensors
    }

    /// timm's ConvNeXt forward written out: unfolded layer norms (channels last), grouped
    /// convolution for the depthwise layer, `Linear` MLP, layer scale, pooled head norm.
    fn reference(t: &HashMap<String, Tensor>, size: Size, x: &Tensor) -> Tensor {
        let get = |name: &str| t[name].clone();
        let layer_norm = |x: &Tensor, p: &str| {
            // n×c×h×w → n×h×w×c, normalise the last dimension, back.
            let y = x.permute((0, 2, 3, 1)).expect("permute");
            let mean = y.mean_keepdim(D::Minus1).expect("mean");
            let centred = y.broadcast_sub(&mean).expect("centre");
            let var = centred
                .sqr()
                .and_then(|s| s.mean_keepdim(D::Minus1))
                .expect("var");
            let normed = centred
                .broadcast_div(&(var + LAYER_NORM_EPS).and_then(|v| v.sqrt()).expect("std"))
                .expect("norm");
            normed
                .broadcast_mul(&get(&format!("{p}.weight")))
                .and_then(|y| y.broadcast_add(&get(&format!("{p}.bias"))))
                .and_then(|y| y.permute((0, 3, 1, 2)))
                .expect("affine")
        };
        let conv = |x: &Tensor, p: &str, stride: usize, pad: usize, groups: usize| {
            let bias = get(&format!("{p}.bias"));
            let c = bias.dim(0).expect("c");
            x.conv2d(&get(&format!("{p}.weight")), pad, stride, 1, groups)
                .and_then(|y| y.broadcast_add(&bias.reshape((1, c, 1, 1))?))
                .expect("conv")
        };
        let linear = |x: &Tensor, p: &str| {
            let w = get(&format!("{p}.weight"));
            let w = w
                .reshape((w.dim(0).expect("o"), w.dim(1).expect("i")))
                .expect("w");
            x.broadcast_matmul(&w.t().expect("t"))
                .and_then(|y| y.broadcast_add(&get(&format!("{p}.bias"))))
                .expect("linear")
        };
        let mut y = layer_norm(&conv(x, "stem.0", 4, 0, 1), "stem.1");
        let (depths, dims) = size.plan();
        for (stage, (&depth, &dim)) in depths.iter().zip(&dims).enumerate() {
            if stage > 0 {
                let p = format!("stages.{stage}.downsample");
                y = conv(
                    &layer_norm(&y, &format!("{p}.0")),
                    &format!("{p}.1"),
                    2,
                    0,
                    1,
                );
            }
            for index in 0..depth {
                let p = format!("stages.{stage}.blocks.{index}");
                let z = conv(&y, &format!("{p}.conv_dw"), 1, 3, dim);
                let z = layer_norm(&z, &format!("{p}.norm"))
                    .permute((0, 2, 3, 1))
                    .expect("last");
                let z = linear(&z, &format!("{p}.mlp.fc1"))
                    .gelu_erf()
                    .expect("gelu");
                let z = linear(&z, &format!("{p}.mlp.fc2"))
                    .broadcast_mul(&get(&format!("{p}.gamma")))
                    .and_then(|z| z.permute((0, 3, 1, 2)))
                    .expect("scale");
                y = (z + &y).expect("residual");
            }
        }
        let pooled = y.mean_keepdim((2, 3)).expect("pool");
        layer_norm(&pooled, "head.norm")
            .flatten_from(1)
            .expect("flat")
    }

    #[test]
    fn folded_blocks_match_timms_convnext_forward() {
        for kernel_mlp in [true, false] {
            let tensors = checkpoint(Size::Atto, kernel_mlp);
            let x = Tensor::randn(0f32, 1.0, (2, 3, 64, 96), &Device::Cpu).expect("x");
            let ours = features_of(&tensors, |t| layers(t, Size::Atto), &x);
            assert_eq!(ours.dims(), &[2, Size::Atto.feature_dim()]);
            assert_close(&ours, &reference(&tensors, Size::Atto, &x));
        }
    }

    #[test]
    fn a_checkpoint_of_another_size_is_a_format_error_naming_the_tensor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("atto.safetensors");
        candle_core::safetensors::save(&initial_tensors(Size::Atto, 0).expect("t"), &path)
            .expect("save");
        let loaded = Tensors::load(&path, &Device::Cpu).expect("load");
        let err = layers(&loaded, Size::Tiny)
            .expect_err("an atto is not a tiny")
            .to_string();
        assert!(
            err.contains("atto.safetensors") && err.contains("stem.0.weight"),
            "{err}"
        );
    }
}
