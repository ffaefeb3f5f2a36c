//! Building blocks of the backbones: folded convolution + batch norm, and the fast depthwise
//! convolution and fused bias + activation kernels for the CPU.

pub mod bias_act;
pub mod conv;
pub mod depthwise;
#[cfg(feature = "cuda")]
mod depthwise_cuda;

pub use bias_act::{bias_activation, Activation};
pub use conv::{ConvBn, ConvKind, Tensors};
pub use depthwise::{depthwise_conv2d, shifted_depthwise_conv2d};

/// Elements below which a parallel task is not worth a thread hand-off (rayon's scheduling
/// costs microseconds; a 7×7 plane takes nanoseconds).
const MIN_TASK_ELEMENTS: usize = 1 << 14;

/// How many planes of `plane_len` elements one parallel task should take at least.
fn planes_per_task(plane_len: usize) -> usize {
    (MIN_TASK_ELEMENTS / plane_len.max(1)).max(1)
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
fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
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
