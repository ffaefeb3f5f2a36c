//! MobileNetV2 (Sandler et al. 2018) with torchvision's tensor names.

use super::block::{Block, InvertedResidual};
use crate::nn::{Activation, ConvBn, ConvKind, Tensors};
use exeml_core::Result;

const BN_EPS: f64 = 1e-5;

/// Stages as torchvision writes them: expansion `t`, output channels `c`, repeats `n`, stride `s`.
const STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// The layers of MobileNetV2 up to the 1280-channel feature map, from `features.*` tensors.
pub fn layers(t: &Tensors) -> Result<Vec<Block>> {
    let mut blocks = vec![Block::Conv(ConvBn::load(
        t,
        "features.0.0",
        "features.0.1",
        ConvKind::Full { stride: 2 },
        Activation::Relu6,
        BN_EPS,
    )?)];
    let mut channels = 32;
    let mut index = 1;
    for (expansion, out, repeats, first_stride) in STAGES {
        for r in 0..repeats {
            let stride = if r == 0 { first_stride } else { 1 };
            let p = format!("features.{index}.conv");
            let (expand, dw, project, bn) = if expansion == 1 {
                (None, 0, 1, 2)
            } else {
                (Some((format!("{p}.0.0"), format!("{p}.0.1"))), 1, 2, 3)
            };
            let expand = expand
                .map(|(conv, bn)| {
                    ConvBn::load(
                        t,
                        &conv,
                        &bn,
                        ConvKind::Pointwise,
                        Activation::Relu6,
                        BN_EPS,
                    )
                })
                .transpose()?;
            let depthwise = ConvBn::load(
                t,
                &format!("{p}.{dw}.0"),
                &format!("{p}.{dw}.1"),
                ConvKind::Depthwise { stride },
                Activation::Relu6,
                BN_EPS,
            )?;
            let project = ConvBn::load(
                t,
                &format!("{p}.{project}"),
                &format!("{p}.{bn}"),
                ConvKind::Pointwise,
                Activation::Identity,
                BN_EPS,
            )?;
            blocks.push(Block::Inverted(InvertedResidual {
                expand,
                depthwise,
                project,
                residual: stride == 1 && channels == out,
            }));
            channels = out;
            index += 1;
        }
    }
    blocks.push(Block::Conv(ConvBn::load(
        t,
        &format!("features.{index}.0"),
        &format!("features.{index}.1"),
        ConvKind::Pointwise,
        Activation::Relu6,
        BN_EPS,
    )?));
    Ok(blocks)
}

/// The ImageNet classifier's tensor names (weight, bias).
pub const CLASSIFIER: (&str, &str) = ("classifier.1.weight", "classifier.1.bias");
