//! Depthwise 2-D convolution (one filter per channel) as candle custom ops, with backward.
//! Stride 1 (and the input gradient of stride 1, itself a stride-1 convolution) runs on a padded
//! copy of each plane as long vectorised loops; other strides row by row.
//!
//! candle runs a grouped convolution as one small convolution per group and concatenates them,
//! which for MobileNet-style depthwise layers (hundreds of groups of one channel) spends most of
//! its time in bookkeeping. These kernels run each channel plane directly, in parallel over the
//! planes. On CUDA the same three operations run as kernels of our own (`depthwise_cuda.rs`).
//! Elsewhere (Metal, other types) [`depthwise_conv2d`] sums `k×k` shifted slices of the padded
//! input, each scaled by one kernel tap: a few large element-wise kernels on the GPU instead of
//! one launch per channel, and differentiable through candle's own ops.

use super::contiguous_f32;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use multiversion::multiversion;
use rayon::prelude::*;

/// How errors of these kernels name them.
const OP: &str = "depthwise conv";

/// Sizes of one depthwise convolution: input `n×c×h×w`, square `k×k` kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(
        input: &[usize],
        kernel: &[usize],
        stride: usize,
        pad: usize,
    ) -> candle_core::Result<Self> {
        let (&[n, c, h, w], &[kc, one, k, k2]) = (input, kernel) else {
            candle_core::bail!(
                "depthwise conv: expected 4-d input and kernel, got {input:?} and {kernel:?}"
            )
        };
        if kc != c || one != 1 || k != k2 || stride == 0 {
            candle_core::bail!("depthwise conv: kernel {kernel:?} does not fit input {input:?}")
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("depthwise conv: input {h}×{w} smaller than kernel {k}")
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Geometry {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
            ho,
            wo,
        })
    }

    /// Output columns `ow` whose input column `ow*stride + kj - pad` lies inside the row.
    fn valid_cols(&self, kj: usize) -> std::ops::Range<usize> {
        let lo = self.pad.saturating_sub(kj).div_ceil(self.stride);
        let last_input = self.w - 1 + self.pad;
        let hi = if last_input < kj {
            0
        } else {
            ((last_input - kj) / self.stride + 1).min(self.wo)
        };
        lo..hi.max(lo)
    }

    /// The input row of output row `oh` for kernel row `ki`, if inside the image.
    fn input_row(&self, oh: usize, ki: usize) -> Option<usize> {
        (oh * self.stride + ki)
            .checked_sub(self.pad)
            .filter(|&ih| ih < self.h)
    }
}

#[cfg(feature = "cuda")]
impl Geometry {
    fn sizes(&self) -> super::depthwise_cuda::Sizes {
        super::depthwise_cuda::Sizes {
            n: self.n,
            c: self.c,
            h: self.h,
            w: self.w,
            k: self.k,
            stride: self.stride,
            pad: self.pad,
            ho: self.ho,
            wo: self.wo,
        }
    }
}

/// Stride 1, one channel plane: the plane is zero-padded into `padded` (`h + 2p` rows of
/// `w + 2p`, plus `k` slack values), and each tap is one long multiply-add over `wide`, an output
/// as wide as the padded rows whose extra `2p` columns are dropped when copied to `out`. Row by
/// row, a small map (7×7 in ConvNeXt's last stage) is mostly loop overhead; these long
/// contiguous loops vectorise.
#[allow(unsafe_code)] // The dispatch to the CPU's widest vector unit calls it unsafely.
#[multiversion(targets = "simd")]
fn forward_plane_padded(
    g: &Geometry,
    x: &[f32],
    kernel: &[f32],
    out: &mut [f32],
    (padded, wide): (&mut Vec<f32>, &mut Vec<f32>),
) {
    let width = pad_plane(g, x, padded);
    wide.clear();
    wide.resize(g.ho * width, 0.0);
    for ki in 0..g.k {
        for kj in 0..g.k {
            let weight = kernel[ki * g.k + kj];
            let shifted = &padded[ki * width + kj..][..wide.len()];
            for (o, &v) in wide.iter_mut().zip(shifted) {
                *o += weight * v;
            }
        }
    }
    for (out_row, wide_row) in out.chunks_mut(g.wo).zip(wide.chunks(width)) {
        out_row.copy_from_slice(&wide_row[..g.wo]);
    }
}

/// Stride 2 and more, one channel plane: the plane, zero-padded as in [`forward_plane_padded`],
/// is copied once with its columns split by phase (padded column `c` goes to phase `c mod s`,
/// position `c / s`), so that each tap reads one contiguous run of a phase per output row
/// instead of every `s`-th value. The strided reads did not vectorise: MobileNetV2's first
/// stride-2 layer (96 planes of 112×112) was a tenth of its single-image latency.
#[allow(unsafe_code)] // The dispatch to the CPU's widest vector unit calls it unsafely.
#[multiversion(targets = "simd")]
fn forward_plane_phased(
    g: &Geometry,
    x: &[f32],
    kernel: &[f32],
    out: &mut [f32],
    phases: &mut Vec<f32>,
) {
    let (rows, s, p) = (g.h + 2 * g.pad, g.stride, g.pad);
    let phase_width = (g.w + 2 * p).div_ceil(s);
    phases.clear();
    phases.resize(s * rows * phase_width, 0.0);
    for (ih, row) in x.chunks(g.w).enumerate() {
        for q in 0..s {
            // Input columns `iw` with padded column `iw + p ≡ q (mod s)`, from the first.
            let first = (q + s - p % s) % s;
            let at = (q * rows + ih + p) * phase_width + (first + p) / s;
            for (o, &v) in phases[at..]
                .iter_mut()
                .zip(row.iter().skip(first).step_by(s))
            {
                *o = v;
            }
        }
    }
    for oh in 0..g.ho {
        let dst = &mut out[oh * g.wo..][..g.wo];
        for ki in 0..g.k {
            let r = oh * s + ki;
            for kj in 0..g.k {
                let weight = kernel[ki * g.k + kj];
                // Output column `ow` reads padded column `ow·s + kj`: phase `kj mod s`,
                // position `ow + kj / s`.
                let src = &phases[((kj % s) * rows + r) * phase_width + kj / s..][..g.wo];
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o += weight * v;
                }
            }
        }
    }
}

/// `x` (one `h×w` plane) zero-padded by `p` on every side into `padded`, plus `k` slack values so
/// that every tap's shifted window of `ho` padded rows stays inside; returns the padded width.
fn pad_plane(g: &Geometry, x: &[f32], padded: &mut Vec<f32>) -> usize {
    let width = g.w + 2 * g.pad;
    padded.clear();
    padded.resize((g.h + 2 * g.pad) * width + g.k, 0.0);
    for (row, input) in x.chunks(g.w).enumerate() {
        let start = (row + g.pad) * width + g.pad;
        padded[start..start + g.w].copy_from_slice(input);
    }
    width
}

/// Stride 1, the gradient of one channel's kernel: with the input padded as in
/// [`forward_plane_padded`] and the output gradient laid out as wide as its rows (zeros in the
/// extra columns), each tap is one long dot product.
#[allow(unsafe_code)] // The dispatch to the CPU's widest vector unit calls it unsafely.
#[multiversion(targets = "simd")]
fn grad_kernel_plane_padded(
    g: &Geometry,
    x: &[f32],
    grad_out: &[f32],
    grad_kernel: &mut [f32],
    (padded, wide): (&mut Vec<f32>, &mut Vec<f32>),
) {
    let width = pad_plane(g, x, padded);
    wide.clear();
    wide.resize(g.ho * width, 0.0);
    for (wide_row, grad_row) in wide.chunks_mut(width).zip(grad_out.chunks(g.wo)) {
        wide_row[..g.wo].copy_from_slice(grad_row);
    }
    for ki in 0..g.k {
        for kj in 0..g.k {
            let shifted = &padded[ki * width + kj..][..wide.len()];
            grad_kernel[ki * g.k + kj] += lane_dot(wide, shifted);
        }
    }
}

/// `Σ a·b` in 16 independent lanes, so that the compiler vectorises the sum (a single running
/// f32 sum must be added in order).
#[inline]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (a_blocks, b_blocks) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a_blocks
        .remainder()
        .iter()
        .zip(b_blocks.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a_blocks.zip(b_blocks) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The gradient of one input plane: the forward pass with the roles of input and output swapped.
fn grad_input_plane(g: &Geometry, grad_out: &[f32], kernel: &[f32], grad_in: &mut [f32]) {
    for ki in 0..g.k {
        for kj in 0..g.k {
            let weight = kernel[ki * g.k + kj];
            let cols = g.valid_cols(kj);
            if cols.is_empty() {
                continue;
            }
            for oh in 0..g.ho {
                let Some(ih) = g.input_row(oh, ki) else {
                    continue;
                };
                let grad_row = &grad_out[oh * g.wo + cols.start..oh * g.wo + cols.end];
                let in_row = &mut grad_in[ih * g.w..(ih + 1) * g.w];
                let first = cols.start * g.stride + kj - g.pad;
                for (i, go) in in_row[first..].iter_mut().step_by(g.stride).zip(grad_row) {
                    *i += weight * go;
                }
            }
        }
    }
}

/// The gradient of one channel's kernel from one sample: `Σ grad_out · shifted input`.
fn grad_kernel_plane(g: &Geometry, x: &[f32], grad_out: &[f32], grad_kernel: &mut [f32]) {
    for ki in 0..g.k {
        for kj in 0..g.k {
            let cols = g.valid_cols(kj);
            if cols.is_empty() {
                continue;
            }
            let mut sum = 0f32;
            for oh in 0..g.ho {
                let Some(ih) = g.input_row(oh, ki) else {
                    continue;
                };
                let row = &x[ih * g.w..(ih + 1) * g.w];
                let first = cols.start * g.stride + kj - g.pad;
                let grad_row = &grad_out[oh * g.wo + cols.start..oh * g.wo + cols.end];
                sum += grad_row
                    .iter()
                    .zip(row[first..].iter().step_by(g.stride))
                    .map(|(a, b)| a * b)
                    .sum::<f32>();
            }
            grad_kernel[ki * g.k + kj] += sum;
        }
    }
}

/// Forward op: `(input n×c×h×w, kernel c×1×k×k) → n×c×ho×wo`.
#[derive(Debug, Clone, Copy)]
struct Depthwise {
    stride: usize,
    pad: usize,
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        "exeml-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::new(xl.dims(), kl.dims(), self.stride, self.pad)?;
        let (x, kernel) = (contiguous_f32(OP, xs, xl)?, contiguous_f32(OP, ks, kl)?);
        let (plane_in, plane_out, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
        let mut out = vec![0f32; g.n * g.c * plane_out];
        out.par_chunks_mut(plane_out)
            .enumerate()
            .with_min_len(super::planes_per_task(plane_out))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(padded, wide), (plane, out)| {
                    let channel = plane % g.c;
                    let x = &x[plane * plane_in..(plane + 1) * plane_in];
                    let kernel = &kernel[channel * kk..(channel + 1) * kk];
                    if g.stride == 1 {
                        forward_plane_padded(&g, x, kernel, out, (padded, wide));
                    } else {
                        forward_plane_phased(&g, x, kernel, out, wide);
                    }
                },
            );
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.c, g.ho, g.wo))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ks: &candle_core::CudaStorage,
        kl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use super::depthwise_cuda::{launch, Kernel};
        let g = Geometry::new(xl.dims(), kl.dims(), self.stride, self.pad)?;
        let out = launch(Kernel::Forward, g.sizes(), (xs, xl), (ks, kl))?;
        Ok((out, Shape::from((g.n, g.c, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        kernel: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let grad_x = grad_res.apply_op2_no_bwd(
            kernel,
            &DepthwiseGradInput {
                stride: self.stride,
                pad: self.pad,
                input_hw: (x.dim(2)?, x.dim(3)?),
            },
        )?;
        let grad_kernel = x.apply_op2_no_bwd(
            &grad_res,
            &DepthwiseGradWeight {
                stride: self.stride,
                pad: self.pad,
                k: kernel.dim(2)?,
            },
        )?;
        Ok((Some(grad_x), Some(grad_kernel)))
    }
}

/// Backward to the input: `(grad_out n×c×ho×wo, kernel) → n×c×h×w`.
#[derive(Debug, Clone, Copy)]
struct DepthwiseGradInput {
    stride: usize,
    pad: usize,
    input_hw: (usize, usize),
}

impl DepthwiseGradInput {
    /// The forward geometry of a gradient of shape `dims` and the input shape it flows to.
    fn geometry(
        &self,
        dims: &[usize],
        kernel: &[usize],
    ) -> candle_core::Result<(Geometry, [usize; 4])> {
        let &[n, c, ho, wo] = dims else {
            candle_core::bail!("depthwise conv backward: expected a 4-d gradient, got {dims:?}")
        };
        let (h, w) = self.input_hw;
        let input = [n, c, h, w];
        let g = Geometry::new(&input, kernel, self.stride, self.pad)?;
        if (g.ho, g.wo) != (ho, wo) {
            candle_core::bail!("depthwise conv backward: gradient {dims:?} does not fit {input:?}")
        }
        Ok((g, input))
    }
}

impl CustomOp2 for DepthwiseGradInput {
    fn name(&self) -> &'static str {
        "exeml-depthwise-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        gl: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, input) = self.geometry(gl.dims(), kl.dims())?;
        let (grad_out, kernel) = (contiguous_f32(OP, gs, gl)?, contiguous_f32(OP, ks, kl)?);
        let (plane_in, plane_out, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
        // Stride 1 (pad < k): the gradient is the forward convolution of the output gradient
        // with the flipped kernel and padding k − 1 − p, which the padded kernel runs fast.
        let transposed = (g.stride == 1 && g.pad < g.k)
            .then(|| {
                let dims = [g.n, g.c, g.ho, g.wo];
                Geometry::new(&dims, &[g.c, 1, g.k, g.k], 1, g.k - 1 - g.pad)
            })
            .transpose()?
            .filter(|t| (t.ho, t.wo) == (g.h, g.w));
        let mut grad_in = vec![0f32; g.n * g.c * plane_in];
        grad_in
            .par_chunks_mut(plane_in)
            .enumerate()
            .with_min_len(super::planes_per_task(plane_in))
            .for_each_init(
                || (Vec::new(), Vec::new(), Vec::new()),
                |(padded, wide, flipped), (plane, grad_in)| {
                    let channel = plane % g.c;
                    let grad_out = &grad_out[plane * plane_out..(plane + 1) * plane_out];
                    let kernel = &kernel[channel * kk..(channel + 1) * kk];
                    match &transposed {
                        Some(t) => {
                            flipped.clear();
                            flipped.extend(kernel.iter().rev());
                            forward_plane_padded(t, grad_out, flipped, grad_in, (padded, wide));
                        }
                        None => grad_input_plane(&g, grad_out, kernel, grad_in),
                    }
                },
            );
        Ok((CpuStorage::F32(grad_in), Shape::from(input.to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
        ks: &candle_core::CudaStorage,
        kl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use super::depthwise_cuda::{launch, Kernel};
        let (g, input) = self.geometry(gl.dims(), kl.dims())?;
        let grad_in = launch(Kernel::GradInput, g.sizes(), (gs, gl), (ks, kl))?;
        Ok((grad_in, Shape::from(input.to_vec())))
    }
}

/// Backward to the kernel: `(input, grad_out) → c×1×k×k`.
#[derive(Debug, Clone, Copy)]
struct DepthwiseGradWeight {
    stride: usize,
    pad: usize,
    k: usize,
}

impl CustomOp2 for DepthwiseGradWeight {
    fn name(&self) -> &'static str {
        "exeml-depthwise-conv2d-grad-kernel"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let c = xl.dims().get(1).copied().unwrap_or(0);
        let kernel = [c, 1, self.k, self.k];
        let g = Geometry::new(xl.dims(), &kernel, self.stride, self.pad)?;
        let (x, grad_out) = (contiguous_f32(OP, xs, xl)?, contiguous_f32(OP, gs, gl)?);
        let (plane_in, plane_out, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
        let mut grad_kernel = vec![0f32; g.c * kk];
        grad_kernel
            .par_chunks_mut(kk)
            .enumerate()
            .with_min_len(super::planes_per_task(g.n * plane_in))
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |scratch, (channel, grad_kernel)| {
                    for sample in 0..g.n {
                        let plane = sample * g.c + channel;
                        let x = &x[plane * plane_in..(plane + 1) * plane_in];
                        let grad_out = &grad_out[plane * plane_out..(plane + 1) * plane_out];
                        if g.stride == 1 {
                            let (padded, wide) = (&mut scratch.0, &mut scratch.1);
                            grad_kernel_plane_padded(&g, x, grad_out, grad_kernel, (padded, wide));
                        } else {
                            grad_kernel_plane(&g, x, grad_out, grad_kernel);
                        }
                    }
                },
            );
        Ok((CpuStorage::F32(grad_kernel), Shape::from(kernel.to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        gs: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use super::depthwise_cuda::{launch, Kernel};
        let c = xl.dims().get(1).copied().unwrap_or(0);
        let kernel = [c, 1, self.k, self.k];
        let g = Geometry::new(xl.dims(), &kernel, self.stride, self.pad)?;
        if gl.dims() != [g.n, g.c, g.ho, g.wo] {
            candle_core::bail!(
                "depthwise conv backward: gradient {:?} does not fit",
                gl.dims()
            )
        }
        let grad_kernel = launch(Kernel::GradWeight, g.sizes(), (xs, xl), (gs, gl))?;
        Ok((grad_kernel, Shape::from(kernel.to_vec())))
    }
}

/// Depthwise convolution of `x` (`n×c×h×w`) with `kernel` (`c×1×k×k`), zero padding `pad`.
///
/// Fast kernels of our own on the CPU and (with the `cuda` feature) CUDA for f32; elsewhere
/// (Metal, other types) [`shifted_depthwise_conv2d`].
pub fn depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    stride: usize,
    pad: usize,
) -> candle_core::Result<Tensor> {
    let own_kernels = x.device().is_cpu() || (cfg!(feature = "cuda") && x.device().is_cuda());
    if own_kernels && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?
            .apply_op2(&kernel.contiguous()?, Depthwise { stride, pad })
    } else {
        shifted_depthwise_conv2d(x, kernel, stride, pad)
    }
}

/// Depthwise convolution as the sum over kernel taps `(i, j)` of the padded input shifted by
/// `(i, j)`, subsampled by `stride` and scaled per channel by `kernel[c, 0, i, j]`.
///
/// Device-generic: only padding, narrowing, reshapes and broadcast multiply-adds, so it runs
/// (with gradients) wherever candle does. candle's grouped convolution, the alternative, launches
/// one small convolution per channel and its backward mis-shapes stride-2 gradients.
pub fn shifted_depthwise_conv2d(
    x: &Tensor,
    kernel: &Tensor,
    stride: usize,
    pad: usize,
) -> candle_core::Result<Tensor> {
    let g = Geometry::new(x.dims(), kernel.dims(), stride, pad)?;
    // Pad so that every tap can take `ho·stride` rows and `wo·stride` columns, then keep every
    // `stride`-th one by reshaping and taking the first of each group.
    let rows = g.ho * stride;
    let cols = g.wo * stride;
    let extra_h = (g.k - 1 + rows).saturating_sub(g.h + 2 * pad);
    let extra_w = (g.k - 1 + cols).saturating_sub(g.w + 2 * pad);
    let padded = x
        .pad_with_zeros(2, pad, pad + extra_h)?
        .pad_with_zeros(3, pad, pad + extra_w)?;
    let mut sum: Option<Tensor> = None;
    for i in 0..g.k {
        for j in 0..g.k {
            let mut tap = padded.narrow(2, i, rows)?.narrow(3, j, cols)?;
            if stride > 1 {
                tap = tap
                    .reshape((g.n, g.c, g.ho, stride, g.wo, stride))?
                    .narrow(3, 0, 1)?
                    .narrow(5, 0, 1)?
                    .reshape((g.n, g.c, g.ho, g.wo))?;
            }
            let weight = kernel
                .narrow(2, i, 1)?
                .narrow(3, j, 1)?
                .reshape((1, g.c, 1, 1))?;
            let term = tap.broadcast_mul(&weight)?;
            sum = Some(match sum {
                None => term,
                Some(s) => (s + term)?,
            });
        }
    }
    sum.ok_or_else(|| candle_core::Error::Msg("depthwise conv: empty kernel".into()))
}

#[cfg(test)]
mod tests {
    use super::super::max_diff;
    use super::*;
    use candle_core::{Device, Var};

    fn reference(x: &Tensor, kernel: &Tensor, stride: usize, pad: usize) -> Tensor {
        let c = x.dim(1).expect("4-d");
        x.conv2d(kernel, pad, stride, 1, c)
            .expect("candle grouped conv")
    }

    #[test]
    fn depthwise_matches_candles_grouped_convolution() {
        let dev = Device::Cpu;
        for (h, w, k, stride, pad) in [
            (7, 9, 3, 1, 1),
            (8, 8, 3, 2, 1),
            (9, 7, 5, 2, 2),
            (6, 6, 5, 1, 2),
            (3, 3, 3, 2, 1),
            (7, 7, 7, 1, 3),
            (5, 11, 7, 1, 3),
            (12, 13, 3, 2, 0),
            (10, 11, 3, 3, 1),
        ] {
            let x = Tensor::randn(0f32, 1., (2, 3, h, w), &dev).expect("x");
            let kernel = Tensor::randn(0f32, 1., (3, 1, k, k), &dev).expect("k");
            let theirs = reference(&x, &kernel, stride, pad);
            for ours in [
                depthwise_conv2d(&x, &kernel, stride, pad).expect("ours"),
                shifted_depthwise_conv2d(&x, &kernel, stride, pad).expect("shifted"),
            ] {
                assert_eq!(ours.dims(), theirs.dims());
                assert!(max_diff(&ours, &theirs) < 1e-4, "{h}×{w} k{k} s{stride}");
            }
        }
    }

    #[test]
    fn depthwise_gradients_are_exact_for_a_linear_loss() {
        // L(x, k) = <conv(x, k), t> is linear in x and in k, so for any direction d the change
        // L(x + d) − L(x) equals <∂L/∂x, d> exactly. (candle's own grouped-conv backward has
        // shape bugs for stride 2 on even widths, so it cannot serve as the reference.)
        let dev = Device::Cpu;
        let dot = |a: &Tensor, b: &Tensor| -> f32 {
            (a * b)
                .expect("mul")
                .sum_all()
                .expect("sum")
                .to_scalar()
                .expect("scalar")
        };
        for (h, w, k, stride, pad) in [
            (9, 8, 3, 1, 1),
            (9, 8, 3, 2, 1),
            (8, 8, 5, 2, 2),
            (7, 9, 3, 2, 1),
            (7, 9, 7, 1, 3),
            (6, 6, 5, 1, 1),
            (4, 4, 3, 1, 0),
        ] {
            let x = Var::randn(0f32, 1., (2, 4, h, w), &dev).expect("x");
            let kernel = Var::randn(0f32, 1., (4, 1, k, k), &dev).expect("k");
            let y = depthwise_conv2d(&x, &kernel, stride, pad).expect("forward");
            let target = Tensor::randn(0f32, 1., y.dims(), &dev).expect("t");
            let loss = |x: &Tensor, k: &Tensor| {
                dot(&depthwise_conv2d(x, k, stride, pad).expect("f"), &target)
            };
            let grads = (y * &target)
                .expect("mul")
                .sum_all()
                .expect("sum")
                .backward()
                .expect("grads");
            let (gx, gk) = (grads.get(&x).expect("gx"), grads.get(&kernel).expect("gk"));
            for _ in 0..3 {
                let dx = Tensor::randn(0f32, 1., x.dims(), &dev).expect("dx");
                let dk = Tensor::randn(0f32, 1., kernel.dims(), &dev).expect("dk");
                let base = loss(&x, &kernel);
                let moved_x = loss(&(x.as_tensor() + &dx).expect("add"), &kernel) - base;
                let moved_k = loss(&x, &(kernel.as_tensor() + &dk).expect("add")) - base;
                assert!(
                    (moved_x - dot(gx, &dx)).abs() < 1e-2 * (1.0 + moved_x.abs()),
                    "x: {h}×{w} k{k} s{stride}"
                );
                assert!(
                    (moved_k - dot(gk, &dk)).abs() < 1e-2 * (1.0 + moved_k.abs()),
                    "k: {h}×{w} k{k} s{stride}"
                );
            }
            if stride == 1 {
                let theirs = (reference(&x, &kernel, stride, pad) * &target)
                    .expect("mul")
                    .sum_all()
                    .expect("sum")
                    .backward()
                    .expect("grads");
                assert!(max_diff(gx, theirs.get(&x).expect("x")) < 1e-3);
                assert!(max_diff(gk, theirs.get(&kernel).expect("k")) < 1e-3);
            }
        }
    }

    #[test]
    fn shifted_gradients_match_the_cpu_kernels() {
        let dev = Device::Cpu;
        for (h, w, k, stride, pad) in [(9, 8, 3, 1, 1), (9, 8, 3, 2, 1), (8, 8, 5, 2, 2)] {
            let x = Var::randn(0f32, 1., (2, 4, h, w), &dev).expect("x");
            let kernel = Var::randn(0f32, 1., (4, 1, k, k), &dev).expect("k");
            let target = {
                let y = depthwise_conv2d(&x, &kernel, stride, pad).expect("forward");
                Tensor::randn(0f32, 1., y.dims(), &dev).expect("t")
            };
            let grads =
                |conv: fn(&Tensor, &Tensor, usize, usize) -> candle_core::Result<Tensor>| {
                    let grads = (conv(&x, &kernel, stride, pad).expect("forward") * &target)
                        .expect("mul")
                        .sum_all()
                        .expect("sum")
                        .backward()
                        .expect("grads");
                    let gx = grads.get(&x).expect("gx").clone();
                    let gk = grads.get(&kernel).expect("gk").clone();
                    (gx, gk)
                };
            let (ox, ok) = grads(depthwise_conv2d);
            let (sx, sk) = grads(shifted_depthwise_conv2d);
            assert!(max_diff(&ox, &sx) < 1e-3, "x: {h}×{w} k{k} s{stride}");
            assert!(max_diff(&ok, &sk) < 1e-3, "k: {h}×{w} k{k} s{stride}");
        }
    }

    #[test]
    fn mismatched_kernel_is_an_error_not_a_panic() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 4, 4), candle_core::DType::F32, &dev).expect("x");
        let kernel = Tensor::zeros((2, 1, 3, 3), candle_core::DType::F32, &dev).expect("k");
        assert!(depthwise_conv2d(&x, &kernel, 1, 1).is_err());
        let big = Tensor::zeros((3, 1, 9, 9), candle_core::DType::F32, &dev).expect("k");
        assert!(depthwise_conv2d(&x, &big, 1, 0).is_err());
    }
}
