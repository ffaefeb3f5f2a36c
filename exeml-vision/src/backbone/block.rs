//! The blocks both backbones are made of: a plain conv, and the inverted residual
//! (expand 1×1 → depthwise k×k → project 1×1, with a skip connection when shapes allow).

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

/// One layer of a backbone.
#[derive(Debug, Clone)]
pub enum Block {
    /// A convolution with folded batch norm.
    Conv(ConvBn),
    /// An inverted residual block.
    Inverted(InvertedResidual),
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
        }
    }
}
