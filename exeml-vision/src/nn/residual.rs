//! The end of a residual block, `act(y + shortcut)` (ResNet's `relu(out + identity)`), fused
//! into one pass with its backward.
//!
//! candle runs `(y + shortcut).relu()` as two passes and differentiates ReLU through four more
//! (a zero tensor, a comparison, a conversion to f32, a product) before the sum hands the
//! gradient to both inputs. Here the forward is one pass, and the backward one pass whose result
//! is the gradient of both inputs. Other devices, and GELU, use candle's ops.

use super::bias_act::{Activation, ClampGrad};
use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

/// `activation(y + shortcut)` for two tensors of the same `n×c×h×w` shape.
pub fn add_activation(
    y: &Tensor,
    shortcut: &Tensor,
    activation: Activation,
) -> candle_core::Result<Tensor> {
    if y.dims() != shortcut.dims() {
        candle_core::bail!(
            "residual: the block's output {:?} and its shortcut {:?} differ in shape",
            y.dims(),
            shortcut.dims()
        )
    }
    let fused = y.device().is_cpu()
        && y.dtype() == DType::F32
        && shortcut.dtype() == DType::F32
        && y.rank() == 4;
    match activation.bounds() {
        Some((low, high)) if fused => y
            .contiguous()?
            .apply_op2(&shortcut.contiguous()?, AddClamp { low, high }),
        _ => activation.apply(&(y + shortcut)?),
    }
}

/// `(y, shortcut) → clamp(y + shortcut, low, high)`.
#[derive(Debug, Clone, Copy)]
struct AddClamp {
    low: f32,
    high: f32,
}

impl CustomOp2 for AddClamp {
    fn name(&self) -> &'static str {
        "exeml-add-clamp"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[_, _, h, w] = yl.dims() else {
            candle_core::bail!("residual: expected a 4-d input, got {:?}", yl.dims())
        };
        let (y, shortcut) = (
            contiguous_f32(self.name(), ys, yl)?,
            contiguous_f32(self.name(), ss, sl)?,
        );
        if y.len() != shortcut.len() {
            candle_core::bail!(
                "residual: {} outputs, {} shortcut values",
                y.len(),
                shortcut.len()
            )
        }
        let (low, high) = (self.low, self.high);
        let out = super::par_map_planes(y, shortcut, h * w, |_| {
            move |a: f32, b: f32| (a + b).clamp(low, high)
        });
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _shortcut: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let clamp = ClampGrad {
            low: self.low,
            high: self.high,
        };
        let grad = res.apply_op2_no_bwd(&grad_res.contiguous()?, &clamp)?;
        Ok((Some(grad.clone()), Some(grad)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn the_fused_op_and_its_gradients_match_candles_composed_ops() {
        let device = Device::Cpu;
        for activation in [Activation::Relu, Activation::Relu6, Activation::Identity] {
            let y = Var::randn(0f32, 4.0, (2, 3, 5, 7), &device).expect("y");
            let shortcut = Var::randn(0f32, 4.0, (2, 3, 5, 7), &device).expect("shortcut");
            let weights = Tensor::randn(0f32, 1.0, (2, 3, 5, 7), &device).expect("weights");
            let fused =
                add_activation(y.as_tensor(), shortcut.as_tensor(), activation).expect("fused");
            let composed = activation
                .apply(&(y.as_tensor() + shortcut.as_tensor()).expect("add"))
                .expect("composed");
            assert!(max_diff(&fused, &composed) < 1e-6, "{activation:?}");
            let grads_of = |out: &Tensor| {
                let loss = (out * &weights).and_then(|l| l.sum_all()).expect("loss");
                let grads = loss.backward().expect("backward");
                (
                    grads.get(y.as_tensor()).expect("grad y").clone(),
                    grads
                        .get(shortcut.as_tensor())
                        .expect("grad shortcut")
                        .clone(),
                )
            };
            let (fy, fs) = grads_of(&fused);
            let (cy, cs) = grads_of(&composed);
            // Random values are never exactly at a clamp's bound, where the two conventions
            // for the derivative differ.
            assert!(max_diff(&fy, &cy) < 1e-6, "{activation:?}");
            assert!(max_diff(&fs, &cs) < 1e-6, "{activation:?}");
        }
    }

    #[test]
    fn different_shapes_are_an_error_not_a_panic() {
        let y = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu).expect("y");
        let shortcut = Tensor::zeros((1, 2, 3, 4), DType::F32, &Device::Cpu).expect("shortcut");
        let message = add_activation(&y, &shortcut, Activation::Relu)
            .expect_err("shapes differ")
            .to_string();
        assert!(message.contains("differ in shape"), "{message}");
    }
}
