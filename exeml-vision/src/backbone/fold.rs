//! Reading layer norms and linear layers from a checkpoint and folding a layer norm's scale and
//! shift into the linear layer after it (ConvNeXt, ViT).

use crate::nn::{candle_error, Activation, ConvBn, ConvKind, Tensors};
use candle_core::Tensor;
use exeml_core::{Error, Result};

/// A layer norm's scale and shift (`{p}.weight`, `{p}.bias`), `dim` values each.
pub fn norm(t: &Tensors, p: &str, dim: usize) -> Result<(Tensor, Tensor)> {
    Ok((
        t.get_dims(&format!("{p}.weight"), &[dim])?,
        t.get_dims(&format!("{p}.bias"), &[dim])?,
    ))
}

/// A layer norm's scale and shift as a per-channel [`ConvKind::Scale`].
pub fn scale(t: &Tensors, p: &str, dim: usize) -> Result<ConvBn> {
    let (weight, bias) = norm(t, p, dim)?;
    Ok(ConvBn {
        weight,
        bias,
        kind: ConvKind::Scale,
        activation: Activation::Identity,
    })
}

/// A `rows×cols` linear weight, stored as a matrix (timm's `Linear`) or a 1×1 kernel (its
/// `ConvMlp`, used by the smaller ConvNeXts).
pub fn matrix(t: &Tensors, name: &str, rows: usize, cols: usize) -> Result<Tensor> {
    let weight = t.get(name)?;
    if weight.dims() != [rows, cols] && weight.dims() != [rows, cols, 1, 1] {
        return Err(Error::Format {
            path: t.origin.clone(),
            message: format!(
                "tensor `{name}` has shape {:?}, expected [{rows}, {cols}] or [{rows}, {cols}, 1, 1]",
                weight.dims()
            ),
        });
    }
    weight.reshape((rows, cols)).map_err(candle_error)
}

/// The linear layer `{p}.weight` (`rows×cols`) and `{p}.bias` as a 1×1 convolution over
/// channels, with the layer norm `norm` (scale, shift over its inputs), if any, folded in.
pub fn linear(
    t: &Tensors,
    p: &str,
    (rows, cols): (usize, usize),
    norm: Option<&(Tensor, Tensor)>,
    activation: Activation,
) -> Result<ConvBn> {
    let weight = matrix(t, &format!("{p}.weight"), rows, cols)?;
    let bias = t.get_dims(&format!("{p}.bias"), &[rows])?;
    let (weight, bias) = match norm {
        Some((gamma, beta)) => fold_norm(&weight, &bias, gamma, beta).map_err(candle_error)?,
        None => (weight, bias),
    };
    Ok(ConvBn {
        weight,
        bias,
        kind: ConvKind::Pointwise,
        activation,
    })
}

/// Fold a layer norm's scale `gamma` and shift `beta` (over input channels) into the
/// convolution after it: `W·(γ⊙x̂ + β) + b = (W·diag γ)·x̂ + (b + Σ W·β)`, for a matrix
/// (`out×in`) or a kernel (`out×in×k×k`, applied without padding so every tap sees the shift).
pub fn fold_norm(
    weight: &Tensor,
    bias: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
) -> candle_core::Result<(Tensor, Tensor)> {
    let (out, inputs) = (weight.dim(0)?, weight.dim(1)?);
    let (scale_shape, taps) = if weight.rank() == 4 {
        (vec![1, inputs, 1, 1], weight.sum((2, 3))?)
    } else {
        (vec![1, inputs], weight.clone())
    };
    let folded = weight.broadcast_mul(&gamma.reshape(scale_shape)?)?;
    let shift = taps.matmul(&beta.reshape((inputs, 1))?)?.reshape(out)?;
    Ok((folded, (bias + shift)?))
}
