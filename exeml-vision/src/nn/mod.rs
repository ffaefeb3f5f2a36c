//! Building blocks of the backbones: folded convolution + batch norm, layer norm over channels,
//! the fast depthwise convolution, fused bias + activation and residual kernels for the CPU, and
//! [`on_workers`], which runs a whole forward on the CPU pool's threads.

pub mod bias_act;
pub mod conv;
pub mod depthwise;
#[cfg(feature = "cuda")]
mod depthwise_cuda;
mod fast_exp;
pub mod im2col;
pub mod maxpool;
pub mod norm;
pub mod pointwise;
pub mod residual;
pub mod softmax;
mod workers;

pub use bias_act::{bias_activation, Activation};
pub use conv::{ConvBn, ConvKind, Tensors};
pub use depthwise::{depthwise_conv2d, shifted_depthwise_conv2d};
pub use maxpool::max_pool2d;
pub use norm::channel_norm;
pub use pointwise::pointwise;
pub use residual::add_activation;
pub use softmax::scaled_softmax;
pub use workers::{on_workers, shorten_candle_spins};

/// A contiguous f32 slice of a CPU storage, or an error naming `op` for other layouts and types.
fn contiguous_f32<'a>(
    op: &str,
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op}: inputs must be contiguous")
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// Elements below which a parallel task is not worth a thread hand-off (rayon's scheduling
/// costs microseconds; a 7×7 plane takes nanoseconds).
const MIN_TASK_ELEMENTS: usize = 1 << 14;

/// How many planes of `plane_len` elements one parallel task should take at least.
fn planes_per_task(plane_len: usize) -> usize {
    (MIN_TASK_ELEMENTS / plane_len.max(1)).max(1)
}

/// `out[i] = per_plane(p)(a[i], b[i])` where `p` is the index of the `plane`-long chunk holding
/// `i` (so per-plane values such as a channel's bias are looked up once per plane), computed in
/// parallel over planes into memory that is not zero-filled first (zero-filling the output was a
/// tenth of single-image inference).
fn par_map_planes<F: Fn(f32, f32) -> f32>(
    a: &[f32],
    b: &[f32],
    plane: usize,
    per_plane: impl Fn(usize) -> F + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let len = a.len().min(b.len());
    let plane = plane.max(1);
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(plane)
        .zip(a[..len].par_chunks(plane).zip(b[..len].par_chunks(plane)))
        .enumerate()
        .with_min_len(planes_per_task(plane))
        .for_each(|(p, (out, (a, b)))| map_plane(out, a, b, per_plane(p)));
    // SAFETY: the chunks partition the first `len` slots and the loop above wrote every slot of
    // every chunk (the three chunk sequences have equal lengths); a panic in `f` propagates
    // before this line, so no uninitialised value is ever exposed.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len);
    }
    out
}

/// `out[i] = f(a[i], b[i])`, compiled for the CPU's widest vector unit (the build targets
/// baseline x86-64, whose 4-wide vectors left GELU's erf a tenth of ConvNeXt's inference).
#[allow(unsafe_code)] // The dispatch calls the wider versions unsafely, after checking the CPU.
#[multiversion::multiversion(targets = "simd")]
fn map_plane<F: Fn(f32, f32) -> f32>(
    out: &mut [std::mem::MaybeUninit<f32>],
    a: &[f32],
    b: &[f32],
    f: F,
) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        o.write(f(a, b));
    }
}

/// A candle error as exeml's backend error.
pub fn candle_error(e: candle_core::Error) -> exeml_core::Error {
    exeml_core::Error::Backend {
        backend: "candle",
        message: e.to_string(),
    }
}

/// The largest absolute element-wise difference of two tensors of one shape (for tests).
#[cfg(test)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .expect("same shape")
        .abs()
        .expect("abs")
        .flatten_all()
        .expect("flat")
        .max(0)
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

#[cfg(test)]
mod tests {
    #[test]
    fn par_map_planes_writes_every_value_with_its_plane() {
        let a: Vec<f32> = (0..100_003).map(|i| i as f32).collect();
        let b = vec![1f32; a.len()];
        for plane in [1, 7, 49, 100_003, 200_000] {
            let out = super::par_map_planes(&a, &b, plane, |p| move |a, b| a + b + p as f32);
            assert_eq!(out.len(), a.len());
            for (i, v) in out.iter().enumerate() {
                assert_eq!(
                    *v,
                    i as f32 + 1.0 + (i / plane) as f32,
                    "plane {plane}, index {i}"
                );
            }
        }
        assert!(super::par_map_planes(&[], &[], 4, |_| |a, _| a).is_empty());
    }

    /// The backward pass of the patched candle-core (`vendor/README.md`) keeps a node's first
    /// gradient as it is and adds the others: a tensor read by one op, by two, and through a
    /// residual sum gets exactly its analytic gradient, and the stored gradients are contiguous.
    #[test]
    fn gradients_of_single_and_shared_uses_are_exact() {
        use candle_core::{Device, Tensor, Var};
        let x = Var::new(&[[1f32, -2.0, 3.0], [0.5, 4.0, -1.0]], &Device::Cpu).expect("x");
        let w = Var::new(&[2f32, 3.0, -1.0], &Device::Cpu).expect("w");
        let xs = x.as_tensor();
        // loss = Σ (x·w) + Σ x² + Σ (x + exp(x))ᵀ, with x read four times, w once (broadcast).
        let product = xs.broadcast_mul(w.as_tensor()).expect("product");
        let square = xs.sqr().expect("square");
        let residual = (xs + xs.exp().expect("exp")).expect("residual");
        let loss = [product, square, residual.t().expect("transpose")]
            .iter()
            .map(|t| t.sum_all().expect("sum"))
            .try_fold(Tensor::new(0f32, &Device::Cpu).expect("zero"), |a, b| a + b)
            .expect("loss");
        let grads = loss.backward().expect("backward");
        let grad_x = grads.get(xs).expect("grad of x");
        let grad_w = grads.get(w.as_tensor()).expect("grad of w");
        assert!(grad_x.is_contiguous() && grad_w.is_contiguous());
        let x_values = xs.to_vec2::<f32>().expect("x values");
        let w_values = w.as_tensor().to_vec1::<f32>().expect("w values");
        for (row, grads_row) in grad_x.to_vec2::<f32>().expect("grad x").iter().enumerate() {
            for (col, &g) in grads_row.iter().enumerate() {
                let v = x_values[row][col];
                let expected = w_values[col] + 2.0 * v + 1.0 + v.exp();
                assert!(
                    (g - expected).abs() < 1e-4,
                    "x[{row}][{col}]: {g} vs {expected}"
                );
            }
        }
        let expected_w: Vec<f32> = (0..3).map(|c| x_values[0][c] + x_values[1][c]).collect();
        assert_eq!(grad_w.to_vec1::<f32>().expect("grad w"), expected_w);
    }
}
