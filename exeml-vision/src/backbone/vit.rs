//! Vision Transformers (Dosovitskiy et al. 2021), patch 16, with timm's tensor names
//! (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.I.{norm1, attn.qkv, attn.proj, norm2,
//! mlp.fc1, mlp.fc2}`, `norm`, `head`), so timm's checkpoints from the Hugging Face hub cache or a
//! safetensors export of one load as they are. The features are the class token after the final
//! norm (timm's `global_pool="token"`). Layer norms' scales and shifts are folded into the linear
//! layer after them at load time, and the class token's position embedding into the class token.

use super::block::{Block, Pool, TokenEmbed, TransformerBlock};
use super::fold::{linear, norm, scale};
use super::init::Checkpoint;
use crate::nn::{candle_error, Activation, ConvBn, ConvKind, Tensors};
use candle_core::Tensor;
use exeml_core::{Error, Result};
use std::collections::HashMap;

/// Side of the square patches.
const PATCH: usize = 16;

/// Which ViT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 5.7 M parameters: width 192, 12 blocks, 3 heads.
    Tiny,
    /// 22 M parameters: width 384, 12 blocks, 6 heads.
    Small,
    /// 86 M parameters: width 768, 12 blocks, 12 heads.
    Base,
}

impl Size {
    /// Width, blocks, heads.
    pub fn plan(self) -> (usize, usize, usize) {
        match self {
            Size::Tiny => (192, 12, 3),
            Size::Small => (384, 12, 6),
            Size::Base => (768, 12, 12),
        }
    }
}

/// The ImageNet classifier's tensor names (weight, bias).
pub const CLASSIFIER: (&str, &str) = ("head.weight", "head.bias");

/// The layers of a ViT up to its features: patchify stem, token embedding, the encoder blocks,
/// and the final norm of the class token.
pub fn layers(t: &Tensors, size: Size) -> Result<Vec<Block>> {
    let (dim, depth, heads) = size.plan();
    let stem = ConvBn {
        weight: t.get_dims("patch_embed.proj.weight", &[dim, 3, PATCH, PATCH])?,
        bias: t.get_dims("patch_embed.proj.bias", &[dim])?,
        kind: ConvKind::Patchify,
        activation: Activation::Identity,
    };
    let mut blocks = vec![Block::Conv(stem), Block::TokenEmbed(embedding(t, dim)?)];
    for i in 0..depth {
        let p = format!("blocks.{i}");
        let norm1 = norm(t, &format!("{p}.norm1"), dim)?;
        let norm2 = norm(t, &format!("{p}.norm2"), dim)?;
        blocks.push(Block::Transformer(TransformerBlock {
            qkv: linear(
                t,
                &format!("{p}.attn.qkv"),
                (3 * dim, dim),
                Some(&norm1),
                Activation::Identity,
            )?,
            proj: linear(
                t,
                &format!("{p}.attn.proj"),
                (dim, dim),
                None,
                Activation::Identity,
            )?,
            fc1: linear(
                t,
                &format!("{p}.mlp.fc1"),
                (4 * dim, dim),
                Some(&norm2),
                Activation::Gelu,
            )?,
            fc2: linear(
                t,
                &format!("{p}.mlp.fc2"),
                (dim, 4 * dim),
                None,
                Activation::Identity,
            )?,
            heads,
        }));
    }
    blocks.push(Block::ChannelNorm {
        affine: scale(t, "norm", dim)?,
        pool: Pool::ClassToken,
    });
    Ok(blocks)
}

/// The class token (its position embedding added) and the patches' position embeddings as a
/// `dim×g×g` map, from `cls_token` (`1×1×dim`) and `pos_embed` (`1×(1 + g²)×dim`).
fn embedding(t: &Tensors, dim: usize) -> Result<TokenEmbed> {
    let class = t.get_dims("cls_token", &[1, 1, dim])?;
    let positions = t.get("pos_embed")?;
    let tokens = match positions.dims() {
        &[1, tokens, d] if d == dim && tokens > 1 => tokens,
        other => {
            return Err(Error::Format {
                path: t.origin.clone(),
                message: format!(
                    "tensor `pos_embed` has shape {other:?}, expected [1, 1 + g², {dim}]"
                ),
            })
        }
    };
    let side = ((tokens - 1) as f64).sqrt().round() as usize;
    if side * side != tokens - 1 {
        return Err(Error::Format {
            path: t.origin.clone(),
            message: format!(
                "tensor `pos_embed` has {} patch positions, not a square grid",
                tokens - 1
            ),
        });
    }
    let split = || -> candle_core::Result<TokenEmbed> {
        let positions = positions.squeeze(0)?; // tokens×dim
        let class = (class.reshape(dim)? + positions.get(0)?)?;
        let patches = positions
            .narrow(0, 1, tokens - 1)?
            .reshape((side, side, dim))?
            .permute((2, 0, 1))?
            .contiguous()?;
        Ok(TokenEmbed {
            class,
            positions: patches,
        })
    };
    split().map_err(candle_error)
}

/// Every tensor of a `size` checkpoint for 224 px (a 14×14 grid), initialised as timm does for
/// training from scratch (weights and position embeddings ≈ N(0, 0.02²) as a seeded uniform of
/// that spread, class token ≈ 10⁻⁶, biases 0, norms the identity).
pub fn initial_tensors(size: Size, seed: u64) -> Result<HashMap<String, Tensor>> {
    let (dim, depth, _) = size.plan();
    let grid = 224 / PATCH;
    let mut c = Checkpoint::new(seed);
    c.random("patch_embed.proj.weight", vec![dim, 3, PATCH, PATCH], 0.02)?;
    c.constant("patch_embed.proj.bias", dim, 0.0)?;
    c.random("cls_token", vec![1, 1, dim], 1e-6)?;
    c.random("pos_embed", vec![1, 1 + grid * grid, dim], 0.02)?;
    for i in 0..depth {
        let p = format!("blocks.{i}");
        c.identity_norm(&format!("{p}.norm1"), dim)?;
        c.linear(&format!("{p}.attn.qkv"), 3 * dim, dim)?;
        c.linear(&format!("{p}.attn.proj"), dim, dim)?;
        c.identity_norm(&format!("{p}.norm2"), dim)?;
        c.linear(&format!("{p}.mlp.fc1"), 4 * dim, dim)?;
        c.linear(&format!("{p}.mlp.fc2"), dim, 4 * dim)?;
    }
    c.identity_norm("norm", dim)?;
    c.linear("head", 1000, dim)?;
    Ok(c.into_tensors())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::block::LAYER_NORM_EPS;
    use crate::backbone::testing::{assert_close, features_of};
    use candle_core::Device;
    use candle_core::D;

    /// A ViT-Tiny checkpoint with norms, biases and the class token drawn at random too.
    fn checkpoint() -> HashMap<String, Tensor> {
        let mut tensors = initial_tensors(Size::Tiny, 11).expect("tensors");
        let names: Vec<String> = tensors.keys().cloned().collect();
        for name in names {
            let dims = tensors[&name].dims().to_vec();
            let around = if name.ends_with("norm1.weight")
                || name.ends_with("norm2.weight")
                || name == "norm.weight"
            {
                1.0
            } else {
                0.0
            };
            if dims.len() == 1 || name == "cls_token" {
                let t = Tensor::rand(around - 0.5f32, around + 0.5, dims, &Device::Cpu);
                tensors.insert(name, t.expect("rand"));
            } else if name.contains("weight") {
                let t = (&tensors[&name] * 5.0).expect("scale");
                tensors.insert(name, t);
            }
        }
        tensors
    }

    /// timm's ViT forward written out in its own layout (`n×tokens×c`): unfolded layer norms,
    /// `Linear` layers, attention as `softmax(q·kᵀ/√d)·v`; the position embeddings resampled by
    /// candle's own bilinear upsampling when the grid is not the checkpoint's.
    fn reference(t: &HashMap<String, Tensor>, x: &Tensor) -> Tensor {
        let (dim, depth, heads) = Size::Tiny.plan();
        let get = |name: &str| t[name].clone();
        let layer_norm = |x: &Tensor, p: &str| {
            let mean = x.mean_keepdim(D::Minus1).expect("mean");
            let centred = x.broadcast_sub(&mean).expect("centre");
            let var = centred
                .sqr()
                .and_then(|s| s.mean_keepdim(D::Minus1))
                .expect("var");
            centred
                .broadcast_div(&(var + LAYER_NORM_EPS).and_then(|v| v.sqrt()).expect("std"))
                .and_then(|y| y.broadcast_mul(&get(&format!("{p}.weight"))))
                .and_then(|y| y.broadcast_add(&get(&format!("{p}.bias"))))
                .expect("norm")
        };
        let linear = |x: &Tensor, p: &str| {
            x.broadcast_matmul(&get(&format!("{p}.weight")).t().expect("t"))
                .and_then(|y| y.broadcast_add(&get(&format!("{p}.bias"))))
                .expect("linear")
        };
        let n = x.dim(0).expect("n");
        let patches = x
            .conv2d(&get("patch_embed.proj.weight"), 0, PATCH, 1, 1)
            .and_then(|y| y.broadcast_add(&get("patch_embed.proj.bias").reshape((1, dim, 1, 1))?))
            .expect("patchify");
        let (gh, gw) = (patches.dim(2).expect("h"), patches.dim(3).expect("w"));
        let tokens = patches
            .flatten_from(2)
            .and_then(|p| p.transpose(1, 2))
            .expect("tokens"); // n×(gh·gw)×dim
        let pos = get("pos_embed");
        let patch_pos = pos
            .narrow(1, 1, 196)
            .and_then(|p| p.reshape((1, 14, 14, dim)))
            .and_then(|p| p.permute((0, 3, 1, 2)))
            .and_then(|p| p.upsample_bilinear2d(gh, gw, false))
            .and_then(|p| p.flatten_from(2))
            .and_then(|p| p.transpose(1, 2))
            .expect("positions");
        let class = (get("cls_token") + pos.narrow(1, 0, 1).expect("class position"))
            .and_then(|c| c.broadcast_as((n, 1, dim))?.contiguous())
            .expect("class");
        let mut y = Tensor::cat(
            &[&class, &tokens.broadcast_add(&patch_pos).expect("add")],
            1,
        )
        .expect("cat");
        let head_dim = dim / heads;
        for i in 0..depth {
            let p = format!("blocks.{i}");
            let qkv = linear(
                &layer_norm(&y, &format!("{p}.norm1")),
                &format!("{p}.attn.qkv"),
            );
            let t_len = qkv.dim(1).expect("tokens");
            let qkv = qkv
                .reshape((n, t_len, 3, heads, head_dim))
                .and_then(|q| q.permute((2, 0, 3, 1, 4)))
                .expect("split"); // 3×n×heads×t×d
            let part = |s: usize| qkv.get(s).and_then(|p| p.contiguous()).expect("part");
            let (q, k, v) = (part(0), part(1), part(2));
            let scores = (q.matmul(&k.t().expect("kt")).expect("qk") / (head_dim as f64).sqrt())
                .expect("scale");
            let weights = candle_nn::ops::softmax(&scores, D::Minus1).expect("softmax");
            let attended = weights
                .matmul(&v)
                .and_then(|a| a.transpose(1, 2))
                .and_then(|a| a.reshape((n, t_len, dim)))
                .expect("attend");
            y = (&y + linear(&attended, &format!("{p}.attn.proj"))).expect("residual");
            let hidden = linear(
                &layer_norm(&y, &format!("{p}.norm2")),
                &format!("{p}.mlp.fc1"),
            )
            .gelu_erf()
            .expect("gelu");
            y = (&y + linear(&hidden, &format!("{p}.mlp.fc2"))).expect("residual");
        }
        layer_norm(&y, "norm")
            .get_on_dim(1, 0)
            .expect("class token")
    }

    #[test]
    fn folded_blocks_match_timms_vit_forward_at_another_resolution() {
        let tensors = checkpoint();
        // 96×160 px: a 6×10 grid, so the 14×14 position embeddings are resampled.
        let x = Tensor::randn(0f32, 1.0, (2, 3, 96, 160), &Device::Cpu).expect("x");
        let ours = features_of(&tensors, |t| layers(t, Size::Tiny), &x);
        assert_eq!(ours.dims(), &[2, 192]);
        assert_close(&ours, &reference(&tensors, &x));
    }

    #[test]
    fn a_position_table_that_is_not_a_square_grid_is_a_format_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut tensors = initial_tensors(Size::Tiny, 0).expect("tensors");
        let odd = Tensor::zeros((1, 1 + 14 * 15, 192), candle_core::DType::F32, &Device::Cpu);
        tensors.insert("pos_embed".into(), odd.expect("zeros"));
        let path = dir.path().join("odd.safetensors");
        candle_core::safetensors::save(&tensors, &path).expect("save");
        let loaded = Tensors::load(&path, &Device::Cpu).expect("load");
        let err = layers(&loaded, Size::Tiny)
            .expect_err("210 positions")
            .to_string();
        assert!(
            err.contains("odd.safetensors") && err.contains("pos_embed"),
            "{err}"
        );
        let err = layers(&loaded, Size::Small)
            .expect_err("a tiny is not a small")
            .to_string();
        assert!(err.contains("patch_embed.proj.weight"), "{err}");
    }
}
