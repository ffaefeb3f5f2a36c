//! The blocks the backbones are made of: a plain conv, the inverted residual of MobileNetV2 and
//! EfficientNet-Lite (expand 1×1 → depthwise k×k → project 1×1, with a skip connection when
//! shapes allow), ResNet's max pooling and residual blocks, ConvNeXt's block, layer norms and
//! normalised downsampling, and ViT's token embedding and transformer blocks. ViT's tokens travel
//! between blocks as an `n×c×1×tokens` map, so its linear layers are the same 1×1 convolutions
//! and its layer norms the same norm over channels as the convolutional networks'.

use crate::nn::{add_activation, channel_norm, max_pool2d, scaled_softmax, Activation, ConvBn};
use candle_core::Tensor;

/// The epsilon of ConvNeXt's and ViT's layer norms (timm's default for both).
pub const LAYER_NORM_EPS: f64 = 1e-6;

/// Expand, depthwise, project; add the input when the block keeps the shape.
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    /// The 1×1 expansion (absent when the expansion ratio is 1).
    pub expand: Option<ConvBn>,
    /// The depthwise convolution (carries the block's stride).
    pub depthwise: ConvBn,
    /// The linear 1×1 projection.
    pub project: ConvBn,
    /// Whether the input is added to the output.
    pub residual: bool,
}

/// A ResNet block: two 3×3 convolutions (basic) or 1×1, 3×3, 1×1 (bottleneck); the input, or its
/// strided 1×1 projection when the shape changes, is added before the final ReLU.
#[derive(Debug, Clone)]
pub struct Residual {
    /// The convolutions in order; the last one has no activation.
    pub convs: Vec<ConvBn>,
    /// The projection of the shortcut, when the block changes the shape.
    pub downsample: Option<ConvBn>,
}

/// A ConvNeXt block: depthwise 7×7 → layer norm over channels → 1×1 expansion (GELU) → 1×1
/// projection, added to the input. The norm's scale and shift are folded into the expansion and
/// the layer scale (γ) into the projection, so the block is three convolutions and a norm.
#[derive(Debug, Clone)]
pub struct ConvNextBlock {
    /// The depthwise 7×7 convolution (with bias, no activation).
    pub depthwise: ConvBn,
    /// The 1×1 expansion to 4× the channels, then GELU.
    pub expand: ConvBn,
    /// The 1×1 projection back, scaled by the layer scale.
    pub project: ConvBn,
}

/// ViT's embedding of the patch map (`n×c×h×w`, from the patchify stem) as tokens: position
/// embeddings added, the map flattened to `n×c×1×(h·w)`, the class token put first.
#[derive(Debug, Clone)]
pub struct TokenEmbed {
    /// The class token with its position embedding added (`c`).
    pub class: Tensor,
    /// The patches' position embeddings on the checkpoint's grid (`c×gh×gw`); another grid
    /// (another input size) gets them resampled bilinearly.
    pub positions: Tensor,
}

/// A pre-norm transformer encoder block: `x + proj(attention(qkv(norm x)))`, then
/// `y + fc2(gelu(fc1(norm y)))`; each norm's scale and shift are folded into the layer after it.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    /// Queries, keys and values (`3c` outputs, timm's order: all queries, keys, values, each
    /// head after head).
    pub qkv: ConvBn,
    /// The attention output's projection.
    pub proj: ConvBn,
    /// The MLP's expansion, then GELU.
    pub fc1: ConvBn,
    /// The MLP's projection back.
    pub fc2: ConvBn,
    /// Attention heads.
    pub heads: usize,
}

/// Roles of a residual block's convolutions, as the checkpoints name them.
const RESIDUAL_ROLES: [&str; 3] = ["conv1", "conv2", "conv3"];

/// One layer of a backbone.
#[derive(Debug, Clone)]
pub enum Block {
    /// A convolution with folded batch norm.
    Conv(ConvBn),
    /// An inverted residual block.
    Inverted(InvertedResidual),
    /// A residual block.
    Residual(Residual),
    /// Max pooling over `kernel×kernel` windows with padding `pad` (never the maximum, as
    /// PyTorch's −∞ padding), trainable through ([`crate::nn::max_pool2d`]).
    MaxPool {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding on each side.
        pad: usize,
    },
    /// A ConvNeXt block.
    ConvNext(ConvNextBlock),
    /// Layer norm over channels at each position, then the per-channel scale and shift `affine`
    /// (a [`crate::nn::ConvKind::Scale`]), after `pool` (ConvNeXt's stem norm; the head norm of
    /// ConvNeXt after global average pooling and of ViT on its class token).
    ChannelNorm {
        /// The norm's scale and shift.
        affine: ConvBn,
        /// What the map is reduced to first.
        pool: Pool,
    },
    /// Layer norm over channels, then `conv` (into which the norm's scale and shift are folded):
    /// ConvNeXt's downsampling between stages.
    NormConv(ConvBn),
    /// ViT's patch tokens and class token.
    TokenEmbed(TokenEmbed),
    /// A transformer encoder block.
    Transformer(TransformerBlock),
}

/// What a [`Block::ChannelNorm`] reduces its input to before normalising.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Nothing: every position is normalised.
    None,
    /// The average over positions (`n×c×1×1`).
    Average,
    /// ViT's class token, the first token (`n×c×1×1`).
    ClassToken,
}

impl Block {
    /// The block's convolutions by role (`conv`, or `expand`/`depthwise`/`project`).
    pub fn convs(&self) -> Vec<(&'static str, &ConvBn)> {
        match self {
            Block::Conv(conv) => vec![("conv", conv)],
            Block::Inverted(b) => {
                let mut out = Vec::with_capacity(3);
                if let Some(expand) = &b.expand {
                    out.push(("expand", expand));
                }
                out.push(("depthwise", &b.depthwise));
                out.push(("project", &b.project));
                out
            }
            Block::Residual(b) => {
                let mut out: Vec<_> = RESIDUAL_ROLES.into_iter().zip(&b.convs).collect();
                if let Some(downsample) = &b.downsample {
                    out.push(("downsample", downsample));
                }
                out
            }
            Block::ConvNext(b) => vec![
                ("depthwise", &b.depthwise),
                ("expand", &b.expand),
                ("project", &b.project),
            ],
            Block::ChannelNorm { affine, .. } => vec![("norm", affine)],
            Block::NormConv(conv) => vec![("conv", conv)],
            Block::Transformer(b) => vec![
                ("qkv", &b.qkv),
                ("proj", &b.proj),
                ("fc1", &b.fc1),
                ("fc2", &b.fc2),
            ],
            Block::MaxPool { .. } | Block::TokenEmbed(_) => Vec::new(),
        }
    }

    /// The block's convolutions by role, mutable (to swap in trained tensors).
    pub fn convs_mut(&mut self) -> Vec<(&'static str, &mut ConvBn)> {
        match self {
            Block::Conv(conv) => vec![("conv", conv)],
            Block::Inverted(b) => {
                let mut out = Vec::with_capacity(3);
                if let Some(expand) = &mut b.expand {
                    out.push(("expand", expand));
                }
                out.push(("depthwise", &mut b.depthwise));
                out.push(("project", &mut b.project));
                out
            }
            Block::Residual(b) => {
                let mut out: Vec<_> = RESIDUAL_ROLES.into_iter().zip(&mut b.convs).collect();
                if let Some(downsample) = &mut b.downsample {
                    out.push(("downsample", downsample));
                }
                out
            }
            Block::ConvNext(b) => vec![
                ("depthwise", &mut b.depthwise),
                ("expand", &mut b.expand),
                ("project", &mut b.project),
            ],
            Block::ChannelNorm { affine, .. } => vec![("norm", affine)],
            Block::NormConv(conv) => vec![("conv", conv)],
            Block::Transformer(b) => vec![
                ("qkv", &mut b.qkv),
                ("proj", &mut b.proj),
                ("fc1", &mut b.fc1),
                ("fc2", &mut b.fc2),
            ],
            Block::MaxPool { .. } | Block::TokenEmbed(_) => Vec::new(),
        }
    }

    /// Every trainable tensor of the block by name: `ROLE.weight` and `ROLE.bias` of each
    /// convolution, and the token embedding's `class` and `positions`.
    pub fn tensors(&self) -> Vec<(String, &Tensor)> {
        if let Block::TokenEmbed(e) = self {
            return vec![
                ("class".into(), &e.class),
                ("positions".into(), &e.positions),
            ];
        }
        self.convs()
            .into_iter()
            .flat_map(|(role, conv)| {
                [
                    (format!("{role}.weight"), &conv.weight),
                    (format!("{role}.bias"), &conv.bias),
                ]
            })
            .collect()
    }

    /// [`Block::tensors`], mutable (to swap in variables or trained values).
    pub fn tensors_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        if let Block::TokenEmbed(e) = self {
            return vec![
                ("class".into(), &mut e.class),
                ("positions".into(), &mut e.positions),
            ];
        }
        self.convs_mut()
            .into_iter()
            .flat_map(|(role, conv)| {
                [
                    (format!("{role}.weight"), &mut conv.weight),
                    (format!("{role}.bias"), &mut conv.bias),
                ]
            })
            .collect()
    }

    /// Apply the block to `x` (`n×c×h×w`).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Block::Conv(conv) => conv.forward(x),
            Block::Inverted(b) => {
                let hidden = match &b.expand {
                    Some(expand) => expand.forward(x)?,
                    None => x.clone(),
                };
                let y = b.project.forward(&b.depthwise.forward(&hidden)?)?;
                if b.residual {
                    y + x
                } else {
                    Ok(y)
                }
            }
            Block::Residual(b) => {
                let mut y = x.clone();
                for conv in &b.convs {
                    y = conv.forward(&y)?;
                }
                let shortcut = match &b.downsample {
                    Some(downsample) => downsample.forward(x)?,
                    None => x.clone(),
                };
                add_activation(&y, &shortcut, Activation::Relu)
            }
            &Block::MaxPool {
                kernel,
                stride,
                pad,
            } => max_pool2d(x, kernel, stride, pad),
            Block::ConvNext(b) => {
                let y = channel_norm(&b.depthwise.forward(x)?, LAYER_NORM_EPS)?;
                b.project.forward(&b.expand.forward(&y)?)? + x
            }
            Block::ChannelNorm { affine, pool } => {
                let y = match pool {
                    Pool::None => x.clone(),
                    Pool::Average => x.mean_keepdim(2)?.mean_keepdim(3)?,
                    Pool::ClassToken => x.narrow(3, 0, 1)?,
                };
                affine.forward(&channel_norm(&y, LAYER_NORM_EPS)?)
            }
            Block::NormConv(conv) => conv.forward(&channel_norm(x, LAYER_NORM_EPS)?),
            Block::TokenEmbed(e) => e.forward(x),
            Block::Transformer(b) => {
                let qkv = b.qkv.forward(&channel_norm(x, LAYER_NORM_EPS)?)?;
                let y = (x + b.proj.forward(&attention(&qkv, b.heads)?)?)?;
                let mlp = b
                    .fc2
                    .forward(&b.fc1.forward(&channel_norm(&y, LAYER_NORM_EPS)?)?)?;
                y + mlp
            }
        }
    }
}

impl TokenEmbed {
    /// `n×c×h×w` patches → `n×c×1×(1 + h·w)` tokens.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let positions = self.positions_for(h, w)?;
        let patches = x
            .broadcast_add(&positions.unsqueeze(0)?)?
            .reshape((n, c, 1, h * w))?;
        let class = self
            .class
            .reshape((1, c, 1, 1))?
            .broadcast_as((n, c, 1, 1))?
            .contiguous()?;
        Tensor::cat(&[&class, &patches], 3)
    }

    /// The position embeddings for an `h×w` patch grid: the stored ones, or their bilinear
    /// resampling (PyTorch's `align_corners=False`) written as one matrix product, so that it is
    /// differentiable and runs on any device.
    pub(crate) fn positions_for(&self, h: usize, w: usize) -> candle_core::Result<Tensor> {
        let (c, gh, gw) = self.positions.dims3()?;
        if (gh, gw) == (h, w) {
            return Ok(self.positions.clone());
        }
        let (rows, cols) = (bilinear_weights(gh, h), bilinear_weights(gw, w));
        // resample[(a·gw + b), (i·w + j)] = rows[a][i] · cols[b][j]
        let mut resample = vec![0f32; gh * gw * h * w];
        for a in 0..gh {
            for b in 0..gw {
                for i in 0..h {
                    for j in 0..w {
                        resample[((a * gw + b) * h + i) * w + j] =
                            rows[a * h + i] * cols[b * w + j];
                    }
                }
            }
        }
        let device = self.positions.device();
        let resample = Tensor::from_vec(resample, (gh * gw, h * w), device)?;
        self.positions
            .reshape((c, gh * gw))?
            .matmul(&resample)?
            .reshape((c, h, w))
    }
}

/// `weights[s·out + o]`: how much source index `s` of `source` contributes to output index `o`
/// of `out` under PyTorch's bilinear resampling with `align_corners=False`.
fn bilinear_weights(source: usize, out: usize) -> Vec<f32> {
    let mut weights = vec![0f32; source * out];
    let scale = source as f64 / out as f64;
    for o in 0..out {
        let at = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let low = (at.floor() as usize).min(source - 1);
        let high = (low + 1).min(source - 1);
        let frac = (at - low as f64) as f32;
        weights[low * out + o] += 1.0 - frac;
        weights[high * out + o] += frac;
    }
    weights
}

/// Multi-head self-attention of `qkv` (`n×3c×1×t`, from the `qkv` layer) → `n×c×1×t`.
fn attention(qkv: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (n, triple, _, t) = qkv.dims4()?;
    let c = triple / 3;
    let d = c / heads;
    // Channel index s·c + h·d + j of the layer's output is part s, head h, element j.
    let qkv = qkv.reshape((n, 3, heads, d, t))?;
    let part = |s: usize| qkv.narrow(1, s, 1)?.squeeze(1);
    // Each part is copied out whole (a block copy), so that its batch and head dimensions
    // collapse into one, as candle's matrix product needs; the transposes below are strides
    // that `gemm` reads directly, where an element-wise transposing copy cost a twelfth of a
    // ViT's inference.
    let queries = part(0)?.contiguous()?.transpose(2, 3)?; // n×heads×t×d
    let keys = part(1)?.contiguous()?; // n×heads×d×t
    let values = part(2)?.contiguous()?; // n×heads×d×t
                                         // n×heads×t(query)×t(key)
    let weights = scaled_softmax(&queries.matmul(&keys)?, 1.0 / (d as f64).sqrt())?;
    values
        .matmul(&weights.transpose(2, 3)?)? // n×heads×d×t(query)
        .reshape((n, c, 1, t))
}

#[cfg(test)]
mod tests {
    use super::attention;
    use candle_core::{DType, Device, Tensor, Var, D};

    /// Attention written out with contiguous copies and candle's softmax, in f64.
    fn reference(qkv: &Tensor, heads: usize) -> Tensor {
        let (n, triple, _, t) = qkv.dims4().expect("dims");
        let (c, d) = (triple / 3, triple / 3 / heads);
        let part = |s: usize| {
            qkv.reshape((n, 3, heads, d, t))
                .and_then(|q| q.narrow(1, s, 1))
                .and_then(|q| q.squeeze(1))
                .and_then(|q| q.contiguous())
                .expect("part")
        };
        let (q, k, v) = (part(0), part(1), part(2));
        let scores = q
            .transpose(2, 3)
            .and_then(|q| q.contiguous())
            .and_then(|q| q.matmul(&k))
            .and_then(|s| s * (1.0 / (d as f64).sqrt()))
            .expect("scores");
        let weights = candle_nn::ops::softmax(&scores, D::Minus1).expect("softmax");
        weights
            .transpose(2, 3)
            .and_then(|w| w.contiguous())
            .and_then(|w| v.matmul(&w))
            .and_then(|o| o.reshape((n, c, 1, t)))
            .expect("attention")
    }

    #[test]
    fn attention_and_its_gradient_match_the_written_out_reference() {
        // Two images, so that the batch and head dimensions must collapse for the products.
        let (n, heads, d, t) = (2, 3, 4, 7);
        let qkv = Var::randn(0f32, 1.0, (n, 3 * heads * d, 1, t), &Device::Cpu).expect("qkv");
        let qkv64 =
            Var::from_tensor(&qkv.as_tensor().to_dtype(DType::F64).expect("f64")).expect("qkv64");
        let g = Tensor::randn(0f32, 1.0, (n, heads * d, 1, t), &Device::Cpu).expect("g");
        let ours = attention(qkv.as_tensor(), heads).expect("ours");
        let theirs = reference(qkv64.as_tensor(), heads);
        let f32_of = |t: &Tensor| t.to_dtype(DType::F32).expect("f32");
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .and_then(|x| x.abs())
                .and_then(|x| x.flatten_all())
                .and_then(|x| x.max(0))
                .and_then(|x| x.to_scalar::<f32>())
                .expect("diff")
        };
        assert!(diff(&ours, &f32_of(&theirs)) < 1e-5);
        let grad_of = |var: &Var, y: &Tensor, g: &Tensor| {
            let loss = (y * g).and_then(|l| l.sum_all()).expect("loss");
            let grads = loss.backward().expect("backward");
            grads.get(var.as_tensor()).expect("gradient").clone()
        };
        let ours = grad_of(&qkv, &ours, &g);
        let theirs = grad_of(&qkv64, &theirs, &g.to_dtype(DType::F64).expect("g64"));
        assert!(diff(&ours, &f32_of(&theirs)) < 1e-5);
    }
}
