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

/// A candle error as exeml's backend error.
pub fn candle_error(e: candle_core::Error) -> exeml_core::Error {
    exeml_core::Error::Backend {
        backend: "candle",
        message: e.to_string(),
    }
}
