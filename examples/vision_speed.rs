//! Training throughput and single-image latency of MobileNetV2 (or another backbone) in exeml
//! (the numbers `benches/vision/run.sh` compares with PyTorch on the same CPU):
//!
//! ```text
//! cargo run --release --example vision_speed -- [RESOLUTION] [BATCH] [--device cuda:0] [--latency-only]
//!     [--backbone mobilenet_v2|efficientnet_lite0|resnet18|resnet34|resnet50|convnext_atto|…]
//! cargo run --release --example vision_speed -- --model MODEL_DIR
//! ```
//!
//! `--device` (default `cpu`; `cuda:N` needs `--features cuda`) runs both measurements there;
//! the clock stops only after the device has finished its queued work. `--latency-only` skips
//! training (for profiling inference).
//!
//! Prints one JSON line: `train_images_per_s` (forward + backward + AdamW step of the whole
//! network and a 10-class head, batch norm folded), `latency_ms` (median of single-image
//! inference: backbone + pooling + head) and the settings. With `--model`, the median
//! single-image latency of a trained model (preprocessing, backbone, head; decoding excluded)
//! and its size on disk.

use candle_core::{DType, Tensor, D};
use exeml::vision::finetune::trainable_copy;
use exeml::vision::nn::on_workers;
use exeml::vision::optim::{OptimizerKind, Stepper};
use exeml::vision::BackboneKind;
use std::time::Instant;

#[path = "shared/backbones.rs"]
mod backbones;

// The allocator the `exeml` binary uses, so the numbers are the CLI's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The `exeml` binary's thread settings, so the numbers are the CLI's.
    exeml::vision::nn::shorten_candle_spins();
    exeml::allocator::keep_freed_memory();
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "--model") {
        let dir = std::path::PathBuf::from(args.get(2).ok_or("--model needs a folder")?);
        return model_latency(&dir);
    }
    let mut target = exeml::core::Device::Cpu;
    if let Some(at) = args.iter().position(|a| a == "--device") {
        target = args.get(at + 1).ok_or("--device needs a value")?.parse()?;
        args.drain(at..at + 2);
    }
    let mut kind = BackboneKind::MobilenetV2;
    if let Some(at) = args.iter().position(|a| a == "--backbone") {
        kind = args.get(at + 1).ok_or("--backbone needs a name")?.parse()?;
        args.drain(at..at + 2);
    }
    let latency_only = args.iter().any(|a| a == "--latency-only");
    args.retain(|a| a != "--latency-only");
    let side: usize = args.get(1).map_or(Ok(224), |a| a.parse())?;
    let batch: usize = args.get(2).map_or(Ok(32), |a| a.parse())?;
    let device = target.to_candle()?;
    let backbone = backbones::installed_or_random(kind, &device)?;
    let dim = kind.feature_dim();

    // Training: every block trainable, a 10-class linear head, cross-entropy, AdamW.
    let (blocks, mut vars) = trainable_copy(backbone.blocks())?;
    let head = candle_core::Var::randn(0f32, 0.01, (dim, 10), &device)?;
    vars.push(head.clone());
    // The fine-tuning's optimiser (fused on the CPU), at candle's and PyTorch's AdamW defaults.
    let mut optimizer = Stepper::new(OptimizerKind::Adamw, vars, 1e-3, 0.01)?;
    let x = Tensor::randn(0f32, 1.0, (batch, 3, side, side), &device)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let labels = Tensor::new(labels.as_slice(), &device)?;
    let mut step = || -> candle_core::Result<()> {
        let mut y = x.clone();
        for block in &blocks {
            y = block.forward(&y)?;
        }
        let logits = y.mean((2, 3))?.matmul(head.as_tensor())?;
        let loss =
            candle_nn::loss::nll(&candle_nn::ops::log_softmax(&logits, D::Minus1)?, &labels)?;
        optimizer.backward_step(&loss)
    };
    let steps = match (latency_only, device.is_cpu()) {
        (true, _) => 0,
        (false, true) => 8,
        (false, false) => 50,
    };
    if steps > 0 {
        step()?; // warm-up
    }
    device.synchronize()?;
    let t0 = Instant::now();
    for _ in 0..steps {
        // On the CPU pool's workers, as the product's fine-tuning epochs run.
        on_workers(&mut step)?;
    }
    device.synchronize()?;
    let train_images_per_s = (steps * batch) as f64 / t0.elapsed().as_secs_f64().max(1e-9);

    // Latency: one image through the frozen backbone and a head.
    let one = Tensor::randn(0f32, 1.0, (1, 3, side, side), &device)?;
    let head = Tensor::zeros((dim, 10), DType::F32, &device)?;
    let mut times = Vec::new();
    let runs = if latency_only { 300 } else { 60 };
    for i in 0..runs {
        let t = Instant::now();
        // On the pool's workers, as a prediction runs.
        on_workers(|| -> Result<(), String> {
            let scores = backbone.features(&one).map_err(|e| e.to_string())?;
            let scores = scores.matmul(&head).map_err(|e| e.to_string())?;
            scores.to_vec2::<f32>().map_err(|e| e.to_string())?;
            Ok(())
        })?;
        if i >= 10 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let latency_ms = times[times.len() / 2];
    println!(
        "{{\"framework\": \"exeml\", \"backbone\": \"{kind}\", \"device\": \"{target}\", \
         \"resolution\": {side}, \"batch\": {batch}, \"train_images_per_s\": {train_images_per_s:.2}, \
         \"latency_ms\": {latency_ms:.3}}}"
    );
    Ok(())
}

/// Median latency of one prediction of a trained model, and the model folder's size.
fn model_latency(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let model = exeml::vision::ImageModel::load(dir)?;
    let image = image::RgbImage::from_fn(96, 96, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, 128])
    });
    let mut times = Vec::new();
    for i in 0..60 {
        let t = Instant::now();
        let _ = model.predict_image(&image)?;
        if i >= 10 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let bytes: u64 = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{{\"backbone\": \"{}\", \"resolution\": {}, \"fine_tuned\": {}, \"latency_ms\": {:.3}, \"size_mb\": {:.1}}}",
        model.manifest.backbone,
        model.manifest.resolution,
        model.manifest.fine_tune.is_some(),
        times[times.len() / 2],
        bytes as f64 / 1e6
    );
    Ok(())
}
