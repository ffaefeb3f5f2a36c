//! Fitting the first backbone configuration into the budget. The first configuration's features
//! must be extracted completely (there is no model without them), so before starting, a sample
//! of the training images is timed through the network and the configuration is made cheaper
//! when its extraction would take too much of the time left: a second and further augmented
//! views are dropped while the extraction with them would take more than
//! [`EXTRA_VIEWS_SHARE`] of it; when the extraction with one view or none would still take more
//! than [`FIRST_EXTRACTION_SHARE`], the last view goes, then lower resolutions are tried (unless
//! fixed), then a stratified subset of the training images. A short budget then still ends on
//! time, with a smaller but complete model and time left to fine-tune it.

use crate::backbone::Backbone;
use crate::features::{extract, rows_per_image, ExtractOptions};
use crate::footprint::smaller_resolutions;
use crate::search::Candidate;
use exeml_core::{Budget, Result, Silent};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Share of the remaining budget the first extraction may take with one augmented view or none.
const FIRST_EXTRACTION_SHARE: f64 = 0.5;
/// Share of the remaining budget the first extraction may take with a second or further
/// augmented views, as for a second probe configuration: each view also lengthens every epoch
/// of fine-tuning (two views make an epoch 1.5 times one view's), and their gain needs more
/// epochs than a short budget leaves. At 2 minutes on Fashion-MNIST (this 2-core CPU)
/// `accuracy_first` with two views fine-tuned one arm, without a refit, to 0.861 twice, and
/// `balance` with one view refitted its arm to 0.885-0.886.
const EXTRA_VIEWS_SHARE: f64 = 0.125;
/// Resolutions below this are not chosen to save time (too little detail for the backbones).
const MIN_RESOLUTION: u32 = 96;
/// Images in each pass timed to estimate the cost of an extraction.
const SAMPLE_IMAGES: usize = 12;
/// Passes timed after the warm-up pass (see [`seconds_per_view`]).
const TIMED_PASSES: usize = 3;

/// How the first configuration is run.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstFit {
    /// The configuration, possibly cheaper than planned.
    pub candidate: Candidate,
    /// The training images to use (indices into the training list), when not all of them.
    pub subset: Option<Vec<usize>>,
    /// Estimated seconds of the extraction as chosen.
    pub estimated_secs: f64,
    /// What was changed and why, when something was.
    pub note: Option<String>,
}

/// The images the first configuration is extracted for.
#[derive(Debug, Clone, Copy)]
pub struct FirstFitData<'a> {
    /// The training images.
    pub train: &'a [PathBuf],
    /// Their first labels (for a stratified subset).
    pub labels: &'a [usize],
    /// How many validation images are extracted too.
    pub validation_images: usize,
    /// The user fixed the resolution: it is not lowered.
    pub fixed_resolution: bool,
    /// Seed of the sample and the subset.
    pub seed: u64,
}

/// Plan the first configuration so that its extraction fits the budget (see the module docs).
pub fn plan_first(
    backbone: &Backbone,
    planned: Candidate,
    data: &FirstFitData<'_>,
    budget: &Budget,
) -> Result<FirstFit> {
    // An unlimited budget (tests, refits) needs no plan.
    if budget.remaining() > Duration::from_secs(365 * 86_400) || data.train.is_empty() {
        return Ok(FirstFit {
            candidate: planned,
            subset: None,
            estimated_secs: 0.0,
            note: None,
        });
    }
    let per_view = seconds_per_view(backbone, data.train, planned.resolution, data.seed)?;
    let costs = ExtractionCosts {
        per_view,
        planned_resolution: planned.resolution,
        train_images: data.train.len(),
        validation_images: data.validation_images,
    };
    let choice = choose(
        planned,
        &costs,
        budget.remaining().as_secs_f64(),
        data.fixed_resolution,
    );
    let Some(affordable) = choice.train_images else {
        return Ok(FirstFit {
            candidate: choice.candidate,
            subset: None,
            estimated_secs: choice.estimated_secs,
            note: choice.note,
        });
    };
    let keep = stratified_subset(data.labels, affordable, data.seed);
    let resolution = choice.candidate.resolution;
    let note = choice.note.map(|why| {
        format!(
            "{why} on {} of the {} training images instead",
            keep.len(),
            data.train.len()
        )
    });
    Ok(FirstFit {
        candidate: choice.candidate,
        estimated_secs: costs.seconds(resolution, 0, keep.len()),
        subset: (keep.len() < data.train.len()).then_some(keep),
        note,
    })
}

/// What an extraction costs, from the timed sample.
#[derive(Debug, Clone, Copy)]
struct ExtractionCosts {
    /// Seconds a plain view takes at `planned_resolution`.
    per_view: f64,
    planned_resolution: u32,
    train_images: usize,
    validation_images: usize,
}

impl ExtractionCosts {
    /// Estimated seconds to extract `images` training images with `views` augmented views each
    /// and the validation images' plain views at `resolution` (the cost grows with the pixels).
    fn seconds(&self, resolution: u32, views: usize, images: usize) -> f64 {
        let scale = (f64::from(resolution) / f64::from(self.planned_resolution)).powi(2);
        self.per_view * scale * (images * rows_per_image(views) + self.validation_images) as f64
    }
}

/// The configuration chosen by [`choose`], before a subset is drawn.
#[derive(Debug, Clone, PartialEq)]
struct Choice {
    candidate: Candidate,
    /// How many training images fit, when not all of them.
    train_images: Option<usize>,
    estimated_secs: f64,
    note: Option<String>,
}

/// The cheapest change to `planned` that fits `remaining_secs` (see the module docs).
fn choose(
    planned: Candidate,
    costs: &ExtractionCosts,
    remaining_secs: f64,
    fixed_resolution: bool,
) -> Choice {
    let all = costs.train_images;
    let planned_secs = costs.seconds(planned.resolution, planned.augmented_views, all);
    let why = format!(
        "the planned {} px with {} augmented view(s) would take ~{planned_secs:.0} s of the \
         {remaining_secs:.0} s left",
        planned.resolution, planned.augmented_views,
    );
    let fits = |secs: f64, views: usize| {
        let share = if views > 1 {
            EXTRA_VIEWS_SHARE
        } else {
            FIRST_EXTRACTION_SHARE
        };
        secs <= remaining_secs * share
    };
    for views in (0..=planned.augmented_views).rev() {
        let secs = costs.seconds(planned.resolution, views, all);
        if fits(secs, views) {
            return Choice {
                candidate: Candidate {
                    augmented_views: views,
                    ..planned
                },
                train_images: None,
                estimated_secs: secs,
                note: (views < planned.augmented_views)
                    .then(|| format!("{why}: {views} augmented view(s) instead")),
            };
        }
    }
    let resolutions: Vec<u32> = if fixed_resolution {
        vec![planned.resolution]
    } else {
        std::iter::once(planned.resolution)
            .chain(smaller_resolutions(planned.resolution).filter(|&r| r >= MIN_RESOLUTION))
            .collect()
    };
    let cheaper = |resolution: u32| Candidate {
        resolution,
        augmented_views: 0,
        ..planned
    };
    for &resolution in resolutions.iter().skip(1) {
        let secs = costs.seconds(resolution, 0, all);
        if fits(secs, 0) {
            return Choice {
                candidate: cheaper(resolution),
                train_images: None,
                estimated_secs: secs,
                note: Some(format!(
                    "{why}: {resolution} px without augmented views instead"
                )),
            };
        }
    }
    let resolution = *resolutions.last().unwrap_or(&planned.resolution);
    let per_image = costs.seconds(resolution, 0, 1) - costs.seconds(resolution, 0, 0);
    let target = remaining_secs * FIRST_EXTRACTION_SHARE;
    let affordable = ((target - costs.seconds(resolution, 0, 0)) / per_image.max(1e-9)).floor();
    let images = (affordable.max(0.0) as usize).min(all);
    Choice {
        candidate: cheaper(resolution),
        train_images: Some(images),
        estimated_secs: costs.seconds(resolution, 0, images),
        note: Some(format!("{why}: {resolution} px without augmented views")),
    }
}

/// Seconds to decode, preprocess and run one plain view at `resolution`: the median of
/// [`TIMED_PASSES`] passes over a few training images each, spread over the list, after one pass
/// over as many others. The first passes through the network pay for what the extraction pays
/// once (pages of the program, weights and buffers touched for the first time, thread
/// start-up), and one warm-up pass was not enough: the pass after it still took 1.4–2.5× the
/// extraction's cost per view here (17.8 ms against 7.3 ms in a 2-minute run, enough to drop the
/// planned augmented views from a run whose extraction then took an eighth of its budget), the
/// third and later 0.75–1.1×. A single training image is timed once.
fn seconds_per_view(
    backbone: &Backbone,
    train: &[PathBuf],
    resolution: u32,
    seed: u64,
) -> Result<f64> {
    let groups = 1 + TIMED_PASSES;
    let step = (train.len() / (groups * SAMPLE_IMAGES)).max(1);
    let spread: Vec<&PathBuf> = train.iter().step_by(step).collect();
    let sample = |offset: usize| -> Vec<PathBuf> {
        spread
            .iter()
            .skip(offset)
            .step_by(groups)
            .take(SAMPLE_IMAGES)
            .map(|&p| p.clone())
            .collect()
    };
    let time = |images: &[PathBuf]| -> Result<f64> {
        let options = ExtractOptions {
            resolution,
            batch_size: images.len(),
            seed,
            ..ExtractOptions::default()
        };
        let started = Instant::now();
        extract(
            backbone,
            images,
            &options,
            &Budget::unlimited(),
            true,
            &Silent,
        )?;
        Ok(started.elapsed().as_secs_f64() / images.len().max(1) as f64)
    };
    let warm_up_secs = time(&sample(0))?;
    let mut timed = Vec::with_capacity(TIMED_PASSES);
    for offset in 1..groups {
        let images = sample(offset);
        if !images.is_empty() {
            timed.push(time(&images)?);
        }
    }
    Ok(median_or_faster(timed).unwrap_or(warm_up_secs))
}

/// The median of `times`, the faster of two; `None` when empty.
fn median_or_faster(mut times: Vec<f64>) -> Option<f64> {
    times.sort_by(f64::total_cmp);
    times.get(times.len().saturating_sub(1) / 2).copied()
}

/// About `n` image indices drawn per class in proportion to its size (seeded), at least five
/// of each class (or all of a smaller one), in the original order.
fn stratified_subset(labels: &[usize], n: usize, seed: u64) -> Vec<usize> {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &c) in labels.iter().enumerate() {
        by_class[c].push(i);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let share = n as f64 / labels.len().max(1) as f64;
    let mut keep = Vec::new();
    for mut members in by_class {
        members.shuffle(&mut rng);
        let take = ((members.len() as f64 * share).round() as usize)
            .max(5)
            .min(members.len());
        keep.extend_from_slice(&members[..take]);
    }
    keep.sort_unstable();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_is_the_median_pass_or_the_faster_of_two() {
        assert_eq!(median_or_faster(vec![0.0095, 0.0055, 0.0068]), Some(0.0068));
        assert_eq!(median_or_faster(vec![0.009, 0.006]), Some(0.006));
        assert_eq!(median_or_faster(vec![0.007]), Some(0.007));
        assert_eq!(median_or_faster(Vec::new()), None);
    }

    /// The 2-minute Fashion-MNIST runs of `accuracy_first`: 1,600 training and 400 validation
    /// images, about 6 ms a view.
    fn fashion_costs() -> ExtractionCosts {
        ExtractionCosts {
            per_view: 0.006,
            planned_resolution: 224,
            train_images: 1600,
            validation_images: 400,
        }
    }

    fn planned(augmented_views: usize) -> Candidate {
        Candidate {
            backbone: crate::backbone::BackboneKind::MobilenetV2,
            resolution: 224,
            augmented_views,
        }
    }

    #[test]
    fn a_plan_that_fits_is_kept() {
        // Two views: 5,200 rows, 31.2 s, within an eighth of 260 s.
        let choice = choose(planned(2), &fashion_costs(), 260.0, false);
        assert_eq!(choice.candidate, planned(2));
        assert_eq!(choice.train_images, None);
        assert_eq!(choice.note, None);
        assert!((choice.estimated_secs - 31.2).abs() < 1e-9);
    }

    #[test]
    fn a_second_view_needs_an_eighth_of_the_time_one_view_half() {
        let choice = choose(planned(2), &fashion_costs(), 240.0, false);
        assert_eq!(choice.candidate, planned(1), "{:?}", choice.note);
        let choice = choose(planned(2), &fashion_costs(), 117.0, false);
        assert_eq!(choice.candidate, planned(1), "{:?}", choice.note);
        let note = choice.note.expect("a note");
        assert!(note.contains("~31 s of the 117 s left"), "{note}");
        assert!(note.ends_with("1 augmented view(s) instead"), "{note}");
        assert!((choice.estimated_secs - 21.6).abs() < 1e-9);
        // One view (21.6 s) no longer fits half of 40 s; plain views (12 s) do.
        let choice = choose(planned(2), &fashion_costs(), 40.0, false);
        assert_eq!(choice.candidate, planned(0));
        let choice = choose(planned(1), &fashion_costs(), 44.0, false);
        assert_eq!(choice.candidate, planned(1));
    }

    #[test]
    fn lower_resolutions_come_before_a_subset_unless_the_resolution_is_fixed() {
        // 10 s: plain views at 224 px cost 12 s, at 192 px 8.8 s.
        let choice = choose(planned(1), &fashion_costs(), 20.0, false);
        assert_eq!(choice.candidate.resolution, 192);
        assert_eq!(choice.candidate.augmented_views, 0);
        assert_eq!(choice.train_images, None);
        let note = choice.note.expect("a note");
        assert!(
            note.ends_with("192 px without augmented views instead"),
            "{note}"
        );

        let choice = choose(planned(1), &fashion_costs(), 20.0, true);
        assert_eq!(choice.candidate, planned(0));
        // (10 s - 400 validation views) at 6 ms a view.
        assert_eq!(choice.train_images, Some(1266));
        assert!(choice.estimated_secs <= 10.0);
    }

    #[test]
    fn a_budget_too_short_for_any_resolution_takes_a_subset_at_the_lowest() {
        // 2 s: every training image at 96 px would cost 2.2 s.
        let choice = choose(planned(1), &fashion_costs(), 4.0, false);
        assert_eq!(choice.candidate.resolution, MIN_RESOLUTION);
        assert_eq!(choice.candidate.augmented_views, 0);
        assert_eq!(choice.train_images, Some(1414));
        assert!(choice.estimated_secs <= 2.0);
    }

    #[test]
    fn a_subset_keeps_every_class_in_proportion() {
        let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
        let keep = stratified_subset(&labels, 200, 7);
        let rare = keep.iter().filter(|&&i| labels[i] == 1).count();
        assert_eq!(rare, 20, "10 % of the subset, as in the data");
        assert_eq!(keep.len(), 200);
        assert!(keep.windows(2).all(|w| w[0] < w[1]), "original order");
        assert_eq!(keep, stratified_subset(&labels, 200, 7), "seeded");
        // A tiny budget still keeps five of each class.
        let keep = stratified_subset(&labels, 0, 7);
        assert_eq!(keep.len(), 10);
    }
}
