//! The fine-tuning search: successive halving over fine-tuning configurations ("arms": how many
//! blocks to unfreeze, learning rate, mixing). Every arm trains one epoch, the better half goes
//! on to two, then four…, until one is left, which trains to its end (or early stop). Epochs are
//! the fidelity, so a weak configuration costs one epoch, not a full run; an epoch is only
//! started when the budget can afford it at the arm's measured speed.

use crate::backbone::Backbone;
use crate::finetune::{Activations, FineTuneParams, FineTuner, Snapshot};
use crate::head::LinearHead;
use exeml_core::{Budget, Progress, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What happened to one arm.
#[derive(Debug, Clone)]
pub struct ArmOutcome {
    /// Its configuration.
    pub params: FineTuneParams,
    /// Its best state (none if not a single epoch finished).
    pub best: Option<Snapshot>,
    /// The backbone's first trained block.
    pub first_block: usize,
    /// Epochs trained.
    pub epochs: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// `ok`, or why it stopped.
    pub status: String,
}

/// Activations entering the first trained block of each arm, computed once per block.
struct Cache<'a> {
    backbone: &'a Backbone,
    split: usize,
    train: &'a Activations,
    valid: &'a Activations,
    at: BTreeMap<usize, (Activations, Activations)>,
}

impl Cache<'_> {
    fn ensure(&mut self, first: usize) -> Result<()> {
        if first != self.split && !self.at.contains_key(&first) {
            let t = self.train.advance(self.backbone, self.split, first)?;
            let v = self.valid.advance(self.backbone, self.split, first)?;
            self.at.insert(first, (t, v));
        }
        Ok(())
    }

    fn get(&self, first: usize) -> (&Activations, &Activations) {
        match self.at.get(&first) {
            Some((t, v)) => (t, v),
            None => (self.train, self.valid),
        }
    }
}

/// Run successive halving over `arms`, starting from `backbone` and the linear-probe `head`;
/// `train`/`valid` are the activations entering block `split` (arms unfreezing fewer blocks
/// start deeper; arms unfreezing more are left out). Returns every arm's outcome.
#[allow(clippy::too_many_arguments)]
pub fn successive_halving(
    backbone: &Backbone,
    head: &LinearHead,
    arms: &[FineTuneParams],
    split: usize,
    train: &Activations,
    valid: &Activations,
    classes: usize,
    seed: u64,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<Vec<ArmOutcome>> {
    let blocks = backbone.blocks().len();
    let mut cache = Cache {
        backbone,
        split,
        train,
        valid,
        at: BTreeMap::new(),
    };
    let arms: Vec<FineTuneParams> = arms
        .iter()
        .filter(|a| (1..=blocks.saturating_sub(split)).contains(&a.unfrozen_blocks))
        .copied()
        .collect();
    for arm in &arms {
        cache.ensure(blocks - arm.unfrozen_blocks)?;
    }
    let mut runs: Vec<Run<'_>> = Vec::new();
    for (i, arm) in arms.iter().enumerate() {
        let (t, v) = cache.get(blocks - arm.unfrozen_blocks);
        let tuner = FineTuner::new(backbone, head, *arm, t, v, classes, seed ^ i as u64)?;
        runs.push(Run {
            tuner,
            seconds: 0.0,
            status: "ok".to_string(),
        });
    }
    let mut alive: Vec<usize> = (0..runs.len()).collect();
    let mut rung_epochs = 1usize;
    let mut out_of_budget = false;
    while !alive.is_empty() && !out_of_budget {
        let last = alive.len() == 1;
        for &i in &alive {
            let until = (!last).then_some(rung_epochs);
            if !runs[i].train(until, budget, progress)? {
                out_of_budget = true;
                break;
            }
        }
        if last || out_of_budget {
            break;
        }
        // Keep the better half (by validation score, then loss).
        alive.sort_by(|&a, &b| rank(runs[b].tuner.best()).total_cmp(&rank(runs[a].tuner.best())));
        let keep = alive.len().div_ceil(2);
        for &i in &alive[keep..] {
            runs[i].status = format!("stopped after {rung_epochs} epoch(s): successive halving");
        }
        alive.truncate(keep);
        rung_epochs *= 2;
    }
    if !out_of_budget {
        out_of_budget = resume_halted(&mut runs, budget, progress)?;
    }
    Ok(runs
        .into_iter()
        .map(
            |Run {
                 tuner,
                 seconds,
                 status,
             }| {
                // Arms the budget did not reach, or stopped between rungs, say so.
                let status = match (
                    out_of_budget && status == "ok" && !tuner.finished(),
                    tuner.epochs(),
                ) {
                    (false, _) => status,
                    (true, 0) => "skipped: budget ran out".to_string(),
                    (true, _) => "stopped: budget ran out".to_string(),
                };
                ArmOutcome {
                    params: *tuner.params(),
                    best: tuner.best().cloned(),
                    first_block: tuner.first_block(),
                    epochs: tuner.epochs(),
                    seconds,
                    status,
                }
            },
        )
        .collect())
}

/// With budget left after the halving (the last arm early-stopped or finished), train the arms
/// it stopped on to their own end, best first, while the budget affords their next epoch.
/// Halving judges every arm after one epoch, which favours arms that learn fast over those that
/// learn better (mixup, cutmix, low learning rates): Hyperband's reason for its later brackets,
/// here paid for only by time that would otherwise be returned unused. Returns true when the
/// budget ran out.
fn resume_halted(runs: &mut [Run<'_>], budget: &Budget, progress: &dyn Progress) -> Result<bool> {
    let mut halted: Vec<usize> = (0..runs.len())
        .filter(|&i| !runs[i].tuner.finished() && runs[i].tuner.best().is_some())
        .collect();
    halted.sort_by(|&a, &b| rank(runs[b].tuner.best()).total_cmp(&rank(runs[a].tuner.best())));
    for i in halted {
        let run = &mut runs[i];
        let (before, halted_status) = (run.tuner.epochs(), run.status.clone());
        let completed = run.train(None, budget, progress)?;
        run.status = if run.tuner.epochs() == before {
            halted_status
        } else {
            format!(
                "resumed after {before} epoch(s) of successive halving, with the budget left{}",
                if completed {
                    ""
                } else {
                    "; stopped: budget ran out"
                }
            )
        };
        if !completed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One arm under search: its tuner, the seconds it has taken and its status.
struct Run<'a> {
    tuner: FineTuner<'a>,
    seconds: f64,
    status: String,
}

impl Run<'_> {
    /// Train until the arm finishes or has `until` epochs (`None`: to its end). Returns false
    /// when the budget stopped it.
    fn train(
        &mut self,
        until: Option<usize>,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<bool> {
        let tuner = &mut self.tuner;
        while !tuner.finished() && until.is_none_or(|n| tuner.epochs() < n) {
            // An epoch costs what the last one did; an arm's first is estimated from its size
            // relative to the others (or allowed once while nothing else is known).
            let estimate = tuner.seconds_per_epoch().unwrap_or(0.0);
            if budget.exhausted() || !budget.allows(Duration::from_secs_f64(estimate)) {
                self.status = "stopped: budget ran out".into();
                return Ok(false);
            }
            progress.phase(&format!(
                "fine-tuning the last {} blocks (lr {}, {:?}): epoch {}",
                tuner.params().unfrozen_blocks,
                tuner.params().learning_rate,
                tuner.params().mixing,
                tuner.epochs() + 1
            ));
            let t0 = Instant::now();
            let completed = tuner.epoch(budget)?;
            self.seconds += t0.elapsed().as_secs_f64();
            progress.fraction(budget.fraction_used());
            if !completed {
                self.status = "stopped: budget ran out".into();
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// A single number ordering snapshots: score first, validation loss breaking ties.
pub fn rank(best: Option<&Snapshot>) -> f64 {
    best.map_or(f64::NEG_INFINITY, |s| s.score * 1e6 - s.loss.min(1e5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::{toy, Mixing};

    #[test]
    fn halving_keeps_the_better_half_each_rung_then_resumes_the_halted_arms_with_the_budget_left() {
        let (backbone, head, train, valid) = toy::problem(3);
        let arm = |unfrozen_blocks, learning_rate, mixing| FineTuneParams {
            unfrozen_blocks,
            learning_rate,
            mixing,
            max_epochs: 6,
            batch_size: 16,
            patience: 6,
            ..FineTuneParams::default()
        };
        let arms = [
            arm(2, 1e-2, Mixing::None),
            arm(1, 1e-2, Mixing::None),
            arm(2, 1e-5, Mixing::Mixup { alpha: 0.2 }),
            arm(1, 1e-5, Mixing::Cutmix { alpha: 1.0 }),
            // Unfreezes more blocks than the activations allow: left out.
            arm(3, 1e-3, Mixing::None),
        ];
        let out = successive_halving(
            &backbone,
            &head,
            &arms,
            0,
            &train,
            &valid,
            3,
            0,
            &Budget::unlimited(),
            &exeml_core::Silent,
        )
        .expect("search");
        assert_eq!(out.len(), 4, "the 3-block arm is left out");
        // Rung 1: four arms train 1 epoch, two go on to 2 epochs, one finishes all 6. With the
        // budget left, the three arms halving stopped are then resumed to their end.
        let mut resumed_after: Vec<&str> = out
            .iter()
            .filter_map(|o| o.status.strip_prefix("resumed after "))
            .map(|rest| &rest[..1])
            .collect();
        resumed_after.sort_unstable();
        assert_eq!(resumed_after, ["1", "1", "2"], "{out:#?}");
        assert!(out.iter().all(|o| o.epochs == 6), "{out:#?}");
        let winner = out.iter().find(|o| o.status == "ok").expect("winner");
        assert!(
            winner.params.learning_rate > 1e-3,
            "the fast arms win the halving: {out:?}"
        );
        // The one-block arm trained on the activations entering the last block.
        assert!(out.iter().any(|o| o.first_block == 1));
    }
}
