//! Refitting chosen fine-tuned models on every image: the search holds a fifth of the images out
//! to choose configurations, epochs and ensemble weights; once chosen, each model of the
//! fine-tuned model or ensemble is trained afresh with its configuration, for the epochs its
//! validation chose, on training and validation images together (AutoGluon's `refit_full`,
//! FLAML's `retrain_full`). The validation metrics stay those of the search: nothing is left to
//! measure the refitted models on.

use crate::backbone::{Backbone, Block};
use crate::finetune::{Activations, FineTuneParams, FineTuner};
use crate::head::LinearHead;
use crate::nn::candle_error;
use exeml_core::{Budget, Progress, Result};
use std::collections::btree_map::{BTreeMap, Entry};

/// The share of the time left a refit is not planned on: one the budget stops midway is lost.
const REFIT_TIME_SLACK: f64 = 0.05;

/// One model of the chosen fine-tuned model or ensemble, as the search trained it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefitPlan {
    /// Its configuration.
    pub params: FineTuneParams,
    /// The backbone's first trained block.
    pub first_block: usize,
    /// The epochs after which its best validation state was taken.
    pub epochs: usize,
    /// Seconds an epoch of the search took (on the training images, validation included).
    pub seconds_per_epoch: f64,
}

impl RefitPlan {
    /// Estimated seconds of the refit on `rows` rows, when the search trained on `searched`.
    pub fn estimated_seconds(&self, rows: usize, searched: usize) -> f64 {
        self.seconds_per_epoch * self.epochs as f64 * rows as f64 / searched.max(1) as f64
    }

    /// The epochs of this refit on `rows` rows that `seconds` afford: all of them, or as many
    /// as fit (with [`REFIT_TIME_SLACK`] spare) when that is at least half of them (their
    /// schedule then decays over the shorter run, as a search run fitted to the budget does);
    /// 0 otherwise. The halving weighs a run
    /// against its refit the same way: it prefers half of its plan or more with a refit to the
    /// whole plan without, a fifth more images being worth more than the epochs lost (see
    /// `tuning::shortened_epochs`). Epoch times vary by a tenth or more on a busy CPU, so a
    /// refit planned to fit can need a few seconds more than are left when the search ends.
    pub fn affordable_epochs(&self, rows: usize, searched: usize, seconds: f64) -> usize {
        let per_epoch = self.estimated_seconds(rows, searched) / self.epochs.max(1) as f64;
        if self.epochs == 0 || per_epoch <= 0.0 {
            return self.epochs;
        }
        let spare = seconds * (1.0 - REFIT_TIME_SLACK);
        let fit = ((spare / per_epoch).max(0.0).floor() as usize).min(self.epochs);
        if fit >= self.epochs.div_ceil(2) {
            fit
        } else {
            0
        }
    }
}

/// A refitted model: the trained blocks from its first block on, and its head.
pub type Refitted = (Vec<Block>, LinearHead);

/// Refit each planned model in turn (the chosen one first) on `rows`, the activations entering
/// block `split` of `base` of training and validation images together, starting from `base`'s
/// blocks and the linear-probe `probe` as the search did, for the epochs the budget left affords
/// (see [`RefitPlan::affordable_epochs`], estimated from the search's epochs on `searched`
/// rows). A model the budget affords no refit is not started, and one the budget stops midway
/// is dropped: its entry is `None` and the caller keeps the searched model. Otherwise the entry
/// has the refitted model and its epochs.
#[allow(clippy::too_many_arguments)]
pub fn refit_models(
    base: &Backbone,
    probe: &LinearHead,
    plans: &[RefitPlan],
    split: usize,
    rows: &Activations,
    searched: usize,
    classes: usize,
    seed: u64,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<Vec<Option<(Refitted, usize)>>> {
    let mut entering: BTreeMap<usize, Activations> = BTreeMap::new();
    let mut out = Vec::with_capacity(plans.len());
    for (i, plan) in plans.iter().enumerate() {
        let remaining = budget.remaining().as_secs_f64();
        let epochs = plan.affordable_epochs(rows.len(), searched, remaining);
        if epochs == 0 || plan.first_block < split {
            out.push(None);
            continue;
        }
        let needed =
            plan.estimated_seconds(rows.len(), searched) * epochs as f64 / plan.epochs as f64;
        let shortened = if epochs < plan.epochs {
            format!(" of the {} searched, for the time left", plan.epochs)
        } else {
            String::new()
        };
        progress.phase(&format!(
            "refitting model {} of {} on training and validation images ({epochs} epochs{shortened}, about {needed:.0} s)",
            i + 1,
            plans.len(),
        ));
        let input = match entering.entry(plan.first_block) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(rows.advance(base, split, plan.first_block)?),
        };
        let params = FineTuneParams {
            max_epochs: epochs,
            ..plan.params
        };
        let mut tuner = FineTuner::for_refit(
            base,
            probe,
            params,
            input,
            classes,
            seed ^ (i as u64).wrapping_mul(0x9e37_79b9),
        )?;
        let mut completed = true;
        while !tuner.finished() {
            if !tuner.epoch(budget)? {
                completed = false;
                break;
            }
        }
        out.push(if completed {
            Some((tuner.state()?, epochs))
        } else {
            None
        });
    }
    Ok(out)
}

/// Training and validation rows as one set of activations (the tensors must agree in every
/// dimension but the first).
pub fn concat_rows(train: &Activations, valid: &Activations) -> Result<Activations> {
    Ok(Activations {
        x: candle_core::Tensor::cat(&[&train.x, &valid.x], 0).map_err(candle_error)?,
        labels: train.labels.iter().chain(&valid.labels).cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finetune::toy::problem;
    use exeml_core::Silent;
    use std::time::Duration;

    fn plan(epochs: usize, first_block: usize) -> RefitPlan {
        RefitPlan {
            params: FineTuneParams {
                unfrozen_blocks: 1,
                ..FineTuneParams::default()
            },
            first_block,
            epochs,
            seconds_per_epoch: 0.0,
        }
    }

    #[test]
    fn a_refit_trains_the_planned_epochs_on_every_row_and_changes_the_weights() {
        let (backbone, head, train, valid) = problem(3);
        let rows = concat_rows(&train, &valid).expect("rows");
        assert_eq!(rows.len(), train.len() + valid.len());
        // The activations enter block 0; the plan trains the last block only.
        let first = backbone.blocks().len() - 1;
        let out = refit_models(
            &backbone,
            &head,
            &[plan(2, first)],
            0,
            &rows,
            train.len(),
            3,
            7,
            &Budget::unlimited(),
            &Silent,
        )
        .expect("refit");
        let ((blocks, refitted), epochs) = out[0].as_ref().expect("refitted");
        assert_eq!(blocks.len(), 1);
        assert_eq!(*epochs, 2);
        let moved = (refitted.weight.clone() - head.weight.clone())
            .and_then(|d| d.abs()?.sum_all()?.to_scalar::<f32>())
            .expect("difference");
        assert!(moved > 0.0, "the head did not train");
    }

    #[test]
    fn a_refit_that_does_not_fit_is_shortened_to_half_of_its_epochs_or_more() {
        // 10 s a search epoch on 1,600 rows: 12.5 s a refit epoch on 2,000.
        let six = RefitPlan {
            seconds_per_epoch: 10.0,
            ..plan(6, 0)
        };
        // With 5 % of the time spare.
        assert_eq!(six.affordable_epochs(2000, 1600, 100.0), 6);
        assert_eq!(six.affordable_epochs(2000, 1600, 79.0), 6);
        assert_eq!(six.affordable_epochs(2000, 1600, 78.0), 5);
        assert_eq!(six.affordable_epochs(2000, 1600, 40.0), 3);
        assert_eq!(six.affordable_epochs(2000, 1600, 39.0), 0, "under half");
        assert_eq!(six.affordable_epochs(2000, 1600, -5.0), 0);
        let three = RefitPlan {
            seconds_per_epoch: 10.0,
            ..plan(3, 0)
        };
        assert_eq!(three.affordable_epochs(2000, 1600, 27.0), 2);
        assert_eq!(three.affordable_epochs(2000, 1600, 26.0), 0);
        assert_eq!(plan(0, 0).affordable_epochs(2000, 1600, 100.0), 0);
    }

    #[test]
    fn a_model_the_budget_cannot_afford_is_left_as_searched() {
        let (backbone, head, train, valid) = problem(3);
        let rows = concat_rows(&train, &valid).expect("rows");
        let first = backbone.blocks().len() - 1;
        let slow = RefitPlan {
            seconds_per_epoch: 3600.0,
            ..plan(2, first)
        };
        let budget = Budget::new(Duration::from_secs(60));
        let out = refit_models(
            &backbone,
            &head,
            &[slow, plan(0, first)],
            first,
            &rows,
            train.len(),
            3,
            7,
            &budget,
            &Silent,
        )
        .expect("refit");
        assert!(out.iter().all(Option::is_none));
    }
}
