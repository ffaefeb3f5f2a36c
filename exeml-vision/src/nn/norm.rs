//! Layer norm over the channels of an `n×c×h×w` map, at each position (timm's `LayerNorm2d`
//! without its scale and shift, which the backbones fold into a neighbouring convolution or
//! apply as a [`super::ConvKind::Scale`]).
//!
//! On the CPU it is one custom op with its backward: candle composes it from a strided mean, a
//! broadcast subtraction, a square, a second mean, a square root and a broadcast division (and
//! twice as many passes backward), which made the norms a third of a ConvNeXt's inference.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Positions whose statistics one parallel task computes (over every channel).
const POSITIONS_PER_TASK: usize = 256;

/// `(x − mean_c) / sqrt(var_c + eps)`, the mean and (biased) variance taken over dimension 1.
pub fn channel_norm(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(ChannelNorm { eps: eps as f32 })
    } else {
        composed_channel_norm(x, eps)
    }
}

/// The same from candle's ops (every device, differentiable by candle).
fn composed_channel_norm(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(1)?)?;
    let var = centred.sqr()?.mean_keepdim(1)?;
    centred.broadcast_div(&(var + eps)?.sqrt()?)
}

/// `(n, c, plane)` of an `n×c×h×w` layout.
fn geometry(op: &str, layout: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let &[n, c, h, w] = layout.dims() else {
        candle_core::bail!("{op}: expected a 4-d input, got {:?}", layout.dims())
    };
    Ok((n, c, h * w))
}

/// Per-position mean and `1/σ` of one image (`c` planes of `plane` values), in parallel over
/// blocks of positions; the variance is taken around the mean (two passes, no cancellation).
fn moments(image: &[f32], c: usize, plane: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0f32; plane];
    let mut inv_std = vec![0f32; plane];
    mean.par_chunks_mut(POSITIONS_PER_TASK)
        .zip(inv_std.par_chunks_mut(POSITIONS_PER_TASK))
        .enumerate()
        .for_each(|(block, (mean, inv_std))| {
            let (start, len) = (block * POSITIONS_PER_TASK, mean.len());
            let row = |channel: usize| &image[channel * plane + start..][..len];
            for channel in 0..c {
                for (m, &v) in mean.iter_mut().zip(row(channel)) {
                    *m += v;
                }
            }
            mean.iter_mut().for_each(|m| *m /= c as f32);
            for channel in 0..c {
                for ((s, &v), &m) in inv_std.iter_mut().zip(row(channel)).zip(mean.iter()) {
                    *s += (v - m) * (v - m);
                }
            }
            inv_std
                .iter_mut()
                .for_each(|s| *s = 1.0 / (*s / c as f32 + eps).sqrt());
        });
    (mean, inv_std)
}

/// The forward op.
#[derive(Debug, Clone, Copy)]
struct ChannelNorm {
    eps: f32,
}

impl CustomOp1 for ChannelNorm {
    fn name(&self) -> &'static str {
        "exeml-channel-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, plane) = geometry(self.name(), l)?;
        let x = contiguous_f32(self.name(), s, l)?;
        let mut out = vec![0f32; n * c * plane];
        for (x, out) in x.chunks(c * plane).zip(out.chunks_mut(c * plane)) {
            let (mean, inv_std) = moments(x, c, plane, self.eps);
            out.par_chunks_mut(plane)
                .zip(x.par_chunks(plane))
                .for_each(|(out, x)| {
                    for (((o, &v), &m), &s) in out.iter_mut().zip(x).zip(&mean).zip(&inv_std) {
                        *o = (v - m) * s;
                    }
                });
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(x.apply_op2_no_bwd(
            &grad,
            &ChannelNormGrad { eps: self.eps },
        )?))
    }
}

/// `(x, g) → (g − mean_c g − x̂·mean_c(g·x̂)) / σ`: the gradient of the norm at `x`.
#[derive(Debug, Clone, Copy)]
struct ChannelNormGrad {
    eps: f32,
}

impl CustomOp2 for ChannelNormGrad {
    fn name(&self) -> &'static str {
        "exeml-channel-norm-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, plane) = geometry(self.name(), xl)?;
        let (x, grad) = (
            contiguous_f32(self.name(), xs, xl)?,
            contiguous_f32(self.name(), gs, gl)?,
        );
        if x.len() != grad.len() {
            candle_core::bail!(
                "channel norm backward: {} inputs, {} gradients",
                x.len(),
                grad.len()
            )
        }
        let mut out = vec![0f32; n * c * plane];
        let images = x.chunks(c * plane).zip(grad.chunks(c * plane));
        for ((x, grad), out) in images.zip(out.chunks_mut(c * plane)) {
            let (mean, inv_std) = moments(x, c, plane, self.eps);
            // Per position: the means over channels of g and of g·x̂.
            let mut mean_grad = vec![0f32; plane];
            let mut mean_grad_xhat = vec![0f32; plane];
            mean_grad
                .par_chunks_mut(POSITIONS_PER_TASK)
                .zip(mean_grad_xhat.par_chunks_mut(POSITIONS_PER_TASK))
                .enumerate()
                .for_each(|(block, (mg, mgx))| {
                    let start = block * POSITIONS_PER_TASK;
                    let (m, s) = (&mean[start..][..mg.len()], &inv_std[start..][..mg.len()]);
                    for channel in 0..c {
                        let at = channel * plane + start;
                        let (xs, gs) = (&x[at..][..mg.len()], &grad[at..][..mg.len()]);
                        for i in 0..mg.len() {
                            mg[i] += gs[i];
                            mgx[i] += gs[i] * (xs[i] - m[i]) * s[i];
                        }
                    }
                    mg.iter_mut().for_each(|v| *v /= c as f32);
                    mgx.iter_mut().for_each(|v| *v /= c as f32);
                });
            out.par_chunks_mut(plane)
                .zip(x.par_chunks(plane).zip(grad.par_chunks(plane)))
                .for_each(|(out, (x, grad))| {
                    for i in 0..out.len() {
                        let xhat = (x[i] - mean[i]) * inv_std[i];
                        out[i] = (grad[i] - mean_grad[i] - xhat * mean_grad_xhat[i]) * inv_std[i];
                    }
                });
        }
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn every_position_has_zero_mean_and_unit_variance_over_channels() {
        // 600 positions: more than one parallel block, the last one partial.
        let x = Tensor::randn(3f32, 2.0, (2, 5, 20, 30), &Device::Cpu).expect("x");
        // A negligible ε: with 1e-6, a position whose 5 values happen to lie close together
        // (variance ~0.01) came out at variance 0.9999 and failed the check below.
        let y = channel_norm(&x, 1e-12).expect("norm");
        let mean = y.mean_keepdim(1).expect("mean");
        let var = y.sqr().and_then(|s| s.mean_keepdim(1)).expect("var");
        for v in mean
            .flatten_all()
            .and_then(|m| m.to_vec1::<f32>())
            .expect("m")
        {
            // f32 cancellation: a position whose values lie within ~0.02 of each other (the
            // data is unseeded) has its mean off by ~eps·3/0.02 ≈ 1e-5 after dividing by σ.
            assert!(v.abs() < 1e-4, "{v}");
        }
        for v in var
            .flatten_all()
            .and_then(|m| m.to_vec1::<f32>())
            .expect("v")
        {
            assert!((v - 1.0).abs() < 1e-4, "{v}");
        }
    }

    #[test]
    fn the_fused_op_and_its_gradient_match_candles_composed_ops() {
        let x = Var::randn(1f32, 3.0, (2, 7, 9, 40), &Device::Cpu).expect("x");
        let weights = Tensor::randn(0f32, 1.0, (2, 7, 9, 40), &Device::Cpu).expect("weights");
        let fused = channel_norm(x.as_tensor(), 1e-6).expect("fused");
        let composed = composed_channel_norm(x.as_tensor(), 1e-6).expect("composed");
        assert!(max_diff(&fused, &composed) < 1e-5);
        let grad_of = |y: &Tensor| {
            let loss = (y * &weights).and_then(|l| l.sum_all()).expect("loss");
            loss.backward()
                .expect("backward")
                .get(x.as_tensor())
                .expect("grad")
                .clone()
        };
        assert!(max_diff(&grad_of(&fused), &grad_of(&composed)) < 1e-4);
    }
}
