//! ResNet-18, -34 and -50 (He et al. 2016, "v1.5": the stride on the 3×3 convolution) with the
//! tensor names torchvision and timm share (`conv1`, `bn1`, `layerS.B.convI`, `…downsample.0/1`,
//! `fc`), so a timm checkpoint from the Hugging Face hub cache, a torchvision `.pth` or a
//! safetensors export of either loads as it is. candle-transformers' ResNet reads the same names;
//! this one is built from exeml's blocks so that probing, fine-tuning and the fused CPU kernels
//! work on it as on the other backbones.

use super::block::{Block, Residual};
use crate::nn::{candle_error, Activation, ConvBn, ConvKind, Tensors};
use candle_core::{Device, Tensor};
use exeml_core::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

const BN_EPS: f64 = 1e-5;

/// Which ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Basic blocks 2-2-2-2, 512 features.
    R18,
    /// Basic blocks 3-4-6-3, 512 features.
    R34,
    /// Bottleneck blocks 3-4-6-3, 2048 features.
    R50,
}

impl Depth {
    /// Blocks per stage and whether they are bottlenecks.
    fn plan(self) -> ([usize; 4], bool) {
        match self {
            Depth::R18 => ([2, 2, 2, 2], false),
            Depth::R34 => ([3, 4, 6, 3], false),
            Depth::R50 => ([3, 4, 6, 3], true),
        }
    }
}

/// The layers of a ResNet up to its last feature map: stem, max pooling, four stages.
pub fn layers(t: &Tensors, depth: Depth) -> Result<Vec<Block>> {
    let stem = ConvBn::load(
        t,
        "conv1",
        "bn1",
        ConvKind::Full { stride: 2 },
        Activation::Relu,
        BN_EPS,
    )?;
    let mut blocks = vec![
        Block::Conv(stem),
        Block::MaxPool {
            kernel: 3,
            stride: 2,
            pad: 1,
        },
    ];
    let (repeats, bottleneck) = depth.plan();
    for (stage, &count) in repeats.iter().enumerate() {
        for index in 0..count {
            let stride = if stage > 0 && index == 0 { 2 } else { 1 };
            let p = format!("layer{}.{index}", stage + 1);
            let load = |i: usize, kind: ConvKind, activation: Activation| {
                ConvBn::load(
                    t,
                    &format!("{p}.conv{i}"),
                    &format!("{p}.bn{i}"),
                    kind,
                    activation,
                    BN_EPS,
                )
            };
            let convs = if bottleneck {
                vec![
                    load(1, ConvKind::Pointwise, Activation::Relu)?,
                    load(2, ConvKind::Full { stride }, Activation::Relu)?,
                    load(3, ConvKind::Pointwise, Activation::Identity)?,
                ]
            } else {
                vec![
                    load(1, ConvKind::Full { stride }, Activation::Relu)?,
                    load(2, ConvKind::Full { stride: 1 }, Activation::Identity)?,
                ]
            };
            // The first block of a stage changes the shape (stride 2, or a bottleneck's ×4
            // channels), so its shortcut is a strided 1×1 convolution.
            let downsample = (index == 0 && (stride != 1 || bottleneck))
                .then(|| {
                    ConvBn::load(
                        t,
                        &format!("{p}.downsample.0"),
                        &format!("{p}.downsample.1"),
                        ConvKind::Full { stride },
                        Activation::Identity,
                        BN_EPS,
                    )
                })
                .transpose()?;
            blocks.push(Block::Residual(Residual { convs, downsample }));
        }
    }
    Ok(blocks)
}

/// The ImageNet classifier's tensor names (weight, bias).
pub const CLASSIFIER: (&str, &str) = ("fc.weight", "fc.bias");

/// Every tensor of a `depth` checkpoint, initialised as for training from scratch: convolutions
/// and the classifier He-uniform (seeded), batch norms the identity (γ 1, β 0, μ 0, σ² 1).
pub fn initial_tensors(depth: Depth, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = HashMap::new();
    let mut add = |name: String, dims: Vec<usize>, rng: &mut ChaCha8Rng| -> Result<()> {
        let fan_in: usize = dims.iter().skip(1).product();
        let bound = (6.0 / fan_in.max(1) as f32).sqrt();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        let tensor = Tensor::from_vec(values, dims, &Device::Cpu).map_err(candle_error)?;
        out.insert(name, tensor);
        Ok(())
    };
    let mut batch_norms = Vec::new();
    add("conv1.weight".into(), vec![64, 3, 7, 7], &mut rng)?;
    batch_norms.push(("bn1".to_string(), 64));
    let (repeats, bottleneck) = depth.plan();
    let expansion = if bottleneck { 4 } else { 1 };
    let mut channels = 64;
    for (stage, &count) in repeats.iter().enumerate() {
        let planes = 64 << stage;
        for index in 0..count {
            let p = format!("layer{}.{index}", stage + 1);
            let shapes = if bottleneck {
                vec![
                    vec![planes, channels, 1, 1],
                    vec![planes, planes, 3, 3],
                    vec![planes * 4, planes, 1, 1],
                ]
            } else {
                vec![vec![planes, channels, 3, 3], vec![planes, planes, 3, 3]]
            };
            for (i, dims) in shapes.into_iter().enumerate() {
                batch_norms.push((format!("{p}.bn{}", i + 1), dims[0]));
                add(format!("{p}.conv{}.weight", i + 1), dims, &mut rng)?;
            }
            if index == 0 && (stage > 0 || bottleneck) {
                add(
                    format!("{p}.downsample.0.weight"),
                    vec![planes * expansion, channels, 1, 1],
                    &mut rng,
                )?;
                batch_norms.push((format!("{p}.downsample.1"), planes * expansion));
            }
            channels = planes * expansion;
        }
    }
    add(CLASSIFIER.0.into(), vec![1000, channels], &mut rng)?;
    let constant = |value: f32, n: usize| {
        Tensor::from_vec(vec![value; n], n, &Device::Cpu).map_err(candle_error)
    };
    out.insert(CLASSIFIER.1.into(), constant(0.0, 1000)?);
    for (name, n) in batch_norms {
        out.insert(format!("{name}.weight"), constant(1.0, n)?);
        out.insert(format!("{name}.bias"), constant(0.0, n)?);
        out.insert(format!("{name}.running_mean"), constant(0.0, n)?);
        out.insert(format!("{name}.running_var"), constant(1.0, n)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, D};

    /// The checkpoint with random batch-norm statistics, so that folding them is tested.
    fn checkpoint(depth: Depth) -> HashMap<String, Tensor> {
        let mut tensors = initial_tensors(depth, 7).expect("tensors");
        let names: Vec<String> = tensors
            .keys()
            .filter(|k| k.contains("bn") || k.contains("downsample.1"))
            .cloned()
            .collect();
        for name in names {
            let n = tensors[&name].dim(0).expect("dim");
            let t = if name.ends_with("running_var") {
                Tensor::rand(0.5f32, 1.5, n, &Device::Cpu)
            } else {
                Tensor::rand(-0.5f32, 0.5, n, &Device::Cpu).and_then(|t| {
                    if name.ends_with(".weight") {
                        t + 1.0
                    } else {
                        Ok(t)
                    }
                })
            };
            tensors.insert(name, t.expect("rand"));
        }
        tensors
    }

    /// PyTorch's ResNet forward written out with unfolded batch norm and −∞ padded max pooling.
    fn reference(t: &HashMap<String, Tensor>, depth: Depth, x: &Tensor) -> Tensor {
        let conv = |x: &Tensor, name: &str, stride: usize| {
            let w = &t[&format!("{name}.weight")];
            let pad = w.dim(2).expect("k") / 2;
            x.conv2d(w, pad, stride, 1, 1).expect("conv")
        };
        let bn = |x: &Tensor, name: &str| {
            let get = |s: &str| {
                let v = &t[&format!("{name}.{s}")];
                v.reshape((1, v.dim(0).expect("dim"), 1, 1))
                    .expect("reshape")
            };
            let normed = x
                .broadcast_sub(&get("running_mean"))
                .and_then(|y| y.broadcast_div(&(get("running_var") + 1e-5)?.sqrt()?))
                .expect("norm");
            normed
                .broadcast_mul(&get("weight"))
                .and_then(|y| y.broadcast_add(&get("bias")))
                .expect("affine")
        };
        let y = bn(&conv(x, "conv1", 2), "bn1").relu().expect("relu");
        let (n, c, h, w) = y.dims4().expect("dims");
        let ninf = |dims: (usize, usize, usize, usize)| {
            Tensor::full(f32::NEG_INFINITY, dims, &Device::Cpu).expect("full")
        };
        let y = Tensor::cat(&[&ninf((n, c, 1, w)), &y, &ninf((n, c, 1, w))], 2).expect("cat");
        let y =
            Tensor::cat(&[&ninf((n, c, h + 2, 1)), &y, &ninf((n, c, h + 2, 1))], 3).expect("cat");
        let mut y = y.max_pool2d_with_stride(3, 2).expect("pool");
        let (repeats, bottleneck) = depth.plan();
        for (stage, &count) in repeats.iter().enumerate() {
            for index in 0..count {
                let stride = if stage > 0 && index == 0 { 2 } else { 1 };
                let p = format!("layer{}.{index}", stage + 1);
                let convs = if bottleneck { 3 } else { 2 };
                let mut z = y.clone();
                for i in 1..=convs {
                    let s = if i == convs - 1 || (!bottleneck && i == 1) {
                        stride
                    } else {
                        1
                    };
                    z = bn(&conv(&z, &format!("{p}.conv{i}"), s), &format!("{p}.bn{i}"));
                    if i < convs {
                        z = z.relu().expect("relu");
                    }
                }
                let shortcut = if t.contains_key(&format!("{p}.downsample.0.weight")) {
                    bn(
                        &conv(&y, &format!("{p}.downsample.0"), stride),
                        &format!("{p}.downsample.1"),
                    )
                } else {
                    y.clone()
                };
                y = (z + shortcut).and_then(|s| s.relu()).expect("add");
            }
        }
        y.mean((2, 3)).expect("pool")
    }

    #[test]
    fn folded_blocks_match_pytorchs_resnet_forward() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (depth, dim) in [(Depth::R18, 512), (Depth::R50, 2048)] {
            let tensors = checkpoint(depth);
            let path = dir.path().join("model.safetensors");
            candle_core::safetensors::save(&tensors, &path).expect("save");
            let loaded = Tensors::load(&path, &Device::Cpu).expect("load");
            let blocks = layers(&loaded, depth).expect("layers");
            let x = Tensor::randn(0f32, 1.0, (2, 3, 40, 48), &Device::Cpu).expect("x");
            let mut y = x.clone();
            for block in &blocks {
                y = block.forward(&y).expect("forward");
            }
            let ours = y.mean((2, 3)).expect("pool");
            let theirs = reference(&tensors, depth, &x);
            assert_eq!(ours.dims(), &[2, dim]);
            let scale = theirs
                .abs()
                .and_then(|a| a.max(D::Minus1))
                .and_then(|m| m.max(0))
                .and_then(|m| m.to_scalar::<f32>())
                .expect("scale");
            let diff = (&ours - &theirs)
                .and_then(|d| d.abs())
                .and_then(|d| d.flatten_all())
                .and_then(|d| d.max(0))
                .and_then(|d| d.to_scalar::<f32>())
                .expect("diff");
            assert!(
                scale > 0.0 && diff <= 1e-4 * scale,
                "{depth:?}: {diff} of {scale}"
            );
            assert_eq!(ours.dtype(), DType::F32);
        }
    }

    #[test]
    fn a_checkpoint_of_another_depth_is_a_format_error_naming_the_tensor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r18.safetensors");
        candle_core::safetensors::save(&initial_tensors(Depth::R18, 0).expect("t"), &path)
            .expect("save");
        let loaded = Tensors::load(&path, &Device::Cpu).expect("load");
        let err = layers(&loaded, Depth::R50)
            .expect_err("a ResNet-18 is not a ResNet-50")
            .to_string();
        assert!(
            err.contains("r18.safetensors") && err.contains("layer1.0"),
            "{err}"
        );
    }
}
