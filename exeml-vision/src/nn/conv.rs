//! A convolution followed by batch norm (folded into the convolution) and an activation.

use super::{
    bias_act::{bias_activation, Activation},
    candle_error,
    depthwise::depthwise_conv2d,
    im2col::conv2d_im2col,
    pointwise::pointwise,
};
use candle_core::{DType, Tensor};
use exeml_core::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Named tensors of a checkpoint, with the file they came from for error messages.
#[derive(Debug)]
pub struct Tensors {
    /// The tensors by name.
    pub map: HashMap<String, Tensor>,
    /// The file they were read from.
    pub origin: PathBuf,
}

impl Tensors {
    /// Read a safetensors file onto `device`.
    pub fn load(path: &Path, device: &candle_core::Device) -> Result<Self> {
        let map = candle_core::safetensors::load(path, device)
            .map_err(|e| Error::data(path, format!("not a readable safetensors file: {e}")))?;
        Ok(Tensors {
            map,
            origin: path.to_path_buf(),
        })
    }

    /// The tensor `name` as f32, or a format error naming the file and the tensor.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let tensor = self.map.get(name).ok_or_else(|| Error::Format {
            path: self.origin.clone(),
            message: format!("tensor `{name}` is missing: not the expected backbone checkpoint"),
        })?;
        tensor.to_dtype(DType::F32).map_err(candle_error)
    }

    /// The tensor `name`, checked to have `dims`.
    pub fn get_dims(&self, name: &str, dims: &[usize]) -> Result<Tensor> {
        let tensor = self.get(name)?;
        if tensor.dims() != dims {
            return Err(Error::Format {
                path: self.origin.clone(),
                message: format!(
                    "tensor `{name}` has shape {:?}, expected {dims:?}",
                    tensor.dims()
                ),
            });
        }
        Ok(tensor)
    }
}

/// Which convolution, with its stride and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// A dense `k×k` convolution over all input channels.
    Full {
        /// Stride.
        stride: usize,
    },
    /// One `k×k` filter per channel.
    Depthwise {
        /// Stride.
        stride: usize,
    },
    /// A `1×1` convolution: a matrix product over channels.
    Pointwise,
    /// A dense convolution whose stride is its kernel side, without padding: it cuts the input
    /// into non-overlapping patches (ConvNeXt's stem and downsampling).
    Patchify,
    /// A per-channel scale (the weight holds one value per channel), as after a layer norm.
    Scale,
}

/// Convolution with batch norm folded in (`w·γ/σ`, `β − μ·γ/σ`), then an activation.
#[derive(Debug, Clone)]
pub struct ConvBn {
    /// `out×in×k×k` (full, patchify), `c×1×k×k` (depthwise), `out×in` (pointwise) or `c`
    /// (scale).
    pub weight: Tensor,
    /// Per output channel.
    pub bias: Tensor,
    /// The convolution.
    pub kind: ConvKind,
    /// What follows the convolution.
    pub activation: Activation,
}

impl ConvBn {
    /// Load the convolution `conv` and the batch norm `bn` (prefixes of tensor names) and fold them.
    pub fn load(
        tensors: &Tensors,
        conv: &str,
        bn: &str,
        kind: ConvKind,
        activation: Activation,
        eps: f64,
    ) -> Result<Self> {
        let weight = tensors.get(&format!("{conv}.weight"))?;
        let out = weight.dim(0).map_err(candle_error)?;
        let gamma = tensors.get_dims(&format!("{bn}.weight"), &[out])?;
        let beta = tensors.get_dims(&format!("{bn}.bias"), &[out])?;
        let mean = tensors.get_dims(&format!("{bn}.running_mean"), &[out])?;
        let var = tensors.get_dims(&format!("{bn}.running_var"), &[out])?;
        let fold = || -> candle_core::Result<(Tensor, Tensor)> {
            let scale = (gamma / (var + eps)?.sqrt()?)?;
            let weight = weight.broadcast_mul(&scale.reshape((out, 1, 1, 1))?)?;
            let bias = (beta - (mean * &scale)?)?;
            Ok((weight, bias))
        };
        let (mut weight, bias) = fold().map_err(candle_error)?;
        if weight.rank() != 4 {
            return Err(Error::Format {
                path: tensors.origin.clone(),
                message: format!("tensor `{conv}.weight` is not a 4-d convolution kernel"),
            });
        }
        let dims = weight.dims().to_vec();
        let square = dims[2] == dims[3];
        if !square || (kind == ConvKind::Pointwise && dims[2] != 1) {
            return Err(Error::Format {
                path: tensors.origin.clone(),
                message: format!(
                    "tensor `{conv}.weight` has shape {dims:?}, expected a {} kernel: not the \
                     expected backbone checkpoint",
                    if kind == ConvKind::Pointwise {
                        "1×1"
                    } else {
                        "square"
                    }
                ),
            });
        }
        if kind == ConvKind::Pointwise {
            let inputs = weight.dim(1).map_err(candle_error)?;
            weight = weight.reshape((out, inputs)).map_err(candle_error)?;
        }
        Ok(ConvBn {
            weight,
            bias,
            kind,
            activation,
        })
    }

    /// Apply to `x` (`n×c×h×w`).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out = self.weight.dim(0)?;
        let y = match self.kind {
            ConvKind::Pointwise => pointwise(x, &self.weight)?,
            ConvKind::Full { stride } => {
                let pad = self.weight.dim(2)? / 2;
                if x.device().is_cpu() && x.dtype() == DType::F32 {
                    conv2d_im2col(x, &self.weight, stride, pad)?
                } else {
                    x.conv2d(&self.weight, pad, stride, 1, 1)?
                }
            }
            ConvKind::Depthwise { stride } => {
                let pad = self.weight.dim(2)? / 2;
                depthwise_conv2d(x, &self.weight, stride, pad)?
            }
            ConvKind::Patchify => patchify(x, &self.weight)?,
            ConvKind::Scale => x.broadcast_mul(&self.weight.reshape((1, out, 1, 1))?)?,
        };
        bias_activation(&y, &self.bias, self.activation)
    }
}

/// A convolution whose stride is its kernel side `k`, without padding, as one matrix product:
/// the non-overlapping `k×k` patches are gathered by a single permuting copy (an exact im2col,
/// where candle's general convolution took three times as long). Like PyTorch, rows and columns
/// beyond the last whole patch are ignored.
fn patchify(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let (out, inputs, k, _) = weight.dims4()?;
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / k, w / k);
    if c != inputs || ho == 0 || wo == 0 {
        candle_core::bail!(
            "patchify: kernel {:?} does not fit input {:?}",
            weight.dims(),
            x.dims()
        )
    }
    let whole = x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?.contiguous()?;
    let patches = whole
        .reshape((n, c, ho, k, wo, k))?
        .permute((0, 1, 3, 5, 2, 4))?
        .contiguous()?;
    pointwise(
        &patches.reshape((n, c * k * k, ho, wo))?,
        &weight.reshape((out, c * k * k))?,
    )
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn patchify_matches_candles_strided_convolution_and_its_gradients() {
        let w = Var::randn(0f32, 1.0, (5, 3, 4, 4), &Device::Cpu).expect("w");
        // 13×18: the last row and two columns fall outside whole 4×4 patches. (candle's own
        // backward fails on such shapes, so gradients are compared on whole patches only.)
        for (h, wide, gradients) in [(13, 18, false), (12, 16, true)] {
            let x = Var::randn(0f32, 1.0, (2, 3, h, wide), &Device::Cpu).expect("x");
            let ours = patchify(x.as_tensor(), w.as_tensor()).expect("patchify");
            let theirs = x
                .as_tensor()
                .conv2d(w.as_tensor(), 0, 4, 1, 1)
                .expect("conv");
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-4);
            if gradients {
                let grads = |y: &Tensor| {
                    let g = y.sqr().and_then(|s| s.sum_all()).and_then(|l| l.backward());
                    let g = g.expect("backward");
                    (
                        g.get(x.as_tensor()).expect("grad x").clone(),
                        g.get(w.as_tensor()).expect("grad w").clone(),
                    )
                };
                let ((ours_x, ours_w), (theirs_x, theirs_w)) = (grads(&ours), grads(&theirs));
                assert!(max_diff(&ours_x, &theirs_x) < 1e-3);
                assert!(max_diff(&ours_w, &theirs_w) < 1e-3);
            }
        }
        let narrow = Tensor::zeros((1, 4, 8, 8), candle_core::DType::F32, &Device::Cpu).expect("x");
        assert!(patchify(&narrow, w.as_tensor()).is_err());
    }
}
