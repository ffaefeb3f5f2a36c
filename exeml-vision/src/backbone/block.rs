//! The blocks the backbones are made of: a plain conv, the inverted residual of MobileNetV2 and
//! EfficientNet-Lite (expand 1×1 → depthwise k×k → project 1×1, with a skip connection when
//! shapes allow), and ResNet's max pooling and residual blocks.

use crate::nn::ConvBn;
use candle_core::Tensor;

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
    /// Max pooling over `kernel×kernel` windows, zero padding `pad`. Zero padding equals
    /// PyTorch's −∞ padding because it only follows ReLUs (non-negative inputs).
    MaxPool {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Padding on each side.
        pad: usize,
    },
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
            Block::MaxPool { .. } => Vec::new(),
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
            Block::MaxPool { .. } => Vec::new(),
        }
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
                (y + shortcut)?.relu()
            }
            &Block::MaxPool {
                kernel,
                stride,
                pad,
            } => x
                .pad_with_zeros(2, pad, pad)?
                .pad_with_zeros(3, pad, pad)?
                .max_pool2d_with_stride(kernel, stride),
        }
    }
}
