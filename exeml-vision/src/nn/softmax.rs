//! Softmax over the last dimension with a scale folded in (`softmax(s·x)`, attention's
//! `softmax(q·kᵀ/√d)`), one custom op with its backward on the CPU.
//!
//! candle composes softmax from a maximum, a broadcast subtraction, an exponential, a sum and a
//! broadcast division; its backward adds about ten passes more, two of them reductions candle
//! runs on one thread, and every intermediate costs a zero-filled gradient buffer. Over the
//! `n×heads×t×t` attention weights of a ViT that was a tenth of a training step. Here the
//! forward is one pass per row and the backward (`s·y⊙(g − Σ g⊙y)`) another, in parallel over
//! rows. candle's own `softmax_last_dim` has no backward, so it cannot train. Other devices and
//! types use the composed candle ops.

use super::{contiguous_f32, MIN_TASK_ELEMENTS};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, D};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `softmax(scale · x)` over the last dimension of `x`.
pub fn scaled_softmax(x: &Tensor, scale: f64) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.rank() > 0 {
        x.contiguous()?.apply_op1(ScaledSoftmax {
            scale: scale as f32,
        })
    } else {
        candle_nn::ops::softmax(&(x * scale)?, D::Minus1)
    }
}

/// The length of the last dimension (a row), refusing empty rows.
fn row_len(op: &str, layout: &Layout) -> candle_core::Result<usize> {
    match layout.dims().last() {
        Some(&len) if len > 0 => Ok(len),
        _ => candle_core::bail!(
            "{op}: expected rows of one or more values, got {:?}",
            layout.dims()
        ),
    }
}

/// Rows one parallel task takes: enough values that the hand-off to a thread pays.
fn rows_per_task(row: usize) -> usize {
    (MIN_TASK_ELEMENTS / row).max(1)
}

/// `out = f(row_index_in_block, rows…)` over `rows`-long chunks of a new buffer of `len` values,
/// in parallel over blocks of rows, into memory that is not zero-filled first.
fn par_rows(
    len: usize,
    row: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(row)
        .enumerate()
        .with_min_len(rows_per_task(row))
        .for_each(|(r, out)| fill(r, out));
    // SAFETY: the chunks partition the first `len` slots and every `fill` below writes each slot
    // of its chunk; a panic propagates before this line, so no uninitialised value is exposed.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len);
    }
    out
}

/// The forward op.
#[derive(Debug, Clone, Copy)]
struct ScaledSoftmax {
    scale: f32,
}

impl CustomOp1 for ScaledSoftmax {
    fn name(&self) -> &'static str {
        "exeml-scaled-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let row = row_len(self.name(), l)?;
        let x = contiguous_f32(self.name(), s, l)?;
        let scale = self.scale;
        let out = par_rows(x.len(), row, |r, out| {
            softmax_row(&x[r * row..][..row], scale, out)
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(res.apply_op2_no_bwd(
            &grad,
            &ScaledSoftmaxGrad { scale: self.scale },
        )?))
    }
}

/// One row: `exp(s·(x − max)) / Σ`, the maximum taken first so that no exponential overflows
/// (for a negative scale the minimum is the largest scaled value). Compiled for the CPU's
/// widest vectors, with every pass written so that it vectorises: the exponential is
/// [`super::fast_exp::exp`] and the maximum and the sum run in independent lanes.
#[allow(unsafe_code)] // The dispatch calls the wider versions unsafely, after checking the CPU.
#[multiversion::multiversion(targets = "simd")]
fn softmax_row(x: &[f32], scale: f32, out: &mut [MaybeUninit<f32>]) {
    let mut tops = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (top, &v) in tops.iter_mut().zip(chunk) {
            *top = top.max(v * scale);
        }
    }
    let top = tail
        .iter()
        .map(|&v| v * scale)
        .chain(tops)
        .fold(f32::NEG_INFINITY, f32::max);
    for (o, &v) in out.iter_mut().zip(x) {
        o.write(super::fast_exp::exp(v * scale - top));
    }
    // SAFETY: the loop above wrote every slot of `out` (`x` and `out` are one row long), and
    // `MaybeUninit<f32>` has `f32`'s layout.
    let out = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
    let inv = (1.0 / lane_sum(out, out, |v, _| f64::from(v))) as f32;
    for o in out.iter_mut() {
        *o *= inv;
    }
}

/// Independent lanes of the row reductions, so that they vectorise (a single running maximum
/// or sum is a chain the compiler may not reorder).
const LANES: usize = 16;

/// `Σ term(aᵢ, bᵢ)` in f64 over independent lanes: a long row's f32 sum drifts by several ulps
/// of the result (a ViT's rows are short, but a caller's need not be).
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f64) -> f64 {
    let mut lanes = [0f64; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = (chunks_a.remainder().iter().zip(chunks_b.remainder()))
        .map(|(&v, &w)| term(v, w))
        .sum();
    for (chunk_a, chunk_b) in chunks_a.zip(chunks_b) {
        for ((lane, &v), &w) in lanes.iter_mut().zip(chunk_a).zip(chunk_b) {
            *lane += term(v, w);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `out = s·y⊙(g − Σ g⊙y)` for one row, compiled for the CPU's widest vectors.
#[allow(unsafe_code)] // The dispatch calls the wider versions unsafely, after checking the CPU.
#[multiversion::multiversion(targets = "simd")]
fn softmax_grad_row(y: &[f32], g: &[f32], scale: f32, out: &mut [MaybeUninit<f32>]) {
    let dot = lane_sum(y, g, |y, g| f64::from(y) * f64::from(g)) as f32;
    for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
        o.write(scale * y * (g - dot));
    }
}

/// `(y, g) → s·y⊙(g − Σ g⊙y)` per row: the gradient of the scaled softmax given its output.
#[derive(Debug, Clone, Copy)]
struct ScaledSoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for ScaledSoftmaxGrad {
    fn name(&self) -> &'static str {
        "exeml-scaled-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        yl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let row = row_len(self.name(), yl)?;
        let (y, grad) = (
            contiguous_f32(self.name(), ys, yl)?,
            contiguous_f32(self.name(), gs, gl)?,
        );
        if y.len() != grad.len() {
            candle_core::bail!(
                "softmax backward: {} outputs, {} gradients",
                y.len(),
                grad.len()
            )
        }
        let scale = self.scale;
        let out = par_rows(y.len(), row, |r, out| {
            softmax_grad_row(&y[r * row..][..row], &grad[r * row..][..row], scale, out)
        });
        Ok((CpuStorage::F32(out), yl.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{DType, Device, Var};

    /// candle's composed softmax of `scale·x`, which candle differentiates itself.
    fn composed(x: &Tensor, scale: f64) -> Tensor {
        candle_nn::ops::softmax(&(x * scale).expect("scale"), D::Minus1).expect("softmax")
    }

    /// The gradient of `Σ y·g` with respect to `x`.
    fn gradient(x: &Var, y: &Tensor, g: &Tensor) -> Tensor {
        let loss = (y * g).and_then(|l| l.sum_all()).expect("loss");
        let grads = loss.backward().expect("backward");
        grads.get(x.as_tensor()).expect("grad").clone()
    }

    #[test]
    fn the_fused_softmax_and_its_gradient_match_candles_composed_ops() {
        // Rows shorter and longer than a task's worth, an odd length, a negative scale.
        for (dims, scale) in [
            (vec![2, 3, 7, 7], 0.125),
            (vec![3, 5000], 1.0),
            (vec![4, 197], -0.7),
        ] {
            let x = Var::randn(0f32, 3.0, dims.as_slice(), &Device::Cpu).expect("x");
            let g = Tensor::randn(0f32, 1.0, dims.as_slice(), &Device::Cpu).expect("g");
            // The reference is candle's composed ops in f64: in f32 they round a 5,000-long
            // row's sum by more than the tolerance (the data is unseeded).
            let x64 =
                Var::from_tensor(&x.as_tensor().to_dtype(DType::F64).expect("f64")).expect("x64");
            let g64 = g.to_dtype(DType::F64).expect("g64");
            let f32_of = |t: Tensor| t.to_dtype(DType::F32).expect("f32");
            let ours = scaled_softmax(x.as_tensor(), scale).expect("ours");
            let theirs = composed(x64.as_tensor(), scale);
            let d = max_diff(&ours, &f32_of(theirs.clone()));
            assert!(d < 1e-6, "{dims:?} forward {d}");
            let (ours, theirs) = (gradient(&x, &ours, &g), gradient(&x64, &theirs, &g64));
            let d = max_diff(&ours, &f32_of(theirs));
            assert!(d < 1e-5, "{dims:?} gradient {d}");
        }
    }

    #[test]
    fn large_scores_do_not_overflow_and_rows_sum_to_one() {
        let x = Tensor::new(
            &[[1000f32, 999.0, -1000.0], [88.0, 89.0, 90.0]],
            &Device::Cpu,
        )
        .expect("x");
        let y = scaled_softmax(&x, 1.0).expect("softmax");
        let rows = y.to_vec2::<f32>().expect("rows");
        for row in &rows {
            assert!(row.iter().all(|v| v.is_finite()), "{rows:?}");
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{rows:?}");
        }
        assert!(rows[0][0] > rows[0][1] && rows[0][2] == 0.0, "{rows:?}");
    }

    #[test]
    fn a_tensor_without_values_in_its_rows_is_refused() {
        let empty = Tensor::zeros((2, 0), candle_core::DType::F32, &Device::Cpu).expect("x");
        assert!(scaled_softmax(&empty, 1.0).is_err());
    }
}
