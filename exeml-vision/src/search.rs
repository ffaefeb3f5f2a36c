//! The search space of image classification and its schedule by preference: which backbones at
//! which resolution with how many augmented views, then a grid over the head's regularisation.
//! Cheap configurations come first, so the budget always yields a model.

use crate::backbone::BackboneKind;
use crate::finetune::{FineTuneParams, Mixing};
use crate::head::HeadParams;
use crate::optim::OptimizerKind;
use exeml_core::Preference;
use serde::{Deserialize, Serialize};

/// A backbone configuration to try: features are extracted once per candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The backbone.
    pub backbone: BackboneKind,
    /// Square input size.
    pub resolution: u32,
    /// Augmented views per training image besides the plain one.
    pub augmented_views: usize,
}

/// One row of the leaderboard: a candidate with one head, or why it was not tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageTrial {
    /// The backbone configuration.
    #[serde(flatten)]
    pub candidate: Candidate,
    /// The head's hyper-parameters.
    pub head: HeadParams,
    /// Validation accuracy (single-label) or macro F1 (multi-label); `None` if not trained.
    pub score: Option<f64>,
    /// Validation loss of the head (lower is better; breaks ties).
    pub loss: Option<f64>,
    /// Seconds spent (feature extraction is counted on the candidate's first head).
    pub seconds: f64,
    /// `ok`, or why the configuration was skipped.
    pub status: String,
    /// The fine-tuning configuration, for rows that fine-tuned the backbone's top blocks
    /// (absent for linear probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<FineTuneParams>,
    /// Epochs of fine-tuning done (successive halving stops weak configurations early).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Median milliseconds for one image through the network on the training device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Megabytes of the model folder this row would save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mb: Option<f64>,
    /// For a fine-tuned ensemble's row: the leaderboard rows of its members (their weights are
    /// in the manifest's `ensemble`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<usize>,
}

/// The backbone configurations for a preference, cheapest first; `backbones` restricts them and
/// `resolution` fixes the input size.
pub fn candidates(
    preference: Preference,
    backbones: &[BackboneKind],
    resolution: Option<u32>,
) -> Vec<Candidate> {
    use BackboneKind::{EfficientnetLite0 as Lite0, MobilenetV2 as V2};
    let plan: &[(BackboneKind, u32, usize)] = match preference {
        Preference::PerformanceFirst => &[(V2, 160, 1), (V2, 224, 1)],
        Preference::Balance => &[(V2, 224, 1), (Lite0, 224, 1)],
        Preference::AccuracyFirst => &[(V2, 224, 2), (Lite0, 224, 2), (Lite0, 256, 2)],
    };
    let mut out: Vec<Candidate> = Vec::new();
    for &(backbone, res, views) in plan {
        if !backbones.is_empty() && !backbones.contains(&backbone) {
            continue;
        }
        let c = Candidate {
            backbone,
            resolution: resolution.unwrap_or(res),
            augmented_views: views,
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        // Only backbones outside the plan were asked for: one configuration each.
        out = backbones
            .iter()
            .map(|&backbone| Candidate {
                backbone,
                resolution: resolution.unwrap_or(224),
                augmented_views: 1,
            })
            .collect();
    }
    out
}

/// The heads tried on each candidate's features: the L2 penalty over three or four decades.
pub fn head_grid(preference: Preference) -> Vec<HeadParams> {
    // L2 penalties on the mean loss: with ~2,000 rows, 1e-3 is scikit-learn's C ≈ 0.5. A
    // converged fit of a linear head costs about a second, so the grids are cheap.
    let decays: &[f64] = match preference {
        Preference::PerformanceFirst => &[1e-3, 1e-2, 1e-1],
        Preference::Balance => &[1e-4, 1e-3, 1e-2, 1e-1],
        Preference::AccuracyFirst => &[3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
    };
    decays
        .iter()
        .map(|&weight_decay| HeadParams {
            weight_decay,
            ..HeadParams::default()
        })
        .collect()
}

/// How fine-tuned models are ensembled, by preference: at most this many greedy picks and
/// distinct members (`performance_first` keeps one model: every member costs latency).
pub fn ensemble_limits(preference: Preference) -> (usize, usize) {
    match preference {
        Preference::PerformanceFirst => (1, 1),
        Preference::Balance => (10, 3),
        Preference::AccuracyFirst => (20, 5),
    }
}

/// The most a fine-tuning run of the preference's plan may be lengthened to, as a multiple of
/// its planned epochs, when the budget affords more than the plan (on a GPU an epoch takes
/// seconds; a long limit on a CPU): `performance_first` returns as soon as its plan is done,
/// `balance` spends up to four times the plan, `accuracy_first` up to eight.
pub fn stretch_limit(preference: Preference) -> usize {
    match preference {
        Preference::PerformanceFirst => 1,
        Preference::Balance => 4,
        Preference::AccuracyFirst => 8,
    }
}

/// `unfrozen_blocks` of an arm that tunes every block, stem included (trimmed to the backbone's
/// block count before training).
pub const WHOLE_NETWORK: usize = usize::MAX;

/// The fine-tuning configurations successive halving starts from, best guess first. Balance and
/// accuracy-first unfreeze more blocks and try mixup/cutmix (accuracy-first also SGD);
/// performance-first only tunes the last two blocks briefly. On an accelerator (`accelerator`: CUDA or Metal), where a step of
/// the whole network costs little, balance and accuracy-first also tune the whole network, first.
pub fn fine_tune_arms(preference: Preference, accelerator: bool) -> Vec<FineTuneParams> {
    let arm = |unfrozen_blocks, learning_rate, mixing, max_epochs| FineTuneParams {
        unfrozen_blocks,
        learning_rate,
        mixing,
        max_epochs,
        ..FineTuneParams::default()
    };
    let mixup = Mixing::Mixup { alpha: 0.2 };
    let cutmix = Mixing::Cutmix { alpha: 1.0 };
    let whole: Vec<FineTuneParams> = match (accelerator, preference) {
        (false, _) | (true, Preference::PerformanceFirst) => Vec::new(),
        (true, Preference::Balance) => vec![arm(WHOLE_NETWORK, 3e-4, mixup, 12)],
        (true, Preference::AccuracyFirst) => vec![
            arm(WHOLE_NETWORK, 3e-4, mixup, 20),
            arm(WHOLE_NETWORK, 1e-4, cutmix, 20),
        ],
    };
    let blocks = match preference {
        Preference::PerformanceFirst => vec![arm(2, 1e-3, Mixing::None, 4)],
        Preference::Balance => vec![
            arm(2, 1e-3, Mixing::None, 8),
            arm(5, 3e-4, Mixing::None, 8),
            arm(5, 1e-3, mixup, 8),
            arm(5, 3e-4, cutmix, 8),
        ],
        Preference::AccuracyFirst => vec![
            arm(2, 1e-3, Mixing::None, 15),
            arm(5, 3e-4, Mixing::None, 15),
            arm(5, 1e-3, mixup, 15),
            arm(5, 3e-4, cutmix, 15),
            arm(8, 3e-4, Mixing::None, 15),
            arm(8, 3e-4, mixup, 15),
            arm(8, 1e-4, cutmix, 15),
            arm(2, 3e-4, mixup, 15),
            // Another optimiser for the ensemble's sake, when the budget affords a ninth arm
            // (SGD validated as well as AdamW on the benchmark, and errs differently).
            FineTuneParams {
                optimizer: OptimizerKind::Sgd { momentum: 0.9 },
                weight_decay: 3e-3,
                ..arm(5, 1e-3, Mixing::None, 15)
            },
        ],
    };
    whole.into_iter().chain(blocks).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_network_arms_only_on_an_accelerator_and_first() {
        for p in [Preference::Balance, Preference::AccuracyFirst] {
            let cpu = fine_tune_arms(p, false);
            assert!(cpu.iter().all(|a| a.unfrozen_blocks < WHOLE_NETWORK));
            let gpu = fine_tune_arms(p, true);
            assert_eq!(gpu[0].unfrozen_blocks, WHOLE_NETWORK);
            assert_eq!(gpu[gpu.len() - cpu.len()..], cpu[..]);
        }
        assert_eq!(
            fine_tune_arms(Preference::PerformanceFirst, true),
            fine_tune_arms(Preference::PerformanceFirst, false)
        );
    }

    #[test]
    fn every_preference_starts_with_the_cheapest_backbone() {
        for p in [
            Preference::PerformanceFirst,
            Preference::Balance,
            Preference::AccuracyFirst,
        ] {
            let c = candidates(p, &[], None);
            assert_eq!(c[0].backbone, BackboneKind::MobilenetV2, "{p:?}");
            assert!(!head_grid(p).is_empty());
        }
    }

    #[test]
    fn restricting_backbones_and_fixing_resolution_is_honoured() {
        let c = candidates(
            Preference::Balance,
            &[BackboneKind::EfficientnetLite0],
            Some(96),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].backbone, BackboneKind::EfficientnetLite0);
        assert_eq!(c[0].resolution, 96);
        // Fixing the resolution merges configurations that only differed in it.
        let c = candidates(Preference::PerformanceFirst, &[], Some(64));
        assert_eq!(c.len(), 1);
    }
}
