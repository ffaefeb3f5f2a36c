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
use std::sync::OnceLock;

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
        x.contiguous()?.apply_op1(PoolOp {
            pool,
            keep_positions: x.track_op(),
            positions: OnceLock::new(),
        })
    } else {
        pool.shifted(x)
    }
}

/// The windows of a plane: each output row's input rows `start..end`, and each output column's
/// input columns.
type Windows<'a> = (&'a [(usize, usize)], &'a [(usize, usize)]);

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

    /// Each output's window, as input rows (or columns) `start..end`, over a side of `side`
    /// input and `out` output positions.
    fn spans(&self, side: usize, out: usize) -> Vec<(usize, usize)> {
        (0..out).map(|o| self.span(o, side)).collect()
    }

    /// Where each window of one `w`-wide plane has its maximum `values[o]` first (the first
    /// NaN for a NaN maximum), into `at`. Each window stops at its first match, and the windows
    /// are independent of each other; finding value and position in one pass chained every
    /// comparison to the one before.
    fn locate_plane(
        plane: &[f32],
        w: usize,
        (rows, columns): Windows<'_>,
        values: &[f32],
        at: &mut [u32],
    ) {
        let mut o = 0;
        for &(y0, y1) in rows {
            for &(x0, x1) in columns {
                let m = values[o];
                let mut found = y0 * w + x0;
                'window: for y in y0..y1 {
                    let row = y * w;
                    for (x, &v) in plane[row + x0..row + x1].iter().enumerate() {
                        if v == m || (v.is_nan() && m.is_nan()) {
                            found = row + x0 + x;
                            break 'window;
                        }
                    }
                }
                at[o] = found as u32;
                o += 1;
            }
        }
    }

    /// The maxima of one `w`-wide plane's windows into `values` (NaN when a window holds one, as
    /// in PyTorch): the window's rows are reduced first, element-wise over whole rows (which
    /// vectorises), then each window's columns of that row. Comparing value by value, each
    /// comparison waiting on the one before, was a sixth of a ResNet's single-image inference.
    /// `row_maxima` is `w` long.
    fn max_plane(
        plane: &[f32],
        w: usize,
        (rows, columns): Windows<'_>,
        values: &mut [f32],
        row_maxima: &mut [f32],
    ) {
        for (&(y0, y1), values) in rows.iter().zip(values.chunks_mut(columns.len())) {
            row_maxima.copy_from_slice(&plane[y0 * w..][..w]);
            for y in y0 + 1..y1 {
                for (m, &v) in row_maxima.iter_mut().zip(&plane[y * w..][..w]) {
                    *m = nan_max(*m, v);
                }
            }
            for (value, &(x0, x1)) in values.iter_mut().zip(columns) {
                *value = row_maxima[x0..x1]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v));
            }
        }
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

/// The larger of `m` and `v`, NaN when either is (as PyTorch's pool propagates NaN).
#[inline]
fn nan_max(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

/// The forward op of one pooling: it keeps where each maximum was when its input is being
/// differentiated, so that the backward only routes the gradient (finding the maxima again
/// took as long as the forward).
#[derive(Debug)]
struct PoolOp {
    pool: MaxPool,
    keep_positions: bool,
    positions: OnceLock<Vec<u32>>,
}

impl CustomOp1 for PoolOp {
    fn name(&self) -> &'static str {
        "exeml-max-pool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[n, c, h, w] = l.dims() else {
            candle_core::bail!("max pool: expected a 4-d input, got {:?}", l.dims())
        };
        let pool = self.pool;
        let (ho, wo) = pool.out_sides(h, w)?;
        let x = contiguous_f32("max pool", s, l)?;
        let (rows, columns) = (pool.spans(h, ho), pool.spans(w, wo));
        let spans = (rows.as_slice(), columns.as_slice());
        let mut out = vec![0f32; n * c * ho * wo];
        let planes = out.par_chunks_mut(ho * wo).zip(x.par_chunks(h * w));
        let per_task = super::planes_per_task(h * w);
        if self.keep_positions {
            let mut positions = vec![0u32; n * c * ho * wo];
            planes
                .zip(positions.par_chunks_mut(ho * wo))
                .with_min_len(per_task)
                .for_each_init(
                    || vec![0f32; w],
                    |row_maxima, ((out, plane), at)| {
                        MaxPool::max_plane(plane, w, spans, out, row_maxima);
                        MaxPool::locate_plane(plane, w, spans, out, at);
                    },
                );
            // A second forward of the same op (never done by candle) keeps the first positions,
            // which are the same.
            let _ = self.positions.set(positions);
        } else {
            planes.with_min_len(per_task).for_each_init(
                || vec![0f32; w],
                |row_maxima, (out, plane)| MaxPool::max_plane(plane, w, spans, out, row_maxima),
            );
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let routing = PoolGrad {
            pool: self.pool,
            positions: self.positions.get().map(Vec::as_slice),
        };
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &routing)?))
    }
}

/// The backward: `(x, grad) → dx`, each output's gradient added at its window's first maximum
/// (the forward's `positions`, or found again in `x`).
struct PoolGrad<'a> {
    pool: MaxPool,
    positions: Option<&'a [u32]>,
}

impl CustomOp2 for PoolGrad<'_> {
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
        let (ho, wo) = self.pool.out_sides(h, w)?;
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
        let found;
        let positions = match self.positions {
            Some(kept) if kept.len() == grad.len() => kept,
            _ => {
                let (rows, columns) = (self.pool.spans(h, ho), self.pool.spans(w, wo));
                let mut at = vec![0u32; grad.len()];
                let mut values = vec![0f32; grad.len()];
                values
                    .par_chunks_mut(ho * wo)
                    .zip(x.par_chunks(h * w).zip(at.par_chunks_mut(ho * wo)))
                    .for_each_init(
                        || vec![0f32; w],
                        |row_maxima, (values, (plane, at))| {
                            let spans = (rows.as_slice(), columns.as_slice());
                            MaxPool::max_plane(plane, w, spans, values, row_maxima);
                            MaxPool::locate_plane(plane, w, spans, values, at);
                        },
                    );
                found = at;
                &found
            }
        };
        let mut dx = vec![0f32; n * c * h * w];
        dx.par_chunks_mut(h * w)
            .zip(grad.par_chunks(ho * wo).zip(positions.par_chunks(ho * wo)))
            .with_min_len(super::planes_per_task(h * w))
            .for_each(|(dx, (grad, at))| {
                for (&at, &g) in at.iter().zip(grad) {
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
            // The backward finds the maxima again when the forward did not keep them.
            let found = PoolGrad {
                pool,
                positions: None,
            };
            let again = x
                .as_tensor()
                .apply_op2_no_bwd(&g, &found)
                .expect("backward without positions");
            assert!(max_diff(&a, &again) < 1e-7, "{:?}", (h, w, k, s));
            // Each output's gradient lands once.
            let (sa, sg) = (
                a.sum_all().and_then(|v| v.to_scalar::<f32>()).expect("sum"),
                g.sum_all().and_then(|v| v.to_scalar::<f32>()).expect("sum"),
            );
            assert!((sa - sg).abs() < 1e-4, "{sa} vs {sg}");
        }
    }

    #[test]
    fn inference_and_training_pools_agree_and_propagate_nan() {
        let mut values: Vec<f32> = Tensor::randn(0f32, 1.0, 2 * 3 * 9 * 11, &Device::Cpu)
            .and_then(|t| t.to_vec1())
            .expect("values");
        values[17] = f32::NAN;
        values[150] = f32::NAN;
        let x = Tensor::from_vec(values, (2, 3, 9, 11), &Device::Cpu).expect("x");
        let var = Var::from_tensor(&x).expect("var");
        for (k, s, p) in [(3, 2, 1), (2, 2, 0), (3, 1, 1)] {
            let plain = max_pool2d(&x, k, s, p).expect("inference");
            let tracked = max_pool2d(var.as_tensor(), k, s, p).expect("training");
            let (a, b): (Vec<f32>, Vec<f32>) = (
                plain.flatten_all().and_then(|t| t.to_vec1()).expect("a"),
                tracked.flatten_all().and_then(|t| t.to_vec1()).expect("b"),
            );
            assert!(a.iter().any(|v| v.is_nan()), "a window with NaN is NaN");
            for (a, b) in a.iter().zip(&b) {
                assert!(a == b || a.is_nan() && b.is_nan(), "{a} vs {b}");
            }
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
