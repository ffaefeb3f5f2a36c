//! Per-channel bias followed by an activation (ReLU6, ReLU or none), fused into one pass with its
//! backward.
//!
//! candle runs `x.broadcast_add(b).clamp(0, 6)` as three element-wise passes, and its backward
//! as about twenty (clamp is `maximum` then `minimum`, each differentiated through equality
//! masks, and the bias gradient is a strided reduction). After every convolution of a
//! MobileNet-style backbone that was most of a CPU training step; these kernels do the forward
//! in one pass and the backward in two, in parallel over channel planes. Other devices use the
//! composed candle ops.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The function applied after a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Nothing (a linear layer).
    Identity,
    /// `max(v, 0)`.
    Relu,
    /// `min(max(v, 0), 6)` (MobileNet, EfficientNet-Lite).
    Relu6,
}

impl Activation {
    /// The clamp bounds, `None` for the identity.
    fn bounds(self) -> Option<(f32, f32)> {
        match self {
            Activation::Identity => None,
            Activation::Relu => Some((0.0, f32::INFINITY)),
            Activation::Relu6 => Some((0.0, 6.0)),
        }
    }

    /// Apply to `y` with candle's own ops (any device).
    pub fn apply(self, y: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Identity => Ok(y.clone()),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.clamp(0f32, 6f32),
        }
    }
}

/// `act(x + bias[c])` for `x` of shape `n×c×h×w` and `bias` of `c` values.
pub fn bias_activation(
    x: &Tensor,
    bias: &Tensor,
    activation: Activation,
) -> candle_core::Result<Tensor> {
    let fused = x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && bias.dtype() == candle_core::DType::F32;
    if fused {
        x.contiguous()?
            .apply_op2(&bias.contiguous()?, BiasActivation { activation })
    } else {
        let (_, c, _, _) = x.dims4()?;
        activation.apply(&x.broadcast_add(&bias.reshape((1, c, 1, 1))?)?)
    }
}

/// `(channels, plane)` of an `n×c×h×w` layout.
fn channels_and_plane(op: &str, layout: &Layout) -> candle_core::Result<(usize, usize)> {
    let &[_, c, h, w] = layout.dims() else {
        candle_core::bail!("{op}: expected a 4-d input, got {:?}", layout.dims())
    };
    Ok((c, h * w))
}

/// The fused forward op: `(x, bias) → act(x + bias)`.
#[derive(Debug, Clone, Copy)]
struct BiasActivation {
    activation: Activation,
}

impl CustomOp2 for BiasActivation {
    fn name(&self) -> &'static str {
        "exeml-bias-activation"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (c, plane) = channels_and_plane(self.name(), xl)?;
        let (x, bias) = (
            contiguous_f32(self.name(), xs, xl)?,
            contiguous_f32(self.name(), bs, bl)?,
        );
        if bias.len() != c {
            candle_core::bail!("bias activation: {} biases for {c} channels", bias.len())
        }
        let out = match self.activation.bounds() {
            Some((low, high)) => super::par_map_planes(x, x, plane, |p| {
                let b = bias[p % c];
                move |v, _| (v + b).clamp(low, high)
            }),
            None => super::par_map_planes(x, x, plane, |p| {
                let b = bias[p % c];
                move |v, _| v + b
            }),
        };
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let grad_x = match self.activation.bounds() {
            Some((low, high)) => res.apply_op2_no_bwd(&grad_res, &ClampGrad { low, high })?,
            None => grad_res,
        };
        let grad_bias = grad_x.apply_op1_no_bwd(&ChannelSum)?;
        Ok((Some(grad_x), Some(grad_bias)))
    }
}

/// `(y, grad_y) → grad_y · [low < y < high]`: the gradient through a clamp given its output.
#[derive(Debug, Clone, Copy)]
struct ClampGrad {
    low: f32,
    high: f32,
}

impl CustomOp2 for ClampGrad {
    fn name(&self) -> &'static str {
        "exeml-clamp-grad"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, plane) = channels_and_plane(self.name(), yl)?;
        let (y, grad) = (
            contiguous_f32(self.name(), ys, yl)?,
            contiguous_f32(self.name(), gs, gl)?,
        );
        if y.len() != grad.len() {
            candle_core::bail!(
                "clamp backward: {} outputs, {} gradients",
                y.len(),
                grad.len()
            )
        }
        let (low, high) = (self.low, self.high);
        let out = super::par_map_planes(y, grad, plane, |_| {
            move |y, g| {
                if y > low && y < high {
                    g
                } else {
                    0.0
                }
            }
        });
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }
}

/// `n×c×h×w → c`: the sum of each channel over batch and positions (a bias's gradient).
#[derive(Debug, Clone, Copy)]
struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "exeml-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (c, plane) = channels_and_plane(self.name(), l)?;
        let values = contiguous_f32(self.name(), s, l)?;
        let n = values.len().checked_div(c * plane).unwrap_or(0);
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .with_min_len(super::planes_per_task(n * plane))
            .map(|channel| {
                // f64 accumulation: a channel can sum millions of values.
                (0..n)
                    .map(|i| {
                        let start = (i * c + channel) * plane;
                        values[start..start + plane]
                            .iter()
                            .map(|&v| f64::from(v))
                            .sum::<f64>()
                    })
                    .sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    /// The composed candle ops the fused kernels replace.
    fn reference(x: &Tensor, bias: &Tensor, activation: Activation) -> Tensor {
        let c = bias.dim(0).expect("bias");
        let y = x
            .broadcast_add(&bias.reshape((1, c, 1, 1)).expect("reshape"))
            .expect("add");
        activation.apply(&y).expect("activation")
    }

    #[test]
    fn fused_forward_and_gradients_match_candles_composed_ops() {
        let device = Device::Cpu;
        for activation in [Activation::Relu6, Activation::Relu, Activation::Identity] {
            // Values well outside [0, 6] so both clamps and the linear part are exercised.
            let x = Var::randn(0f32, 5.0, (3, 4, 5, 6), &device).expect("x");
            let bias = Var::randn(1f32, 2.0, 4, &device).expect("bias");
            let weights = Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &device).expect("weights");

            let fused =
                bias_activation(x.as_tensor(), bias.as_tensor(), activation).expect("fused");
            let composed = reference(x.as_tensor(), bias.as_tensor(), activation);
            assert!(max_diff(&fused, &composed) < 1e-6);

            let grads_of = |y: &Tensor| {
                let loss = (y * &weights).expect("mul").sum_all().expect("sum");
                let grads = loss.backward().expect("backward");
                (
                    grads.get(x.as_tensor()).expect("grad x").clone(),
                    grads.get(bias.as_tensor()).expect("grad bias").clone(),
                )
            };
            let (fused_x, fused_b) = grads_of(&fused);
            let (composed_x, composed_b) = grads_of(&composed);
            assert!(max_diff(&fused_x, &composed_x) < 1e-6, "{activation:?}");
            assert!(max_diff(&fused_b, &composed_b) < 1e-4, "{activation:?}");
        }
    }

    #[test]
    fn a_bias_of_the_wrong_length_is_an_error_not_a_panic() {
        let x = Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &Device::Cpu).expect("x");
        let bias = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).expect("bias");
        assert!(bias_activation(&x, &bias, Activation::Relu6).is_err());
    }
}
