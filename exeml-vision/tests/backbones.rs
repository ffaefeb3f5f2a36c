//! The candle backbones against an independent numpy implementation
//! (`tests/fixtures/reference_backbones.py`) on a deterministic input: same pooled features and
//! ImageNet logits. Runs where the weight packages are installed (CI installs them; elsewhere
//! set `EXEML_WEIGHTS_DIR`), and fails under `CI=true` when they are missing.

use candle_core::{Device, Tensor};
use exeml_vision::{Backbone, BackboneKind};

/// `x[c, i, j] = sin(0.1 (i+1)(c+1)) · cos(0.07 (j+2))`, 1×3×64×64.
fn test_input() -> Tensor {
    let side = 64;
    let mut v = Vec::with_capacity(3 * side * side);
    for c in 0..3 {
        for i in 0..side {
            for j in 0..side {
                let a = (0.1 * (i + 1) as f64 * (c + 1) as f64).sin();
                let b = (0.07 * (j + 2) as f64).cos();
                v.push((a * b) as f32);
            }
        }
    }
    Tensor::from_vec(v, (1, 3, side, side), &Device::Cpu).expect("input")
}

fn load(kind: BackboneKind) -> Option<Backbone> {
    match Backbone::load(kind, None, &Device::Cpu) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{kind}: weights must be installed in CI: {e}")
        }
        Err(e) => {
            eprintln!("skipping {kind}: {e}");
            None
        }
    }
}

fn check(kind: BackboneKind, features: [f32; 4], logits: [f32; 4], argmax: usize) {
    let Some(backbone) = load(kind) else { return };
    let x = test_input();
    let f: Vec<f32> = backbone
        .features(&x)
        .expect("features")
        .flatten_all()
        .expect("flat")
        .to_vec1()
        .expect("vec");
    assert_eq!(f.len(), 1280);
    for (got, want) in f.iter().zip(features) {
        assert!(
            (got - want).abs() < 2e-3,
            "{kind} features: {got} vs {want}"
        );
    }
    let l: Vec<f32> = backbone
        .imagenet_logits(&x)
        .expect("logits")
        .expect("the checkpoint has the classifier")
        .flatten_all()
        .expect("flat")
        .to_vec1()
        .expect("vec");
    for (got, want) in l.iter().zip(logits) {
        assert!((got - want).abs() < 1e-2, "{kind} logits: {got} vs {want}");
    }
    let best = l
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    assert_eq!(best, Some(argmax), "{kind}");
}

#[test]
fn mobilenet_v2_matches_the_numpy_reference() {
    // python3 tests/fixtures/reference_backbones.py mobilenet_v2-b0353104.pth …
    check(
        BackboneKind::MobilenetV2,
        [0.0, 0.06123, 0.19384, 0.75121],
        [-4.7564, 5.7845, -4.2161, -2.6895],
        800,
    );
}

#[test]
fn efficientnet_lite0_matches_the_numpy_reference() {
    check(
        BackboneKind::EfficientnetLite0,
        [0.0, 0.0, 0.0, 0.0],
        [-0.9276, 1.1791, -0.6411, -1.898],
        761,
    );
}
