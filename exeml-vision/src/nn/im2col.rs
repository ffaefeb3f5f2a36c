//! A dense `k×k` convolution as im2col and one matrix product per image ([`super::pointwise`]),
//! on the CPU.
//!
//! candle's CPU convolution copies its input into column tiles and multiplies each tile, which
//! for MobileNetV2's stem (3 channels in, stride 2, 224 px) took 2 ms of a 16 ms single-image
//! inference, a sixth of it; its backward runs through a transposed convolution. Here the input
//! is unfolded once into an `n×(c·k·k)×(ho·wo)` matrix (each row one kernel tap of one channel)
//! by a custom op whose backward folds the gradient back (col2im), and the product with the
//! `out×(c·k·k)` kernel is the fused pointwise op, whose backward gives the kernel's gradient.

use super::{contiguous_f32, MIN_TASK_ELEMENTS};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The output side of a convolution of `side` input pixels.
fn out_side(side: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (side + 2 * pad)
        .checked_sub(k)
        .map(|span| span / stride.max(1) + 1)
}

/// The convolution of `x` (`n×c×h×w`) with `weight` (`out×c×k×k`), zero padding `pad`, stride
/// `stride`, as candle's `conv2d` computes it.
pub fn conv2d_im2col(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    pad: usize,
) -> candle_core::Result<Tensor> {
    let (out, inputs, k, k2) = weight.dims4()?;
    let (_, c, h, w) = x.dims4()?;
    if inputs != c || k != k2 || stride == 0 {
        candle_core::bail!(
            "conv2d: kernel {:?} (stride {stride}) does not fit input {:?}",
            weight.dims(),
            x.dims()
        )
    }
    let (Some(ho), Some(wo)) = (out_side(h, k, stride, pad), out_side(w, k, stride, pad)) else {
        candle_core::bail!("conv2d: a {k}×{k} kernel does not fit input {:?}", x.dims())
    };
    let cols = x.contiguous()?.apply_op1(Im2Col { k, stride, pad })?;
    debug_assert_eq!(cols.dims()[2..], [ho, wo]);
    super::pointwise(&cols, &weight.reshape((out, c * k * k))?)
}

/// Unfold `n×c×h×w` into `n×(c·k·k)×ho×wo`: row `(ci·k + ky)·k + kx` holds, at each output
/// position, the input pixel that kernel tap `(ky, kx)` of channel `ci` sees (zero in the pad).
#[derive(Debug, Clone, Copy)]
struct Im2Col {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Im2Col {
    /// `(n, c, h, w, ho, wo)` of an input layout.
    fn geometry(&self, l: &Layout) -> candle_core::Result<[usize; 6]> {
        let &[n, c, h, w] = l.dims() else {
            candle_core::bail!("im2col: expected a 4-d input, got {:?}", l.dims())
        };
        match (
            out_side(h, self.k, self.stride, self.pad),
            out_side(w, self.k, self.stride, self.pad),
        ) {
            (Some(ho), Some(wo)) => Ok([n, c, h, w, ho, wo]),
            _ => candle_core::bail!(
                "im2col: a {}×{} kernel does not fit {:?}",
                self.k,
                self.k,
                l.dims()
            ),
        }
    }

    /// For kernel tap offset `t` (`ky` or `kx`), the output positions `o` whose input index
    /// `o·stride + t − pad` falls inside `0..side`, as a range of `o`.
    fn valid(&self, t: usize, side: usize, out: usize) -> std::ops::Range<usize> {
        let (s, p) = (self.stride, self.pad);
        // o·s + t ≥ p  ⇔  o ≥ ceil((p − t) / s)
        let first = p.saturating_sub(t).div_ceil(s);
        // o·s + t − p ≤ side − 1  ⇔  o ≤ (side − 1 + p − t) / s
        let last = (side + p).checked_sub(t + 1).map_or(0, |v| v / s + 1);
        first.min(out)..last.min(out).max(first.min(out))
    }
}

/// Rows of one parallel task: enough values that the hand-off to a thread pays.
fn rows_per_task(row: usize) -> usize {
    (MIN_TASK_ELEMENTS / row.max(1)).max(1)
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "exeml-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [n, c, h, w, ho, wo] = self.geometry(l)?;
        let x = contiguous_f32(self.name(), s, l)?;
        let k = self.k;
        let plane = ho * wo;
        let mut cols = vec![0f32; n * c * k * k * plane];
        cols.par_chunks_mut(plane)
            .enumerate()
            .with_min_len(rows_per_task(plane))
            .for_each(|(row, out)| {
                let (image, tap) = (row / (c * k * k), row % (c * k * k));
                let (ci, ky, kx) = (tap / (k * k), tap / k % k, tap % k);
                let input = &x[(image * c + ci) * h * w..][..h * w];
                let columns = self.valid(kx, w, wo);
                if columns.is_empty() {
                    return; // every tap of this row lands in the padding: zeros
                }
                // The input columns of the valid outputs: `first, first + stride, …`.
                let first = columns.start * self.stride + kx - self.pad;
                for oy in self.valid(ky, h, ho) {
                    let iy = oy * self.stride + ky - self.pad;
                    let line = &input[iy * w..][..w];
                    let dst = &mut out[oy * wo..][columns.clone()];
                    if self.stride == 1 {
                        dst.copy_from_slice(&line[first..][..dst.len()]);
                    } else {
                        for (d, &v) in dst
                            .iter_mut()
                            .zip(line[first..].iter().step_by(self.stride))
                        {
                            *d = v;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(cols), Shape::from((n, c * k * k, ho, wo))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let grad = grad.contiguous()?;
        let fold = Col2Im {
            unfold: *self,
            h,
            w,
        };
        let folded = grad.apply_op1_no_bwd(&fold)?;
        debug_assert_eq!(folded.dims(), [n, c, h, w]);
        Ok(Some(folded))
    }
}

/// The backward of [`Im2Col`]: each input pixel gets the sum of the gradients of the columns
/// that copied it.
#[derive(Debug, Clone, Copy)]
struct Col2Im {
    unfold: Im2Col,
    h: usize,
    w: usize,
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "exeml-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[n, rows, ho, wo] = l.dims() else {
            candle_core::bail!("col2im: expected a 4-d gradient, got {:?}", l.dims())
        };
        let Im2Col { k, stride, pad } = self.unfold;
        let (h, w) = (self.h, self.w);
        if rows % (k * k) != 0
            || out_side(h, k, stride, pad) != Some(ho)
            || out_side(w, k, stride, pad) != Some(wo)
        {
            candle_core::bail!(
                "col2im: gradient {:?} does not fit a {h}×{w} input",
                l.dims()
            )
        }
        let c = rows / (k * k);
        let cols = contiguous_f32(self.name(), s, l)?;
        let mut dx = vec![0f32; n * c * h * w];
        // One task per input plane: its k·k rows of columns add into it alone.
        dx.par_chunks_mut(h * w)
            .enumerate()
            .with_min_len(rows_per_task(h * w))
            .for_each(|(plane, out)| {
                for tap in 0..k * k {
                    let (ky, kx) = (tap / k, tap % k);
                    let column = &cols[(plane * k * k + tap) * ho * wo..][..ho * wo];
                    let columns = self.unfold.valid(kx, w, wo);
                    if columns.is_empty() {
                        continue;
                    }
                    let first = columns.start * stride + kx - pad;
                    for oy in self.unfold.valid(ky, h, ho) {
                        let iy = oy * stride + ky - pad;
                        let line = &mut out[iy * w..][first..];
                        let src = &column[oy * wo..][columns.clone()];
                        if stride == 1 {
                            // Plain slices vectorise; `step_by(1)` did not.
                            for (d, &g) in line[..src.len()].iter_mut().zip(src) {
                                *d += g;
                            }
                        } else {
                            for (d, &g) in line.iter_mut().step_by(stride).zip(src) {
                                *d += g;
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn the_unfolded_product_and_its_gradients_match_candles_convolution() {
        // Odd and even sides, strides 1 and 2, the MobileNet stem's and ResNet's kernels.
        for (n, c, h, w, out, k, stride, pad) in [
            (2, 3, 9, 8, 4, 3, 2, 1),
            (1, 3, 9, 9, 4, 3, 2, 1),
            (1, 3, 13, 13, 5, 3, 1, 1),
            (2, 2, 11, 10, 3, 7, 2, 3),
            (1, 4, 5, 6, 2, 1, 1, 0),
            (1, 2, 6, 6, 3, 3, 3, 0),
            // Taps whose every output position reads padding.
            (1, 2, 2, 2, 3, 5, 3, 2),
        ] {
            let x = Var::randn(0f32, 1.0, (n, c, h, w), &Device::Cpu).expect("x");
            let kernel = Var::randn(0f32, 1.0, (out, c, k, k), &Device::Cpu).expect("w");
            let ours = conv2d_im2col(x.as_tensor(), kernel.as_tensor(), stride, pad).expect("ours");
            let theirs = x
                .as_tensor()
                .conv2d(kernel.as_tensor(), pad, stride, 1, 1)
                .expect("candle");
            assert_eq!(ours.dims(), theirs.dims(), "{:?}", (h, w, k, stride));
            assert!(max_diff(&ours, &theirs) < 1e-4);
            let g = Tensor::randn(0f32, 1.0, ours.dims(), &Device::Cpu).expect("g");
            let grads = |y: &Tensor| {
                let loss = (y * &g).and_then(|l| l.sum_all()).expect("loss");
                let grads = loss.backward().expect("backward");
                (
                    grads.get(x.as_tensor()).expect("grad x").clone(),
                    grads.get(kernel.as_tensor()).expect("grad w").clone(),
                )
            };
            let (ours_x, ours_w) = grads(&ours);
            // The convolution is linear in each argument, so ⟨∂L/∂x, x⟩ = ⟨∂L/∂w, w⟩ =
            // ⟨g, y⟩ exactly, on every shape.
            let dot = |a: &Tensor, b: &Tensor| {
                (a * b)
                    .and_then(|p| p.sum_all())
                    .and_then(|s| s.to_scalar::<f32>())
                    .expect("dot")
            };
            let total = dot(&g, &ours);
            for (grad, arg) in [(&ours_x, x.as_tensor()), (&ours_w, kernel.as_tensor())] {
                let d = dot(grad, arg);
                assert!(
                    (d - total).abs() <= 1e-3 * total.abs().max(1.0),
                    "{d} vs {total}"
                );
            }
            // candle's own backward fails when the stride leaves input pixels unused.
            if (h + 2 * pad - k) % stride == 0 && (w + 2 * pad - k) % stride == 0 {
                let (theirs_x, theirs_w) = grads(&theirs);
                assert!(
                    max_diff(&ours_x, &theirs_x) < 1e-3,
                    "{:?}",
                    (h, w, k, stride)
                );
                assert!(
                    max_diff(&ours_w, &theirs_w) < 1e-3,
                    "{:?}",
                    (h, w, k, stride)
                );
            }
        }
    }

    #[test]
    fn a_kernel_larger_than_the_padded_input_is_refused() {
        let x = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).expect("x");
        let w = Tensor::zeros((1, 1, 5, 5), candle_core::DType::F32, &Device::Cpu).expect("w");
        assert!(conv2d_im2col(&x, &w, 1, 1).is_err());
        let other = Tensor::zeros((1, 2, 3, 3), candle_core::DType::F32, &Device::Cpu).expect("w");
        assert!(conv2d_im2col(&x, &other, 1, 1).is_err());
    }
}
