//! CUDA kernels of the depthwise convolution (forward, gradient to the input, gradient to the
//! kernel), compiled once per process with NVRTC and launched on candle's stream.
//!
//! candle has no depthwise kernel: its grouped convolution launches one small convolution per
//! channel, and a composition of candle ops (`shifted_depthwise_conv2d`) moves every activation
//! through memory a few dozen times per layer. These kernels read each input once per output
//! (forward, gradient to the input) or once per kernel tap (gradient to the kernel).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::cudarc::nvrtc::compile_ptx;
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaDevice, CudaStorage, Layout};
use std::sync::OnceLock;

/// The module name under which candle caches the compiled kernels.
const MODULE: &str = "exeml_depthwise";
/// Threads per block of the kernel-gradient reduction (the shared buffer's size below).
const REDUCE_THREADS: u32 = 256;

/// One thread per output (or input-gradient) element, grid-stride loops; `plane` is
/// `sample·c + channel`, so `plane % c` is the channel.
const SOURCE: &str = r#"
extern "C" __global__ void dw_forward(
    const float* x, const float* w, float* y,
    int n, int c, int h, int wd, int k, int stride, int pad, int ho, int wo) {
  long long total = (long long)n * c * ho * wo;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    int ow = i % wo;
    long long t = i / wo;
    int oh = t % ho;
    long long plane = t / ho;
    int ch = plane % c;
    const float* xp = x + plane * h * wd;
    const float* wp = w + ch * k * k;
    int ih0 = oh * stride - pad, iw0 = ow * stride - pad;
    float acc = 0.f;
    for (int ki = 0; ki < k; ++ki) {
      int ih = ih0 + ki;
      if (ih < 0 || ih >= h) continue;
      for (int kj = 0; kj < k; ++kj) {
        int iw = iw0 + kj;
        if (iw < 0 || iw >= wd) continue;
        acc += wp[ki * k + kj] * xp[ih * wd + iw];
      }
    }
    y[i] = acc;
  }
}

extern "C" __global__ void dw_grad_input(
    const float* gy, const float* w, float* gx,
    int n, int c, int h, int wd, int k, int stride, int pad, int ho, int wo) {
  long long total = (long long)n * c * h * wd;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)blockDim.x * gridDim.x) {
    int iw = i % wd;
    long long t = i / wd;
    int ih = t % h;
    long long plane = t / h;
    int ch = plane % c;
    const float* gp = gy + plane * ho * wo;
    const float* wp = w + ch * k * k;
    float acc = 0.f;
    for (int ki = 0; ki < k; ++ki) {
      int a = ih + pad - ki;
      if (a < 0 || a % stride != 0) continue;
      int oh = a / stride;
      if (oh >= ho) continue;
      for (int kj = 0; kj < k; ++kj) {
        int b = iw + pad - kj;
        if (b < 0 || b % stride != 0) continue;
        int ow = b / stride;
        if (ow >= wo) continue;
        acc += wp[ki * k + kj] * gp[oh * wo + ow];
      }
    }
    gx[i] = acc;
  }
}

// One block per (channel, tap): the sum over samples and output positions.
extern "C" __global__ void dw_grad_kernel(
    const float* x, const float* gy, float* gw,
    int n, int c, int h, int wd, int k, int stride, int pad, int ho, int wo) {
  __shared__ float partial[256];
  int ch = blockIdx.x / (k * k);
  int tap = blockIdx.x % (k * k);
  int ki = tap / k, kj = tap % k;
  long long per = (long long)ho * wo;
  long long total = (long long)n * per;
  float acc = 0.f;
  for (long long i = threadIdx.x; i < total; i += blockDim.x) {
    long long s = i / per;
    long long r = i % per;
    int oh = r / wo, ow = r % wo;
    int ih = oh * stride - pad + ki, iw = ow * stride - pad + kj;
    if (ih >= 0 && ih < h && iw >= 0 && iw < wd) {
      long long plane = s * c + ch;
      acc += gy[plane * per + r] * x[plane * h * wd + ih * wd + iw];
    }
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) gw[blockIdx.x] = partial[0];
}
"#;

/// The kernels as PTX, compiled on first use (the error, if any, is kept and repeated).
fn ptx() -> candle_core::Result<&'static str> {
    static PTX: OnceLock<Result<String, String>> = OnceLock::new();
    PTX.get_or_init(|| {
        compile_ptx(SOURCE)
            .map(|p| p.to_src())
            .map_err(|e| format!("{e:?}"))
    })
    .as_deref()
    .map_err(|e| candle_core::Error::Msg(format!("depthwise conv: NVRTC failed: {e}")))
}

/// Sizes passed to every kernel, as the kernels' `int` arguments.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Sizes {
    fn ints(&self) -> candle_core::Result<[i32; 9]> {
        let all = [
            self.n,
            self.c,
            self.h,
            self.w,
            self.k,
            self.stride,
            self.pad,
            self.ho,
            self.wo,
        ];
        let mut out = [0i32; 9];
        for (o, v) in out.iter_mut().zip(all) {
            *o = i32::try_from(v).map_err(|_| {
                candle_core::Error::Msg(format!("depthwise conv: size {v} too large for CUDA"))
            })?;
        }
        Ok(out)
    }
}

/// The contiguous f32 data of a storage.
fn view<'a>(storage: &'a CudaStorage, layout: &Layout) -> candle_core::Result<CudaView<'a, f32>> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("depthwise conv: inputs must be contiguous")
    };
    Ok(storage.as_cuda_slice::<f32>()?.slice(start..end))
}

/// Which kernel to run.
#[derive(Debug, Clone, Copy)]
pub enum Kernel {
    /// `(x, w) → y`, `n·c·ho·wo` values.
    Forward,
    /// `(grad_y, w) → grad_x`, `n·c·h·w` values.
    GradInput,
    /// `(x, grad_y) → grad_w` (the gradient to the kernel weights), `c·k·k` values.
    GradWeight,
}

/// Run `kernel` on the two (contiguous, f32) inputs; returns the output's storage.
// A kernel launch is unsafe by nature (the driver cannot check the arguments): the one `unsafe`
// block below passes exactly the kernels' parameters, over buffers of the sizes they index.
#[allow(unsafe_code)]
pub fn launch(
    kernel: Kernel,
    sizes: Sizes,
    (a, a_layout): (&CudaStorage, &Layout),
    (b, b_layout): (&CudaStorage, &Layout),
) -> candle_core::Result<CudaStorage> {
    let device: &CudaDevice = a.device();
    let (name, len, config) = match kernel {
        Kernel::Forward => {
            let len = sizes.n * sizes.c * sizes.ho * sizes.wo;
            ("dw_forward", len, elementwise(len)?)
        }
        Kernel::GradInput => {
            let len = sizes.n * sizes.c * sizes.h * sizes.w;
            ("dw_grad_input", len, elementwise(len)?)
        }
        Kernel::GradWeight => {
            let len = sizes.c * sizes.k * sizes.k;
            let blocks = u32::try_from(len)
                .map_err(|_| candle_core::Error::Msg("depthwise conv: too many channels".into()))?;
            let config = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (REDUCE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            ("dw_grad_kernel", len, config)
        }
    };
    let ints = sizes.ints()?;
    let function = device.get_or_load_custom_func(name, MODULE, ptx()?)?;
    let (a, b) = (view(a, a_layout)?, view(b, b_layout)?);
    let out = device.alloc_zeros::<f32>(len)?;
    let mut builder = function.builder();
    builder.arg(&a);
    builder.arg(&b);
    builder.arg(&out);
    for v in &ints {
        builder.arg(v);
    }
    // SAFETY: the arguments match the kernel's signature (three pointers, nine ints) and the
    // buffers hold the sizes the kernel indexes.
    unsafe { builder.launch(config) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, device.clone()))
}

/// A grid-stride launch over `len` elements (capped grid; the kernels loop).
fn elementwise(len: usize) -> candle_core::Result<LaunchConfig> {
    let len = u32::try_from(len.min(1 << 30))
        .map_err(|_| candle_core::Error::Msg("depthwise conv: tensor too large".into()))?;
    Ok(LaunchConfig::for_num_elems(len.max(1)))
}
