//! The `1×1` convolution (a linear layer over channels, `w · xᵢ` for each image) as one
//! custom op with its backward on the CPU.
//!
//! Through candle the weight is broadcast over the batch for a batched matrix product; its
//! gradient is then a batch of `n` weight-sized products that candle sums over the batch with
//! its generic strided reduction, on one thread, a division and a modulo per element: a tenth
//! of a ViT's training step. Here the weight's gradient is accumulated image by image into one
//! buffer by the matrix kernel itself (`gemm`, the crate candle calls), and neither product's
//! output is zero-filled first. Other devices and types use candle's ops.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use gemm::Parallelism;

/// `y[i] = w · x[i]` for `x` of shape `n×ci×h×w` and `w` of shape `co×ci`: `n×co×h×w`.
pub fn pointwise(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, wide) = x.dims4()?;
    let (out, inputs) = w.dims2()?;
    if inputs != c {
        candle_core::bail!("pointwise: weight {:?} for input {:?}", w.dims(), x.dims())
    }
    let fused = x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && w.dtype() == candle_core::DType::F32;
    if fused {
        x.contiguous()?.apply_op2(&w.contiguous()?, Pointwise)
    } else {
        w.broadcast_left(n)?
            .matmul(&x.reshape((n, c, h * wide))?)?
            .reshape((n, out, h, wide))
    }
}

/// A column-major-agnostic matrix view for `gemm`: the first element and the strides of a
/// column and of a row.
#[derive(Debug, Clone, Copy)]
struct View {
    at: *const f32,
    column_stride: isize,
    row_stride: isize,
}

impl View {
    /// A row-major `rows×columns` matrix.
    fn rows(slice: &[f32], columns: usize) -> Self {
        View {
            at: slice.as_ptr(),
            column_stride: 1,
            row_stride: columns as isize,
        }
    }

    /// The transpose of a row-major matrix of `columns` columns.
    fn transposed(slice: &[f32], columns: usize) -> Self {
        View {
            at: slice.as_ptr(),
            column_stride: columns as isize,
            row_stride: 1,
        }
    }
}

/// `dst (m×k, row-major) = lhs (m×inner) · rhs (inner×k)`, added to what `dst` holds when
/// `accumulate`, otherwise written without reading it.
///
/// # Safety
/// `dst` must be valid for `m·k` writes (and reads when `accumulate`), and the views must
/// address `m×inner` and `inner×k` readable values that do not overlap `dst`.
#[allow(unsafe_code)]
unsafe fn product(
    dst: *mut f32,
    (m, inner, k): (usize, usize, usize),
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    // rayon's pool size, as candle's matmul uses, but without `candle_core::utils::
    // get_num_threads`, which reads /proc/cpuinfo on every call (a sixth of a MobileNetV2's
    // single-image latency went to those reads).
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the caller's contract; gemm writes `dst` (reading it only with `read_dst`), and
    // with `inner == 0` it writes `alpha·dst`, i.e. zeros or the accumulated values.
    unsafe {
        gemm::gemm(
            m,
            k,
            inner,
            dst,
            1,
            k as isize,
            accumulate,
            lhs.at,
            lhs.column_stride,
            lhs.row_stride,
            rhs.at,
            rhs.column_stride,
            rhs.row_stride,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// A new buffer of `len` values, every one written by `fill` before it is returned.
///
/// `fill` gets the buffer's start and must write all `len` values (the products above do).
#[allow(unsafe_code)]
fn written_by(len: usize, fill: impl FnOnce(*mut f32)) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    fill(out.as_mut_ptr());
    // SAFETY: every caller's `fill` writes all `len` values (one product per image covering its
    // whole output, or one product and then accumulated ones); a panic in it propagates before
    // the length is set.
    unsafe {
        out.set_len(len);
    }
    out
}

/// `(n, ci, plane)` of an `n×ci×h×w` layout and `(co, ci)` of the weight, checked to agree.
fn geometry(op: &str, x: &Layout, w: &Layout) -> candle_core::Result<(usize, usize, usize, usize)> {
    let (&[n, c, h, wide], &[out, inputs]) = (x.dims(), w.dims()) else {
        candle_core::bail!(
            "{op}: expected n×c×h×w and co×ci, got {:?} and {:?}",
            x.dims(),
            w.dims()
        )
    };
    if c != inputs {
        candle_core::bail!("{op}: weight {:?} for input {:?}", w.dims(), x.dims())
    }
    Ok((n, c, h * wide, out))
}

/// The forward op: `(x, w) → w · x[i]` per image.
#[derive(Debug, Clone, Copy)]
struct Pointwise;

impl CustomOp2 for Pointwise {
    fn name(&self) -> &'static str {
        "exeml-pointwise"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, plane, out) = geometry(self.name(), xl, wl)?;
        let (x, w) = (
            contiguous_f32(self.name(), xs, xl)?,
            contiguous_f32(self.name(), ws, wl)?,
        );
        let y = written_by(n * out * plane, |y| {
            for i in 0..n {
                let image = View::rows(&x[i * c * plane..][..c * plane], plane);
                // SAFETY: image i's output is the `out·plane` values from `i·out·plane` of a
                // buffer of `n·out·plane`; `w` is `out×c` and the image `c×plane`.
                #[allow(unsafe_code)]
                unsafe {
                    product(
                        y.add(i * out * plane),
                        (out, c, plane),
                        View::rows(w, c),
                        image,
                        false,
                    )
                }
            }
        });
        let mut dims = xl.dims().to_vec();
        dims[1] = out;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_x = grad.apply_op2_no_bwd(w, &InputGrad)?;
        let grad_w = grad.apply_op2_no_bwd(x, &WeightGrad)?;
        Ok((Some(grad_x), Some(grad_w)))
    }
}

/// `(g, w) → wᵀ · g[i]` per image: the gradient to the input.
#[derive(Debug, Clone, Copy)]
struct InputGrad;

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "exeml-pointwise-input-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let &[n, out, h, wide] = gl.dims() else {
            candle_core::bail!(
                "{}: expected a 4-d gradient, got {:?}",
                self.name(),
                gl.dims()
            )
        };
        let &[w_out, c] = wl.dims() else {
            candle_core::bail!(
                "{}: expected a co×ci weight, got {:?}",
                self.name(),
                wl.dims()
            )
        };
        if w_out != out {
            candle_core::bail!(
                "{}: weight {:?} for gradient {:?}",
                self.name(),
                wl.dims(),
                gl.dims()
            )
        }
        let plane = h * wide;
        let (g, w) = (
            contiguous_f32(self.name(), gs, gl)?,
            contiguous_f32(self.name(), ws, wl)?,
        );
        let dx = written_by(n * c * plane, |dx| {
            for i in 0..n {
                let image = View::rows(&g[i * out * plane..][..out * plane], plane);
                // SAFETY: image i's gradient is the `c·plane` values from `i·c·plane` of a
                // buffer of `n·c·plane`; `wᵀ` is `c×out` and the image's gradient `out×plane`.
                #[allow(unsafe_code)]
                unsafe {
                    product(
                        dx.add(i * c * plane),
                        (c, out, plane),
                        View::transposed(w, c),
                        image,
                        false,
                    )
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, wide))))
    }
}

/// `(g, x) → Σᵢ g[i] · x[i]ᵀ`: the gradient to the weight, summed over the batch as it is
/// computed.
#[derive(Debug, Clone, Copy)]
struct WeightGrad;

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "exeml-pointwise-weight-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        xs: &CpuStorage,
        xl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (&[n, out, h, wide], &[xn, c, xh, xw]) = (gl.dims(), xl.dims()) else {
            candle_core::bail!(
                "{}: expected 4-d tensors, got {:?} and {:?}",
                self.name(),
                gl.dims(),
                xl.dims()
            )
        };
        if (xn, xh, xw) != (n, h, wide) {
            candle_core::bail!(
                "{}: gradient {:?} for input {:?}",
                self.name(),
                gl.dims(),
                xl.dims()
            )
        }
        let plane = h * wide;
        let (g, x) = (
            contiguous_f32(self.name(), gs, gl)?,
            contiguous_f32(self.name(), xs, xl)?,
        );
        if n == 0 {
            return Ok((CpuStorage::F32(vec![0f32; out * c]), Shape::from((out, c))));
        }
        let dw = written_by(out * c, |dw| {
            for i in 0..n {
                let grad = View::rows(&g[i * out * plane..][..out * plane], plane);
                let input = View::transposed(&x[i * c * plane..][..c * plane], plane);
                // SAFETY: `dw` holds `out·c` values, written by the first product and read and
                // added to by the next; the image's gradient is `out×plane` and the image's
                // transpose `plane×c`.
                #[allow(unsafe_code)]
                unsafe {
                    product(dw, (out, plane, c), grad, input, i > 0)
                }
            }
        });
        Ok((CpuStorage::F32(dw), Shape::from((out, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    /// candle's broadcast matrix product, which candle differentiates itself.
    fn composed(x: &Tensor, w: &Tensor) -> Tensor {
        let (n, c, h, wide) = x.dims4().expect("dims");
        let out = w.dim(0).expect("out");
        w.broadcast_left(n)
            .and_then(|w| w.matmul(&x.reshape((n, c, h * wide))?))
            .and_then(|y| y.reshape((n, out, h, wide)))
            .expect("matmul")
    }

    #[test]
    fn the_fused_product_and_its_gradients_match_candles_broadcast_matmul() {
        for (n, c, out, h, wide) in [(3, 5, 7, 4, 6), (1, 16, 8, 1, 197), (2, 3, 1, 1, 1)] {
            let x = Var::randn(0f32, 1.0, (n, c, h, wide), &Device::Cpu).expect("x");
            let w = Var::randn(0f32, 1.0, (out, c), &Device::Cpu).expect("w");
            let g = Tensor::randn(0f32, 1.0, (n, out, h, wide), &Device::Cpu).expect("g");
            let ours = pointwise(x.as_tensor(), w.as_tensor()).expect("ours");
            let theirs = composed(x.as_tensor(), w.as_tensor());
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-4, "{:?}", x.dims());
            let grads = |y: &Tensor| {
                let loss = (y * &g).and_then(|l| l.sum_all()).expect("loss");
                let grads = loss.backward().expect("backward");
                (
                    grads.get(x.as_tensor()).expect("grad x").clone(),
                    grads.get(w.as_tensor()).expect("grad w").clone(),
                )
            };
            let ((ours_x, ours_w), (theirs_x, theirs_w)) = (grads(&ours), grads(&theirs));
            assert!(max_diff(&ours_x, &theirs_x) < 1e-4, "{:?}", x.dims());
            assert!(max_diff(&ours_w, &theirs_w) < 1e-3, "{:?}", x.dims());
        }
    }

    #[test]
    fn a_weight_for_other_channels_is_refused() {
        let x = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).expect("x");
        let w = Tensor::zeros((3, 5), candle_core::DType::F32, &Device::Cpu).expect("w");
        assert!(pointwise(&x, &w).is_err());
    }
}
