//! Fitting the first backbone configuration into the budget. The first configuration's features
//! must be extracted completely (there is no model without them), so before starting, a sample
//! of the training images is timed through the network and, when the whole extraction would
//! take more than half of the time left, the configuration is made cheaper: no augmented views
//! first, then lower resolutions (unless fixed), then a stratified subset of the training
//! images. A short budget then still ends on time, with a smaller but complete model.

use crate::backbone::Backbone;
use crate::features::{extract, rows_per_image, ExtractOptions};
use crate::footprint::smaller_resolutions;
use crate::search::Candidate;
use exeml_core::{Budget, Result, Silent};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Share of the remaining budget the first extraction may take.
const FIRST_EXTRACTION_SHARE: f64 = 0.5;
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
    let FirstFitData {
        train,
        labels,
        validation_images,
        fixed_resolution,
        seed,
    } = *data;
    let unchanged = FirstFit {
        candidate: planned,
        subset: None,
        estimated_secs: 0.0,
        note: None,
    };
    // An unlimited budget (tests, refits) needs no plan.
    if budget.remaining() > Duration::from_secs(365 * 86_400) || train.is_empty() {
        return Ok(unchanged);
    }
    let per_view = seconds_per_view(backbone, train, planned.resolution, seed)?;
    let target = budget.remaining().as_secs_f64() * FIRST_EXTRACTION_SHARE;
    let cost = |resolution: u32, views: usize, images: usize| {
        let scale = (f64::from(resolution) / f64::from(planned.resolution)).powi(2);
        per_view * scale * (images * rows_per_image(views) + validation_images) as f64
    };
    let planned_cost = cost(planned.resolution, planned.augmented_views, train.len());
    if planned_cost <= target {
        return Ok(FirstFit {
            estimated_secs: planned_cost,
            ..unchanged
        });
    }
    let mut candidate = Candidate {
        augmented_views: 0,
        ..planned
    };
    let resolutions: Vec<u32> = if fixed_resolution {
        vec![planned.resolution]
    } else {
        std::iter::once(planned.resolution)
            .chain(smaller_resolutions(planned.resolution).filter(|&r| r >= MIN_RESOLUTION))
            .collect()
    };
    let why = format!(
        "the planned {} px with {} augmented view(s) would take ~{planned_cost:.0} s of the {:.0} s left",
        planned.resolution,
        planned.augmented_views,
        budget.remaining().as_secs_f64()
    );
    for &resolution in &resolutions {
        let secs = cost(resolution, 0, train.len());
        if secs <= target {
            candidate.resolution = resolution;
            return Ok(FirstFit {
                candidate,
                subset: None,
                estimated_secs: secs,
                note: Some(format!(
                    "{why}: {resolution} px without augmented views instead"
                )),
            });
        }
    }
    candidate.resolution = *resolutions.last().unwrap_or(&planned.resolution);
    let per_image = cost(candidate.resolution, 0, 1) - cost(candidate.resolution, 0, 0);
    let affordable = ((target - cost(candidate.resolution, 0, 0)) / per_image.max(1e-9)).floor();
    let keep = stratified_subset(labels, affordable.max(0.0) as usize, seed);
    let secs = cost(candidate.resolution, 0, keep.len());
    let note = format!(
        "{why}: {} px without augmented views on {} of the {} training images instead",
        candidate.resolution,
        keep.len(),
        train.len()
    );
    Ok(FirstFit {
        candidate,
        subset: (keep.len() < train.len()).then_some(keep),
        estimated_secs: secs,
        note: Some(note),
    })
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
