//! Max pooling with overlapping windows (ResNet's stem: 3×3, stride 2, padding 1) that can be
//! trained through.
//!
//! candle has no backward for a max pool whose window differs from its stride, so a ResNet could
//! not be fine-tuned whole. On the CPU the pool is one custom op whose backward routes each
//! output's gradient to the first maximum of its window (as PyTorch does); on other devices it is
//! the maximum of the window's shifted, strided views, which candle differentiates itself.
//! Padding counts as −∞ (never the maximum), as in PyTorch.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Max pooling of `x` (`n×c×h×w`) with `kernel×kernel` windows, `stride`, `pad`.
pub fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> candle_core::Result<Tensor> {
    let pool = MaxPool {
        kernel,
        stride,
        pad,
    };
    let (_, _, h, w) = x.dims4()?;
    pool.out_sides(h, w)?;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        x.contiguous()?.apply_op1(pool)
    } else {
        pool.shifted(x)
    }
}

/// The pooling's geometry.
#[derive(Debug, Clone, Copy)]
struct MaxPool {
    kernel: usize,
    stride: usize,
    pad: usize,
}

impl MaxPool {
    /// Output sides for an `h×w` input; an error when no window fits or the padding is at least
    /// the window (a window of padding alone has no maximum).
    fn out_sides(&self, h: usize, w: usize) -> candle_core::Result<(usize, usize)> {
        let side = |s: usize| {
            (s + 2 * self.pad)
                .checked_sub(self.kernel)
                .map(|v| v / self.stride + 1)
        };
        match (side(h), side(w)) {
            (Some(ho), Some(wo)) if self.stride > 0 && self.pad < self.kernel => Ok((ho, wo)),
            _ => candle_core::bail!(
                "max pool: a {}×{} window (stride {}, padding {}) does not fit {h}×{w}",
                self.kernel,
                self.kernel,
                self.stride,
                self.pad
            ),
        }
    }

    /// The input rows (or columns) `start..end` of output position `o`, clipped to `0..side`.
    fn span(&self, o: usize, side: usize) -> (usize, usize) {
        let start = (o * self.stride).saturating_sub(self.pad);
        let end = (o * self.stride + self.kernel)
            .saturating_sub(self.pad)
            .min(side);
        (start, end)
    }

    /// Per output of one `h×w` plane, the index of its window's first maximum.
    fn argmax_plane(&self, plane: &[f32], h: usize, w: usize, ho: usize, wo: usize) -> Vec<u32> {
        let mut at = Vec::with_capacity(ho * wo);
        for oy in 0..ho {
            let (y0, y1) = self.span(oy, h);
            for ox in 0..wo {
                let (x0, x1) = self.span(ox, w);
                let mut best = (y0 * w + x0, f32::NEG_INFINITY);
                for y in y0..y1 {
                    for x in x0..x1 {
                        let v = plane[y * w + x];
                        // NaN propagates as the maximum, as in PyTorch.
                        if v > best.1 || v.is_nan() && !best.1.is_nan() {
                            best = (y * w + x, v);
                        }
                    }
                }
                at.push(best.0 as u32);
            }
        }
        at
    }

    /// Any device: the maximum over the window's `kernel²` shifted views of the zero-padded
    /// input, each subsampled by the stride (`index_select`). Exact for inputs ≥ 0 (after a
    /// ReLU, where ResNet pools) and wherever a window holds a non-negative value.
    fn shifted(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (ho, wo) = self.out_sides(h, w)?;
        let padded = x
            .pad_with_zeros(2, self.pad, self.pad)?
            .pad_with_zeros(3, self.pad, self.pad)?;
        let steps = |n: usize| -> candle_core::Result<Tensor> {
            let at: Vec<u32> = (0..n).map(|i| (i * self.stride) as u32).collect();
            Tensor::from_vec(at, n, x.device())
        };
        let (rows, columns) = (steps(ho)?, steps(wo)?);
        let mut out: Option<Tensor> = None;
        for dy in 0..self.kernel {
            for dx in 0..self.kernel {
                let view = padded
                    .narrow(2, dy, (ho - 1) * self.stride + 1)?
                    .narrow(3, dx, (wo - 1) * self.stride + 1)?
                    .contiguous()?
                    .index_select(&rows, 2)?
                    .index_select(&columns, 3)?;
                out = Some(match out {
                    None => view,
                    Some(best) => best.maximum(&view)?,
                });
            }
        }
        out.ok_or_else(|| candle_core::Error::Msg("max pool: an empty window".into()))
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "exeml-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[n, c, h, w] = l.dims() else {
            candle_core::bail!("max pool: expected a 4-d input, got {:?}", l.dims())
        };
        let (ho, wo) = self.out_sides(h, w)?;
        let x = contiguous_f32("max pool", s, l)?;
        let mut out = vec![0f32; n * c * ho * wo];
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(out, plane)| {
                for (o, &at) in out.iter_mut().zip(&self.argmax_plane(plane, h, w, ho, wo)) {
                    *o = plane[at as usize];
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, self)?))
    }
}

/// The backward: `(x, grad) → dx`, each output's gradient added at its window's first maximum.
impl CustomOp2 for MaxPool {
    fn name(&self) -> &'static str {
        "exeml-max-pool-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[n, c, h, w] = xl.dims() else {
            candle_core::bail!(
                "max pool backward: expected a 4-d input, got {:?}",
                xl.dims()
            )
        };
        let (ho, wo) = self.out_sides(h, w)?;
        if gl.dims() != [n, c, ho, wo] {
            candle_core::bail!(
                "max pool backward: gradient {:?} for input {:?}",
                gl.dims(),
                xl.dims()
            )
        }
        let (x, grad) = (
            contiguous_f32("max pool backward", xs, xl)?,
            contiguous_f32("max pool backward", gs, gl)?,
        );
        let mut dx = vec![0f32; n * c * h * w];
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(grad.par_chunks(ho * wo)))
            .for_each(|(dx, (plane, grad))| {
                for (&at, &g) in self.argmax_plane(plane, h, w, ho, wo).iter().zip(grad) {
                    dx[at as usize] += g;
                }
            });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    fn grad_of(x: &Var, y: &Tensor, g: &Tensor) -> Tensor {
        let loss = (y * g).and_then(|l| l.sum_all()).expect("loss");
        loss.backward()
            .expect("backward")
            .get(x.as_tensor())
            .expect("grad")
            .clone()
    }

    #[test]
    fn the_fused_pool_matches_candles_forward_and_the_shifted_views_backward() {
        for (h, w, k, s, p) in [
            (8, 8, 3, 2, 1),
            (7, 9, 3, 2, 1),
            (6, 6, 2, 2, 0),
            (5, 5, 3, 1, 1),
        ] {
            // ReLU outputs, as where ResNet pools (zero padding is then exact for candle's pool).
            let x = Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (2, 3, h, w), &Device::Cpu)
                    .and_then(|t| t.relu())
                    .expect("x"),
            )
            .expect("var");
            let ours = max_pool2d(x.as_tensor(), k, s, p).expect("ours");
            let candle = x
                .as_tensor()
                .pad_with_zeros(2, p, p)
                .and_then(|t| t.pad_with_zeros(3, p, p))
                .and_then(|t| t.max_pool2d_with_stride(k, s))
                .expect("candle");
            assert_eq!(ours.dims(), candle.dims(), "{:?}", (h, w, k, s));
            assert!(max_diff(&ours, &candle) < 1e-7);
            let pool = MaxPool {
                kernel: k,
                stride: s,
                pad: p,
            };
            let shifted = pool.shifted(x.as_tensor()).expect("shifted");
            assert!(max_diff(&ours, &shifted) < 1e-7);
            // Random values have no ties (but the zeros of the ReLU, which the gradient's sum
            // over a window with several zero maxima hides): compare where the maxima are > 0.
            let g = Tensor::randn(0f32, 1.0, ours.dims(), &Device::Cpu).expect("g");
            let positive = ours
                .gt(0f32)
                .and_then(|m| m.to_dtype(DType::F32))
                .expect("mask");
            let g = (g * positive).expect("masked");
            let (a, b) = (grad_of(&x, &ours, &g), grad_of(&x, &shifted, &g));
            assert!(max_diff(&a, &b) < 1e-6, "{:?}", (h, w, k, s));
            // Each output's gradient lands once.
            let (sa, sg) = (
                a.sum_all().and_then(|v| v.to_scalar::<f32>()).expect("sum"),
                g.sum_all().and_then(|v| v.to_scalar::<f32>()).expect("sum"),
            );
            assert!((sa - sg).abs() < 1e-4, "{sa} vs {sg}");
        }
    }

    #[test]
    fn padding_is_never_the_maximum_and_a_window_that_does_not_fit_is_refused() {
        let x = Tensor::new(&[[[[-3f32, -1.0], [-2.0, -4.0]]]], &Device::Cpu).expect("x");
        let y = max_pool2d(&x, 3, 2, 1).expect("pool");
        assert_eq!(
            y.flatten_all().and_then(|v| v.to_vec1::<f32>()).expect("v"),
            [-1.0]
        );
        assert!(max_pool2d(&x, 5, 1, 0).is_err());
        assert!(max_pool2d(&x, 2, 1, 2).is_err());
    }
}
