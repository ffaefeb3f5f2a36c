//! Per-channel bias followed by an activation (ReLU6, ReLU or none), fused into one pass with its
//! backward.
//!
//! candle runs `x.broadcast_add(b).clamp(0, 6)` as three element-wise passes, and its backward
//! as about twenty (clamp is `maximum` then `minimum`, each differentiated through equality
//! masks, and the bias gradient is a strided reduction). After every convolution of a
//! MobileNet-style backbone that was most of a CPU training step; these kernels do the forward
//! in one pass and the backward in two, in parallel over channel planes. GELU (ConvNeXt) is
//! fused the same way, with a vectorisable rational approximation of erf instead of libm's
//! scalar `erff` (and, in its backward, [`super::fast_exp::exp`] instead of `expf`). Other
//! devices use the composed candle ops.

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
    /// The exact (erf) GELU, `v·Φ(v)` (ConvNeXt).
    Gelu,
}

impl Activation {
    /// The clamp bounds, `None` for the identity and GELU.
    pub(super) fn bounds(self) -> Option<(f32, f32)> {
        match self {
            Activation::Identity | Activation::Gelu => None,
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
            Activation::Gelu => y.gelu_erf(),
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
        let out = match (self.activation, self.activation.bounds()) {
            (Activation::Gelu, _) => super::par_map_planes(x, x, plane, |p| {
                let b = bias[p % c];
                move |v, _| gelu(v + b)
            }),
            (_, Some((low, high))) => super::par_map_planes(x, x, plane, |p| {
                let b = bias[p % c];
                move |v, _| (v + b).clamp(low, high)
            }),
            (_, None) => super::par_map_planes(x, x, plane, |p| {
                let b = bias[p % c];
                move |v, _| v + b
            }),
        };
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let grad_x = match (self.activation, self.activation.bounds()) {
            (Activation::Gelu, _) => {
                // GELU's derivative needs its input, which the output does not give back: the
                // bias is added to `x` in the same pass (not as a map of its own).
                let bias = bias.flatten_all()?.to_vec1::<f32>()?;
                x.apply_op2_no_bwd(&grad_res, &GeluGrad { bias })?
            }
            (_, Some((low, high))) => res.apply_op2_no_bwd(&grad_res, &ClampGrad { low, high })?,
            (_, None) => grad_res,
        };
        let grad_bias = grad_x.apply_op1_no_bwd(&ChannelSum)?;
        Ok((Some(grad_x), Some(grad_bias)))
    }
}

/// `(y, grad_y) → grad_y · [low < y < high]`: the gradient through a clamp given its output.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClampGrad {
    pub(super) low: f32,
    pub(super) high: f32,
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

/// `(x, grad_y) → grad_y · GELU′(x + bias[c])` with `GELU′(v) = Φ(v) + v·φ(v)`, for `x` of
/// shape `n×c×h×w`.
#[derive(Debug, Clone)]
struct GeluGrad {
    bias: Vec<f32>,
}

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "exeml-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        vs: &CpuStorage,
        vl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (c, plane) = channels_and_plane(self.name(), vl)?;
        let (x, grad) = (
            contiguous_f32(self.name(), vs, vl)?,
            contiguous_f32(self.name(), gs, gl)?,
        );
        if x.len() != grad.len() {
            candle_core::bail!(
                "GELU backward: {} inputs, {} gradients",
                x.len(),
                grad.len()
            )
        }
        if self.bias.len() != c {
            candle_core::bail!("GELU backward: {} biases for {c} channels", self.bias.len())
        }
        // 1/√(2π).
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let out = super::par_map_planes(x, grad, plane, |p| {
            let b = self.bias[p % c];
            move |x: f32, g: f32| {
                let v = x + b;
                let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
                g * (cdf + v * INV_SQRT_2PI * super::fast_exp::exp(-0.5 * v * v))
            }
        });
        Ok((CpuStorage::F32(out), vl.shape().clone()))
    }
}

/// `v·Φ(v) = v·(1 + erf(v/√2))/2`.
#[inline]
fn gelu(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf as a ratio of two polynomials on `[−4, 4]` (±1 beyond, as in f32), within 5·10⁻⁷ of the
/// exact value: Eigen's `generic_fast_erf_float`. Written by hand because it has no branch, so
/// the compiler vectorises loops over it, which libm's `erff` prevents (it was a tenth of a
/// ConvNeXt's inference).
#[inline]
fn erf(v: f32) -> f32 {
    let x = v.clamp(-4.0, 4.0);
    let x2 = x * x;
    let numerator = [
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ]
    .iter()
    .fold(-2.726_142_3e-10_f32, |p, &c| p * x2 + c);
    let denominator = [
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_2e-3,
        -1.426_474e-2,
    ]
    .iter()
    .fold(-1.456_607_2e-5_f32, |q, &c| q * x2 + c);
    x * numerator / denominator
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
                (0..n)
                    .map(|i| {
                        let start = (i * c + channel) * plane;
                        plane_sum(&values[start..start + plane])
                    })
                    .sum::<f64>() as f32
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

/// The sum of one plane: 16 f32 lanes (which the compiler vectorises; a plane holds at most
/// a few thousand values per lane), added up in f64, as are the planes of a channel, which can
/// hold millions of values. A scalar f64 sum of each value was a tenth of a ResNet's
/// bias-and-activation backward.
fn plane_sum(values: &[f32]) -> f64 {
    const LANES: usize = 16;
    let mut lanes = [0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + rest
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
        for activation in [
            Activation::Relu6,
            Activation::Relu,
            Activation::Identity,
            Activation::Gelu,
        ] {
            // Values well outside [0, 6] so both clamps and the linear part are exercised.
            let x = Var::randn(0f32, 5.0, (3, 4, 5, 6), &device).expect("x");
            let bias = Var::randn(1f32, 2.0, 4, &device).expect("bias");
            let weights = Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &device).expect("weights");

            let fused =
                bias_activation(x.as_tensor(), bias.as_tensor(), activation).expect("fused");
            let composed = reference(x.as_tensor(), bias.as_tensor(), activation);
            // GELU's erf is an approximation within 5·10⁻⁷.
            let tolerance = if activation == Activation::Gelu {
                1e-5
            } else {
                1e-6
            };
            assert!(max_diff(&fused, &composed) < tolerance, "{activation:?}");

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
            assert!(
                max_diff(&fused_x, &composed_x) < tolerance,
                "{activation:?}"
            );
            assert!(max_diff(&fused_b, &composed_b) < 1e-4, "{activation:?}");
        }
    }

    #[test]
    fn a_plane_sums_in_lanes_as_in_f64() {
        for len in [0, 5, 16, 17, 12_545] {
            let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 7.0).collect();
            let exact: f64 = values.iter().map(|&v| f64::from(v)).sum();
            let lanes = plane_sum(&values);
            assert!(
                (lanes - exact).abs() <= 1e-6 * exact.abs().max(1.0),
                "{len}: {lanes} {exact}"
            );
        }
    }

    #[test]
    fn the_rational_erf_is_within_a_millionth_of_the_exact_values() {
        let exact = [
            (0.0, 0.0),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (-1.5, -0.966_105_16),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
            (-9.0, -1.0),
        ];
        for (x, erf_x) in exact {
            assert!((erf(x) - erf_x).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn a_bias_of_the_wrong_length_is_an_error_not_a_panic() {
        let x = Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &Device::Cpu).expect("x");
        let bias = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).expect("bias");
        assert!(bias_activation(&x, &bias, Activation::Relu6).is_err());
    }
}
