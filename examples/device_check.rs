//! Checks that a GPU build computes what the CPU computes: each backbone family's features and
//! the gradients of a whole-network training step, on the same random inputs (MobileNetV2 and
//! EfficientNet-Lite0 with their installed weights; ConvNeXt-Atto and ViT-Tiny with seeded random
//! ones unless they are in the hub cache).
//!
//! ```text
//! cargo run --release --features cuda --example device_check -- cuda:0
//! ```
//!
//! Prints one JSON line per check (`max_abs_diff`, `scale` = largest CPU magnitude, `ok`) and
//! exits with status 1 if any relative difference is above 1e-3 (1e-2 for gradients) or a
//! backbone fails on the device (reported as a check with its error; the others still run).
//! Needs the installable weights (`EXEML_WEIGHTS_DIR`, see scripts/setup.sh).

use candle_core::{Device, Tensor, D};
use exeml::vision::finetune::trainable_copy;
use exeml::vision::nn::{depthwise_conv2d, shifted_depthwise_conv2d};
use exeml::vision::{Backbone, BackboneKind};

#[path = "shared/backbones.rs"]
mod backbones;

/// Largest relative difference a forward check accepts (f32, different summation orders).
const TOLERANCE: f32 = 1e-3;
/// The same for gradients, whose rounding differences grow through every layer of the backward
/// pass (MobileNetV2's first layer is 19 blocks from the loss: about 1e-3 seen on an H200).
const GRADIENT_TOLERANCE: f32 = 1e-2;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target: exeml::core::Device = std::env::args()
        .nth(1)
        .ok_or("usage: device_check cuda:N")?
        .parse()?;
    let gpu = target.to_candle()?;
    let cpu = Device::Cpu;
    let failed = std::cell::Cell::new(0);
    let mut report = |name: &str, ours: &Tensor, reference: &Tensor| -> candle_core::Result<()> {
        let tolerance = if name.contains("gradient") {
            GRADIENT_TOLERANCE
        } else {
            TOLERANCE
        };
        let ours = ours.to_device(&cpu)?;
        let diff = (ours - reference)?.abs()?.flatten_all()?.max(0)?;
        let diff = diff.to_scalar::<f32>()?;
        let scale = reference.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let ok = scale > 0.0 && diff <= tolerance * scale;
        failed.set(failed.get() + usize::from(!ok));
        println!(
            "{{\"check\": \"{name}\", \"device\": \"{target}\", \"max_abs_diff\": {diff:e}, \
             \"scale\": {scale:e}, \"ok\": {ok}}}"
        );
        Ok(())
    };

    // Depthwise convolution on the device, both paths (its own kernels where the build has them,
    // shifted slices elsewhere) against the CPU kernels: MobileNet's 3×3 and ConvNeXt's 7×7.
    for (size, pad) in [(3, 1), (7, 3)] {
        for stride in [1, 2] {
            let x = Tensor::randn(0f32, 1.0, (2, 16, 15, 14), &cpu)?;
            let k = Tensor::randn(0f32, 1.0, (16, 1, size, size), &cpu)?;
            let reference = depthwise_conv2d(&x, &k, stride, pad)?;
            let (x, k) = (x.to_device(&gpu)?, k.to_device(&gpu)?);
            let ours = depthwise_conv2d(&x, &k, stride, pad)?;
            report(
                &format!("depthwise {size}x{size} stride {stride}"),
                &ours,
                &reference,
            )?;
            let shifted = shifted_depthwise_conv2d(&x, &k, stride, pad)?;
            report(
                &format!("shifted depthwise {size}x{size} stride {stride}"),
                &shifted,
                &reference,
            )?;
        }
    }

    let images = Tensor::randn(0f32, 1.0, (4, 3, 96, 96), &cpu)?;
    for kind in [
        BackboneKind::MobilenetV2,
        BackboneKind::EfficientnetLite0,
        BackboneKind::ConvnextAtto,
        BackboneKind::VitTiny,
    ] {
        if let Err(e) = check_backbone(kind, &images, &gpu, &mut report) {
            failed.set(failed.get() + 1);
            let error = e.to_string().replace('"', "'");
            println!(
                "{{\"check\": \"{kind}\", \"device\": \"{target}\", \"error\": \"{error}\", \
                 \"ok\": false}}"
            );
        }
    }
    let failed = failed.get();
    if failed > 0 {
        eprintln!("{failed} check(s) differ between cpu and {target}");
        std::process::exit(1);
    }
    Ok(())
}

/// `kind`'s features and one whole-network training step's gradients (first and last layer) on
/// `gpu` against the CPU, each passed to `report`.
fn check_backbone(
    kind: BackboneKind,
    images: &Tensor,
    gpu: &Device,
    report: &mut impl FnMut(&str, &Tensor, &Tensor) -> candle_core::Result<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    let cpu = Device::Cpu;
    let on_cpu = backbones::installed_or_random(kind, &cpu)?;
    let on_gpu = backbones::installed_or_random(kind, gpu)?;
    let reference = on_cpu.features(images)?;
    let ours = on_gpu.features(&images.to_device(gpu)?)?;
    report(&format!("{kind} features"), &ours, &reference)?;

    // One training step's gradients: every block trainable, the same random linear head.
    let labels: Vec<u32> = vec![0, 1, 2, 3];
    let head = Tensor::randn(0f32, 1.0, (reference.dim(1)?, 4), &cpu)?;
    let gradients = |backbone: &Backbone, device: &Device| -> candle_core::Result<_> {
        let (blocks, vars) = trainable_copy(backbone.blocks()).map_err(to_candle)?;
        let mut y = images.to_device(device)?;
        for block in &blocks {
            y = block.forward(&y)?;
        }
        let pooled = y.mean((2, 3))?;
        let logits = pooled.matmul(&head.to_device(device)?)?;
        let labels = Tensor::new(labels.as_slice(), device)?;
        let loss =
            candle_nn::loss::nll(&candle_nn::ops::log_softmax(&logits, D::Minus1)?, &labels)?;
        let grads = loss.backward()?;
        let first = grads.get(&vars[0]).cloned();
        let last = grads.get(&vars[vars.len() - 2]).cloned();
        Ok((first, last))
    };
    let (cpu_first, cpu_last) = gradients(&on_cpu, &cpu)?;
    let (gpu_first, gpu_last) = gradients(&on_gpu, gpu)?;
    for (name, ours, reference) in [
        ("first-layer gradient", gpu_first, cpu_first),
        ("last-layer gradient", gpu_last, cpu_last),
    ] {
        let (Some(ours), Some(reference)) = (ours, reference) else {
            return Err(format!("{kind}: no {name}").into());
        };
        report(&format!("{kind} {name}"), &ours, &reference)?;
    }
    Ok(())
}

fn to_candle(e: exeml::core::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}
