//! The search: checks the data, splits it, fits each proposed configuration within the budget,
//! keeps the best trials, combines them into a greedy ensemble when that scores better on
//! validation, evaluates the result and refits it on all rows when the budget allows.

use crate::bagging;
use crate::boosting::Booster;
use crate::dataset::TabularDataset;
use crate::ensemble::{self, EnsembleLimits};
use crate::evaluate::{argmax, evaluate_classification, evaluate_regression, Evaluation};
use crate::family::{
    self, forest, gbdt, hist_gbdt, knn, linear, mlp, Estimator, Labelled, Problem,
};
use crate::features::{self, Encoding, FeatureOptions, FeaturePipeline, Targets};
use crate::manifest::{Lineage, Manifest, MemberManifest, FORMAT, FORMAT_VERSION};
use crate::model::TabularModel;
use crate::predictor::{ParentBooster, TabularPredictor};
use crate::sample;
use crate::schema::{label_numbers, label_texts, Target};
use crate::stacking::{self, Stacking};
use crate::table::Table;
use exeml_core::constraints::{folder_megabytes, median_latency_ms};
use exeml_core::search::{MedianStopping, NeverStop, ParamRange, StoppingTrial, TrialMonitor};
use exeml_core::search::{
    ParamPoint, ParamValue, Searcher, TpeConfig, TpeSearcher, Trial, TrialOutcome, TrialRecord,
};
use exeml_core::split::{quantile_strata, stratified_split};
use exeml_core::{
    Budget, Constraints, Dataset, Error, FitContext, Preference, ProblemType, Progress, Result,
    SplitSpec, TaskKind, Trainer, Usage,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// How long the search goes on without improving: a fast answer for `performance_first`, a
/// thorough one for `accuracy_first`. The budget stops it in any case.
fn search_config(preference: Preference, seed: u64) -> TpeConfig {
    let patience = match preference {
        Preference::PerformanceFirst => 8,
        Preference::Balance => 20,
        Preference::AccuracyFirst => 50,
    };
    TpeConfig {
        patience: Some(patience),
        seed,
        ..TpeConfig::default()
    }
}

/// Train a model on `table` as configured by `config`.
///
/// `usage` is the split of a published dataset version; without it the rows are split here
/// (seeded and stratified). The budget covers everything from the checks to the evaluation.
pub fn fit(
    config: &TabularPredictor,
    table: &Table,
    usage: Option<&[Usage]>,
    budget: &Budget,
    progress: &dyn Progress,
) -> Result<TabularModel> {
    let started = Instant::now();
    let constraints = config.constraints.check()?;
    // A split given with the data (tuning rows, a dataset version's split) is the validation
    // the user chose: bagging replaces it with out-of-fold scores only when asked for.
    let bag_folds = match (config.bag_folds, usage) {
        (None, Some(_)) => Some(0),
        (asked, _) => asked,
    };
    if config
        .search_rows
        .is_some_and(|rows| rows < sample::MIN_SEARCH_ROWS_ASKED)
    {
        return Err(Error::invalid(
            "search_rows",
            format!(
                "must be at least {} (a sample that small cannot rank models)",
                sample::MIN_SEARCH_ROWS_ASKED
            ),
        ));
    }
    progress.phase("checking data");
    let dataset = TabularDataset::new(table.clone(), config.label.as_deref(), config.problem)?;
    let checks = dataset.check().into_result(&table.source)?;
    // The dataset's copy of the table is dropped here, not at the end of the search.
    let TabularDataset {
        target,
        columns,
        labels: texts,
        numbers,
        table: table_copy,
    } = dataset;
    drop(table_copy);

    let problem = Problem {
        kind: target.problem,
        n_classes: target.classes.len().max(1),
    };
    let y: Vec<f64> = if problem.kind == ProblemType::Regression {
        numbers.clone()
    } else {
        texts
            .iter()
            .map(|t| {
                t.as_ref()
                    .and_then(|t| target.classes.iter().position(|c| c == t))
                    .map_or(f64::NAN, |i| i as f64)
            })
            .collect()
    };
    let spec = SplitSpec {
        train_ratio: config.train_ratio,
        seed: config.seed,
    }
    .check()?;
    let usage: Vec<Usage> = match usage {
        Some(u) if u.len() == table.n_rows() => u.to_vec(),
        Some(u) => {
            return Err(Error::data(
                &table.source,
                format!(
                    "the split has {} rows but the table {}",
                    u.len(),
                    table.n_rows()
                ),
            ))
        }
        None => split_rows(table, &target, spec)?,
    };
    let train_rows: Vec<usize> = (0..usage.len())
        .filter(|&i| usage[i] == Usage::Train)
        .collect();
    let valid_rows: Vec<usize> = (0..usage.len())
        .filter(|&i| usage[i] == Usage::Validation)
        .collect();
    if train_rows.is_empty() || valid_rows.is_empty() {
        return Err(Error::data(
            &table.source,
            "the split left no training or no validation rows",
        ));
    }
    // A large table is searched on a sample; the chosen model is refitted on every row.
    let used_columns = columns.iter().filter(|c| c.dropped.is_none()).count();
    let search_cap = config
        .search_rows
        .unwrap_or_else(|| sample::default_search_rows(used_columns));
    let search_train = sample::stratified_sample(&train_rows, &y, problem, search_cap, config.seed);
    let search_valid = sample::stratified_sample(
        &valid_rows,
        &y,
        problem,
        sample::SEARCH_VALID_ROWS,
        config.seed ^ 1,
    );
    let sampled = search_train.len() < train_rows.len() || search_valid.len() < valid_rows.len();
    let train_table = table.take(&search_train);
    let valid_table = table.take(&search_valid);
    let pick = |rows: &[usize]| rows.iter().map(|&r| y[r]).collect::<Vec<f64>>();
    let (y_train, y_valid) = (pick(&search_train), pick(&search_valid));

    // The search ends a little before the limit: evaluating, ensembling and saving a model of
    // a large table take seconds, and the limit covers them too.
    // After a search on a sample, a share of the limit is kept for the refit on all rows.
    // When the chosen models will be bagged, a share is kept for their k fits.
    let all_count = train_rows.len() + valid_rows.len();
    let bagging_planned =
        !sampled && bagging::folds(config.preference, all_count, bag_folds).is_some();
    let reserve = if sampled {
        finishing_reserve(budget.limit()).max(budget.limit().mul_f64(SAMPLED_REFIT_SHARE))
    } else if bagging_planned {
        finishing_reserve(budget.limit()).max(budget.limit().mul_f64(bagging::BUDGET_SHARE))
    } else {
        finishing_reserve(budget.limit())
    };
    let search_budget = budget.reserving(reserve);
    // A deterministic run sizes each fit by counts (rounds, trees), not by the time left.
    let ctx = FitContext {
        budget: if config.deterministic {
            budget.uncapped()
        } else {
            search_budget.clone()
        },
        device: config.device,
        preference: config.preference,
        seed: config.seed,
        progress,
        monitor: &NeverStop,
    };
    let mut spaces = family::spaces(problem);
    if !config.families.is_empty() {
        if let Some(unknown) = config
            .families
            .iter()
            .find(|f| !spaces.iter().any(|s| &s.family == *f))
        {
            let known: Vec<&str> = spaces.iter().map(|s| s.family.as_str()).collect();
            return Err(Error::invalid(
                "families",
                format!(
                    "unknown model family `{unknown}` (known: {})",
                    known.join(", ")
                ),
            ));
        }
        spaces.retain(|s| config.families.contains(&s.family));
    }
    add_feature_search(&mut spaces, &columns, problem)?;
    let mut searcher = TpeSearcher::new(&spaces, search_config(config.preference, config.seed));
    // The booster's default point goes first, as LightGBM leads AutoGluon's model order: on a
    // table large enough for the clock to end the search it is the strongest first model, and
    // the cheap families' defaults (queued by cost) would otherwise take its time.
    if let Some(booster) = spaces.iter().find(|s| s.family == hist_gbdt::FAMILY) {
        if let Some(point) = booster.defaults.first() {
            searcher.prepend(&booster.family, point.clone());
        }
    }
    if let Some(parent) = &config.warm_start {
        check_parent(&parent.manifest, &target, &table.source)?;
        // Every model of the parent's ensemble is tried first, the heaviest first (a bagged
        // parent's k fits of one configuration are one configuration).
        let members = parent.manifest.members();
        let mut tried: Vec<&MemberManifest> = Vec::new();
        for member in members.iter().rev() {
            let again = tried
                .iter()
                .any(|t| t.family == member.family && t.params == member.params);
            if !again && spaces.iter().any(|s| s.family == member.family) {
                searcher.prepend(&member.family, member.params.clone());
                tried.push(member);
            }
        }
    }
    let mut prepared = PreparedFeatures::default();
    // Early stopping of bad trials, per family (its losses are comparable within a family).
    let stopping: HashMap<String, MedianStopping> = spaces
        .iter()
        .map(|s| {
            let rule = MedianStopping::new(STOP_GRACE_STEPS, STOP_AFTER_TRIALS);
            (s.family.clone(), rule)
        })
        .collect();
    let parent_boosters: &[ParentBooster] = config
        .warm_start
        .as_ref()
        .map_or(&[], |w| w.boosters.as_slice());
    let concurrency = trial_concurrency(
        config.parallel_trials,
        config.deterministic,
        rayon::current_num_threads(),
        search_train.len() * used_columns.max(1),
    )?;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut history = Vec::new();
    let mut stopped_by_budget = false;
    while let Some(first) = searcher.suggest() {
        if budget.is_cancelled() && candidates.is_empty() {
            return Err(Error::Interrupted(
                "training was cancelled before any model was trained".into(),
            ));
        }
        let any_scored = history
            .iter()
            .any(|r: &TrialRecord| r.outcome.score.is_some());
        if search_budget.exhausted() && (!candidates.is_empty() || any_scored) {
            stopped_by_budget = true;
            break;
        }
        // A batch: this trial and, when trials run at once, the next proposals, all made
        // before any of them is observed (the searcher keeps them apart).
        let mut batch = vec![first];
        while batch.len() < concurrency {
            match searcher.suggest() {
                Some(trial) => batch.push(trial),
                None => break,
            }
        }
        progress.fraction(search_budget.fraction_used());
        let mut jobs = Vec::with_capacity(batch.len());
        for trial in batch {
            progress.phase(&format!("trial {}: {}", trial.id + 1, trial.family));
            // A `hist_gbdt` trial at the parameters of one of the parent's boosters continues
            // it on the parent's features (incremental training).
            let parent = (trial.family == hist_gbdt::FAMILY)
                .then(|| ParentBooster::find(parent_boosters, &trial.params))
                .flatten();
            let key = FeatureKey {
                encoding: family::encoding_of(&trial.family)?,
                options: FeatureOptions::from_params(&trial.params)?,
                from_parent: parent.is_some(),
            };
            let targets = Targets {
                y: &y_train,
                problem,
                seed: config.seed,
            };
            let features = prepared.get(
                key,
                &train_table,
                &valid_table,
                &columns,
                targets,
                &y_valid,
                parent.map(|p| p.pipeline.as_ref()),
            )?;
            jobs.push(TrialJob {
                share: first_trial_share(&spaces, &history, &trial.family),
                pipeline: Arc::clone(&features.pipeline),
                train: Arc::clone(&features.train),
                valid: Arc::clone(&features.valid),
                trial,
                key,
                parent,
            });
        }
        let fits = fit_trials(&jobs, problem, &ctx, &stopping);
        for (job, fit) in jobs.into_iter().zip(fits) {
            let TrialJob {
                trial,
                key,
                pipeline,
                valid,
                ..
            } = job;
            let TrialFit {
                fitted,
                fit_secs,
                stopped_at,
            } = fit;
            let mut excluded_by_constraint = false;
            let record = match fitted {
                Ok(estimator) => {
                    let predict_started = Instant::now();
                    let out = estimator.predict(&valid.x);
                    let predict_secs = predict_started.elapsed().as_secs_f64();
                    let score = validation_score(problem, &valid.y, &out);
                    let latency_ms =
                        single_row_latency_ms(&[(&pipeline, &estimator, 1.0)], &valid_table).ok();
                    let size_mb = constraints.max_model_mb.and_then(|_| {
                        saved_megabytes(&[(&pipeline, &estimator, 1.0)], trial.id).ok()
                    });
                    let excluded = constraints.violation(latency_ms, size_mb);
                    let record = TrialRecord {
                        trial: trial.clone(),
                        outcome: TrialOutcome {
                            score: Some(score),
                            metric: score_name(problem).into(),
                            fit_secs,
                            predict_secs,
                            note: excluded.clone().or_else(|| continued_note(&estimator)).or_else(|| {
                                stopped_at.map(|step| {
                                    format!(
                                        "stopped early at step {step}: worse than the median of earlier {} trials",
                                        trial.family
                                    )
                                })
                            }),
                            latency_ms,
                            size_mb,
                        },
                    };
                    if excluded.is_none() {
                        keep_candidate(
                            &mut candidates,
                            Candidate {
                                trial,
                                key,
                                pipeline,
                                estimator,
                                out,
                                score,
                                fit_secs,
                            },
                        );
                    } else {
                        excluded_by_constraint = true;
                    }
                    record
                }
                Err(e) => TrialRecord {
                    trial,
                    outcome: TrialOutcome {
                        score: None,
                        metric: score_name(problem).into(),
                        fit_secs,
                        predict_secs: 0.0,
                        note: Some(e.to_string()),
                        ..Default::default()
                    },
                },
            };
            history.push(record.clone());
            let mut observed = record;
            if excluded_by_constraint {
                // Excluded by a constraint: the searcher should not look for more like it.
                observed.outcome.score = None;
            }
            searcher.observe(observed);
        }
    }
    if candidates.is_empty() {
        if let Some(closest) = closest_to_constraints(&history) {
            return Err(constraints.unmet(&closest));
        }
        let reasons: Vec<String> = history
            .iter()
            .filter_map(|r| r.outcome.note.clone())
            .collect();
        return Err(Error::BudgetExhausted {
            budget_secs: budget.limit().as_secs_f64(),
            what: format!("any model could be trained ({})", reasons.join("; ")),
        });
    }

    progress.phase("ensembling");
    drop(prepared);
    let (weights, ensemble_record) = choose_ensemble(
        &candidates,
        problem,
        &y_valid,
        &valid_table,
        config.preference,
        &constraints,
        history.len(),
    );
    history.extend(ensemble_record);
    let refs: Vec<&[f64]> = candidates.iter().map(|c| c.out.as_slice()).collect();
    let out = ensemble::blend(problem, &refs, &weights);

    progress.phase("evaluating");
    let validation = evaluate_output(problem, &target.classes, &y_valid, &out)?;

    let mut chosen: Vec<(Candidate, f64)> = Vec::new();
    let mut pool: Vec<Option<Candidate>> = candidates.into_iter().map(Some).collect();
    for &(i, w) in &weights {
        if let Some(c) = pool[i].take() {
            chosen.push((c, w));
        }
    }
    let rows = (train_rows.len(), valid_rows.len());
    let searched_rows = (search_train.len(), search_valid.len());
    let all_rows: Vec<usize> = train_rows.iter().chain(&valid_rows).copied().collect();
    // The refit (or bagging) may use the time the search left, up to the finishing reserve.
    let refit_ctx = FitContext {
        budget: if config.deterministic {
            budget.uncapped()
        } else {
            budget.reserving(finishing_reserve(budget.limit()))
        },
        ..ctx
    };
    let bag_k = bagging::folds(config.preference, all_rows.len(), bag_folds).filter(|_| !sampled);
    // Bagging re-chooses the weights on every row's out-of-fold prediction: a sounder choice
    // than the search's one validation part, so the best model of each family the search's
    // ensemble left out joins it as far as the time allows (weight 0 until chosen).
    let chosen_count = chosen.len();
    if let (Some(k), Some(_)) = (bag_k, ensemble_limits(config.preference)) {
        let allowed = refit_ctx.budget.remaining().as_secs_f64() * bagging::WIDENED_SHARE;
        let shape = (k, all_rows.len(), search_train.len());
        add_family_bests(&mut chosen, pool, shape, allowed);
    }
    let bag_inputs = BagInputs {
        table,
        columns: &columns,
        y: &y,
        problem,
        preference: config.preference,
        stack: config
            .stack
            .unwrap_or_else(|| bagging::stack_by_default(config.preference)),
    };
    let bag_started = Instant::now();
    let bagged = bag_k
        .filter(|&k| {
            let fit_secs: Vec<f64> = chosen.iter().map(|(c, _)| c.fit_secs).collect();
            let needed = bagging::estimated_secs(&fit_secs, k, all_rows.len(), search_train.len());
            needed < refit_ctx.budget.remaining().as_secs_f64()
        })
        .and_then(|k| bag_all(&chosen, &all_rows, k, &bag_inputs, &refit_ctx))
        .map(|bagged| {
            let id = history.len();
            let footprint = footprint(&bagged.parts(), &constraints, &valid_table, id);
            let violation = constraints.violation(footprint.0, footprint.1);
            let meets = violation.is_none();
            history.push(bagged.record(&chosen, problem, id, footprint, violation));
            (bagged, meets)
        });
    let bag_secs = bag_started.elapsed().as_secs_f64();
    // AutoGluon's `refit_full`: the bagged model's configurations refitted once each on all
    // rows, when asked for (or by the preference's default) or when the bagged model breaks a
    // deployment limit.
    let bag_refit = bagged.as_ref().and_then(|(bagged, meets)| {
        let asked = config
            .refit_full
            .unwrap_or_else(|| bagging::refit_full_by_default(config.preference));
        if !asked && *meets {
            return None;
        }
        let full = refit_bag(
            bagged,
            &chosen,
            &all_rows,
            &bag_inputs,
            &refit_ctx,
            bag_secs,
        )?;
        let id = history.len();
        let footprint = footprint(&full.parts(bagged), &constraints, &valid_table, id);
        let violation = constraints.violation(footprint.0, footprint.1);
        let meets = violation.is_none();
        history.push(full.record(bagged, &chosen, problem, id, footprint, violation));
        meets.then_some(full)
    });
    let mut validation = validation;
    let shipped = match (bagged, bag_refit) {
        (Some((bagged, _)), Some(full)) => {
            // No row is left out of the refit: the bagged model's out-of-fold metrics are
            // the estimate of the model refitted from it.
            validation = evaluate_output(problem, &target.classes, &bagged.y, &bagged.oof)?;
            Shipped {
                members: full.members(&bagged, &chosen),
                stacking: bagged.stacking,
                pipelines: full.pipelines,
                estimators: full.estimators,
                refit: true,
                refit_rows: Some(all_rows.len()),
                bagged_folds: None,
                refit_of_folds: Some(bagged.folds),
                headline: history.last().map(|r| r.trial.clone()),
            }
        }
        (Some((bagged, true)), None) => {
            validation = evaluate_output(problem, &target.classes, &bagged.y, &bagged.oof)?;
            Shipped {
                members: bagged.members(&chosen),
                stacking: bagged.stacking,
                refit: false,
                refit_rows: None,
                bagged_folds: Some(bagged.folds),
                refit_of_folds: None,
                headline: history
                    .iter()
                    .rev()
                    .find(|r| r.trial.family == BAGGED_FAMILY)
                    .map(|r| r.trial.clone()),
                pipelines: bagged.pipelines,
                estimators: bagged.estimators,
            }
        }
        _ => {
            // Without bagging only the search's ensemble is refitted.
            chosen.truncate(chosen_count);
            let refit_on = refit_rows(
                &chosen,
                &all_rows,
                &y,
                problem,
                &refit_ctx,
                search_train.len(),
            );
            let refs: Vec<&Candidate> = chosen.iter().map(|(c, _)| c).collect();
            let refitted = refit_on
                .as_ref()
                .and_then(|rows| {
                    refit_all(
                        &refs,
                        rows,
                        table,
                        &columns,
                        &y,
                        problem,
                        &refit_ctx,
                        "refitting",
                    )
                })
                .filter(|parts| {
                    refit_meets(parts, &chosen, &constraints, &valid_table, history.len())
                });
            let refit = refitted.is_some();
            let refit_rows = refit_on.filter(|_| refit).map(|rows| rows.len());
            let members: Vec<MemberManifest> = chosen
                .iter()
                .map(|(c, w)| MemberManifest {
                    family: c.trial.family.clone(),
                    params: c.trial.params.clone(),
                    weight: *w,
                    trial: Some(c.trial.id),
                    folder: String::new(),
                    pipeline: crate::manifest::default_pipeline_file(),
                    fold: None,
                    input: None,
                })
                .collect();
            let (pipelines, estimators) = match refitted {
                Some(parts) => parts,
                None => searched_parts(chosen),
            };
            Shipped {
                members,
                stacking: None,
                pipelines,
                estimators,
                refit,
                refit_rows,
                bagged_folds: None,
                refit_of_folds: None,
                headline: None,
            }
        }
    };
    let (family, params) = match (shipped.members.as_slice(), &shipped.headline) {
        (_, Some(headline)) => (headline.family.clone(), headline.params.clone()),
        ([only], None) => (only.family.clone(), only.params.clone()),
        _ => (
            ENSEMBLE_FAMILY.to_string(),
            ensemble_params(&shipped.members),
        ),
    };
    let Shipped {
        members,
        stacking,
        pipelines,
        estimators,
        refit,
        refit_rows,
        bagged_folds,
        refit_of_folds,
        headline: _,
    } = shipped;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        exeml_version: env!("CARGO_PKG_VERSION").into(),
        task: TaskKind::Tabular,
        problem: problem.kind,
        target,
        columns,
        family,
        params,
        ensemble: members,
        stacker: stacking.as_ref().map(|s| s.manifest.clone()),
        files: Vec::new(),
        validation,
        leaderboard: history,
        checks,
        lineage: Lineage {
            data: Some(table.source.display().to_string()),
            dataset_version: None,
            parent: config.warm_start.as_ref().map(|w| w.name.clone()),
            seed: config.seed,
            train_ratio: config.train_ratio,
            rows,
            preference: config.preference,
            time_limit_secs: budget.limit().as_secs_f64(),
            fit_secs: started.elapsed().as_secs_f64(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            constraints,
            refit,
            deterministic: config.deterministic,
            stopped_by_budget,
            search_rows: sampled.then_some(searched_rows),
            refit_rows,
            bagged_folds,
            refit_of_folds,
            parallel_trials: (concurrency > 1).then_some(concurrency),
        },
    };
    TabularModel::new(manifest, pipelines, estimators, stacking.map(|s| s.stacker))
}

/// What a trial's features depend on: the family's encoding and the searched options, or the
/// parent model's fitted pipeline (a trial that continues the parent's booster reads the
/// parent's features, fitted or refitted never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FeatureKey {
    encoding: Encoding,
    options: FeatureOptions,
    from_parent: bool,
}

/// A fitted pipeline with the training and validation features it produced.
struct Prepared {
    key: FeatureKey,
    pipeline: Arc<FeaturePipeline>,
    train: Arc<Labelled>,
    valid: Arc<Labelled>,
    last_used: usize,
}

/// Most bytes of feature matrices kept between trials; the least recently used are dropped
/// beyond it (and recomputed if a later trial needs them, which takes far less than a trial),
/// so that searching feature options on a large table does not multiply its memory.
const PREPARED_BYTES: usize = 256 << 20;

/// The features of the options tried so far, least recently used dropped first.
#[derive(Default)]
struct PreparedFeatures {
    entries: Vec<Prepared>,
    uses: usize,
}

impl PreparedFeatures {
    /// The features for `key`, fitted on the training part now if they are not kept (for a
    /// key `from_parent`, `parent`'s pipeline applied as it is).
    #[allow(clippy::too_many_arguments)]
    fn get(
        &mut self,
        key: FeatureKey,
        train_table: &Table,
        valid_table: &Table,
        columns: &[crate::schema::ColumnSchema],
        targets: Targets<'_>,
        y_valid: &[f64],
        parent: Option<&FeaturePipeline>,
    ) -> Result<&Prepared> {
        self.uses += 1;
        let index = match self.entries.iter().position(|p| p.key == key) {
            Some(i) => i,
            None => {
                // Room is made before the new features are computed (assuming they are as
                // large as the largest kept), so that old and new never all coexist.
                let largest = self.entries.iter().map(Prepared::bytes).max().unwrap_or(0);
                self.evict_beyond(PREPARED_BYTES.saturating_sub(largest));
                let (pipeline, x) = match parent.filter(|_| key.from_parent) {
                    Some(p) => (p.clone(), p.transform(train_table)?),
                    None => FeaturePipeline::fit_transform(
                        train_table,
                        columns,
                        key.encoding,
                        key.options,
                        targets,
                    )?,
                };
                let embedded = pipeline.embedded_features();
                let categorical = pipeline.category_code_features();
                let valid = Labelled {
                    x: pipeline.transform(valid_table)?,
                    y: y_valid.to_vec(),
                    embedded: embedded.clone(),
                    categorical: categorical.clone(),
                };
                let prepared = Prepared {
                    key,
                    pipeline: Arc::new(pipeline),
                    train: Arc::new(Labelled {
                        x,
                        y: targets.y.to_vec(),
                        embedded,
                        categorical,
                    }),
                    valid: Arc::new(valid),
                    last_used: 0,
                };
                self.evict_beyond(PREPARED_BYTES.saturating_sub(prepared.bytes()));
                self.entries.push(prepared);
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        entry.last_used = self.uses;
        Ok(entry)
    }

    /// Drop the least recently used entries until the rest take at most `bytes`.
    fn evict_beyond(&mut self, bytes: usize) {
        self.entries.sort_by_key(|p| std::cmp::Reverse(p.last_used));
        let mut total = 0;
        self.entries.retain(|p| {
            total += p.bytes();
            total <= bytes
        });
    }
}

impl Prepared {
    /// Bytes of its feature matrices.
    fn bytes(&self) -> usize {
        (self.train.x.data.len() + self.valid.x.data.len()) * size_of::<f64>()
    }
}

/// Add the feature options worth searching on this data to every family's space, with their
/// defaults in each default point. Where a categorical column has more levels than one-hot
/// keeps, target encoding is also among the points tried first.
fn add_feature_search(
    spaces: &mut [exeml_core::search::SearchSpace],
    columns: &[crate::schema::ColumnSchema],
    problem: Problem,
) -> Result<()> {
    let many_levels = features::has_many_level_categories(columns);
    for space in spaces {
        let encoding = family::encoding_of(&space.family)?;
        let network = space.family == mlp::FAMILY;
        let params = features::search_params(encoding, columns, problem, network);
        for (name, range, default) in &params {
            space.params.insert((*name).to_string(), range.clone());
            for point in &mut space.defaults {
                point.insert((*name).to_string(), default.clone());
            }
        }
        let offers_target = params.iter().any(|(name, range, _)| {
            *name == features::CATEGORIES_PARAM
                && matches!(range, ParamRange::Choice { options } if options.iter().any(|o| o == "target"))
        });
        if many_levels && offers_target {
            if let Some(first) = space.defaults.first() {
                let mut point = first.clone();
                point.insert(
                    features::CATEGORIES_PARAM.to_string(),
                    ParamValue::Text("target".into()),
                );
                space.defaults.push(point);
            }
        }
    }
    Ok(())
}

/// Steps (epochs) every trial may run before early stopping of bad trials can stop it, and the
/// finished trials of a family needed before it stops any.
const STOP_GRACE_STEPS: usize = 8;
const STOP_AFTER_TRIALS: usize = 3;

/// Share of the limit kept for the refit on all rows when the search ran on a sample.
const SAMPLED_REFIT_SHARE: f64 = 0.35;

/// Time kept from the search for finishing: 5 % of the limit, at most 30 s.
fn finishing_reserve(limit: std::time::Duration) -> std::time::Duration {
    limit.mul_f64(0.05).min(std::time::Duration::from_secs(30))
}

/// The family name of a weighted average of several models in manifests and leaderboards.
pub const ENSEMBLE_FAMILY: &str = "ensemble";

/// How many trained models the search keeps as ensemble candidates (besides the best of each
/// family, always kept for diversity).
const KEPT_CANDIDATES: usize = 12;

/// A trained trial kept for the ensemble: its model and validation predictions.
struct Candidate {
    trial: Trial,
    key: FeatureKey,
    pipeline: Arc<FeaturePipeline>,
    estimator: Estimator,
    out: Vec<f64>,
    score: f64,
    fit_secs: f64,
}

/// Add `candidate`, keeping the candidates best first and at most [`KEPT_CANDIDATES`] of them
/// plus the best of each family.
fn keep_candidate(candidates: &mut Vec<Candidate>, candidate: Candidate) {
    candidates.push(candidate);
    // Stable: among equal scores the earlier trial stays first.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut seen_families: Vec<String> = Vec::new();
    let mut rank = 0;
    candidates.retain(|c| {
        let first_of_family = !seen_families.contains(&c.trial.family);
        if first_of_family {
            seen_families.push(c.trial.family.clone());
        }
        rank += 1;
        rank <= KEPT_CANDIDATES || first_of_family
    });
}

/// The ensemble limits of a preference: none for `performance_first` (one fast model).
fn ensemble_limits(preference: Preference) -> Option<EnsembleLimits> {
    match preference {
        Preference::PerformanceFirst => None,
        Preference::Balance => Some(EnsembleLimits {
            rounds: 25,
            max_members: 4,
        }),
        Preference::AccuracyFirst => Some(EnsembleLimits {
            rounds: 50,
            max_members: KEPT_CANDIDATES,
        }),
    }
}

/// The weights of the final model over `candidates` (best first): the greedy ensemble when it
/// scores better on validation than the best single model and meets the constraints, else the
/// best model alone. Also returns the ensemble's leaderboard row when one was formed.
#[allow(clippy::too_many_arguments)]
fn choose_ensemble(
    candidates: &[Candidate],
    problem: Problem,
    y_valid: &[f64],
    valid_table: &Table,
    preference: Preference,
    constraints: &Constraints,
    trial_id: usize,
) -> (Vec<(usize, f64)>, Option<TrialRecord>) {
    let single = vec![(0, 1.0)];
    let Some(limits) = ensemble_limits(preference) else {
        return (single, None);
    };
    if candidates.len() < 2 {
        return (single, None);
    }
    let started = Instant::now();
    let refs: Vec<&[f64]> = candidates.iter().map(|c| c.out.as_slice()).collect();
    let Some(selection) = ensemble::select(problem, y_valid, &refs, limits) else {
        return (single, None);
    };
    if selection.weights.len() < 2 {
        return (single, None);
    }
    let out = ensemble::blend(problem, &refs, &selection.weights);
    let score = validation_score(problem, y_valid, &out);
    let selection_secs = started.elapsed().as_secs_f64();
    let parts: Vec<(&FeaturePipeline, &Estimator, f64)> = selection
        .weights
        .iter()
        .map(|&(i, w)| (&*candidates[i].pipeline, &candidates[i].estimator, w))
        .collect();
    let predict_started = Instant::now();
    let latency_ms = single_row_latency_ms(&parts, valid_table).ok();
    let predict_secs = predict_started.elapsed().as_secs_f64();
    let size_mb = constraints
        .max_model_mb
        .and_then(|_| saved_megabytes(&parts, trial_id).ok());
    let best = candidates[0].score;
    let note = constraints.violation(latency_ms, size_mb).or_else(|| {
        (score <= best).then(|| {
            format!(
                "not used: validation {} {} is not better than the best single model's {}",
                score_name(problem),
                round4(score),
                round4(best)
            )
        })
    });
    let members: Vec<String> = selection
        .weights
        .iter()
        .map(|&(i, w)| {
            format!(
                "{}#{} {:.2}",
                candidates[i].trial.family,
                candidates[i].trial.id + 1,
                w
            )
        })
        .collect();
    let record = TrialRecord {
        trial: Trial {
            id: trial_id,
            family: ENSEMBLE_FAMILY.into(),
            params: ParamPoint::from([(
                "members".to_string(),
                ParamValue::Text(members.join(" + ")),
            )]),
        },
        outcome: TrialOutcome {
            score: Some(score),
            metric: score_name(problem).into(),
            fit_secs: selection_secs,
            predict_secs,
            note: note.clone(),
            latency_ms,
            size_mb,
        },
    };
    let weights = if note.is_none() {
        selection.weights
    } else {
        single
    };
    (weights, Some(record))
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// The summary params of an ensemble: `members` = `family weight + …`.
fn ensemble_params(members: &[MemberManifest]) -> ParamPoint {
    let parts: Vec<String> = members
        .iter()
        .map(|m| match m.trial {
            Some(t) => format!("{}#{} {:.2}", m.family, t + 1, m.weight),
            None => format!("{} {:.2}", m.family, m.weight),
        })
        .collect();
    ParamPoint::from([("members".to_string(), ParamValue::Text(parts.join(" + ")))])
}

/// The pipelines and members of the chosen models as the search fitted them (no refit).
fn searched_parts(chosen: Vec<(Candidate, f64)>) -> RefitParts {
    let mut pipelines: Vec<FeaturePipeline> = Vec::new();
    let mut keys: Vec<FeatureKey> = Vec::new();
    let mut estimators = Vec::new();
    for (c, _) in chosen {
        let index = match keys.iter().position(|k| *k == c.key) {
            Some(i) => i,
            None => {
                keys.push(c.key);
                pipelines.push((*c.pipeline).clone());
                pipelines.len() - 1
            }
        };
        estimators.push((index, c.estimator));
    }
    (pipelines, estimators)
}

/// Move into `chosen` (with weight 0) the best candidate of each family it lacks, from `pool`
/// (candidates best first, `None` where taken), as far as bagging them all over `shape`
/// (folds, rows, searched rows) is estimated to take at most `allowed_secs`.
fn add_family_bests(
    chosen: &mut Vec<(Candidate, f64)>,
    mut pool: Vec<Option<Candidate>>,
    shape: (usize, usize, usize),
    allowed_secs: f64,
) {
    let mut families: Vec<String> = chosen.iter().map(|(c, _)| c.trial.family.clone()).collect();
    let mut others: Vec<usize> = Vec::new();
    for (i, slot) in pool.iter().enumerate() {
        if let Some(c) = slot
            .as_ref()
            .filter(|c| !families.contains(&c.trial.family))
        {
            families.push(c.trial.family.clone());
            others.push(i);
        }
    }
    let chosen_secs: Vec<f64> = chosen.iter().map(|(c, _)| c.fit_secs).collect();
    let other_secs: Vec<f64> = others
        .iter()
        .filter_map(|&i| pool[i].as_ref().map(|c| c.fit_secs))
        .collect();
    for e in bagging::affordable_extras(&chosen_secs, &other_secs, shape, allowed_secs) {
        if let Some(c) = pool[others[e]].take() {
            chosen.push((c, 0.0));
        }
    }
}

/// What bagging reads besides the chosen models.
struct BagInputs<'a> {
    table: &'a Table,
    columns: &'a [crate::schema::ColumnSchema],
    y: &'a [f64],
    problem: Problem,
    preference: Preference,
    /// Whether a stacking layer is tried over the bagged configurations.
    stack: bool,
}

/// The chosen configurations bagged over k folds (see [`bagging`]).
struct Bagged {
    folds: usize,
    pipelines: Vec<FeaturePipeline>,
    /// Fold-major: fold 0's fit of each kept configuration, then fold 1's, …
    estimators: Vec<(usize, Estimator)>,
    /// The kept configurations (indices into the chosen ones) and their weights, chosen on the
    /// out-of-fold predictions.
    configs: Vec<(usize, f64)>,
    /// Every bagged configuration (index into the chosen ones) with its own out-of-fold score,
    /// best first: what the selection chose from.
    scores: Vec<(usize, f64)>,
    /// The blended (or stacked) out-of-fold predictions of every row, and their targets.
    oof: Vec<f64>,
    y: Vec<f64>,
    /// The stacking layer that combines the kept configurations (all bagged ones, in
    /// `configs` order) when it beat the weighted average.
    stacking: Option<Stacking>,
    /// What the tried stacking layer scored, used or not (for the leaderboard).
    stacking_summary: Option<String>,
}

impl Bagged {
    /// One manifest member per fit: the configuration's weight shared by its k fits.
    /// With a stacker the k fits of a configuration are averaged into its stacker input.
    fn members(&self, chosen: &[(Candidate, f64)]) -> Vec<MemberManifest> {
        let stacked = self.stacking.is_some();
        (0..self.folds)
            .flat_map(|fold| {
                self.configs
                    .iter()
                    .enumerate()
                    .map(move |(input, &(i, w))| MemberManifest {
                        family: chosen[i].0.trial.family.clone(),
                        params: chosen[i].0.trial.params.clone(),
                        weight: if stacked { 1.0 } else { w } / self.folds as f64,
                        trial: Some(chosen[i].0.trial.id),
                        folder: String::new(),
                        pipeline: crate::manifest::default_pipeline_file(),
                        fold: Some(fold),
                        input: stacked.then_some(input),
                    })
            })
            .collect()
    }

    /// The leaderboard row of the bagged model, with its measured footprint and, when it
    /// breaks a deployment limit, the note that excludes it.
    fn record(
        &self,
        chosen: &[(Candidate, f64)],
        problem: Problem,
        id: usize,
        (latency_ms, size_mb): (Option<f64>, Option<f64>),
        note: Option<String>,
    ) -> TrialRecord {
        let considered: Vec<String> = self
            .scores
            .iter()
            .map(|&(i, score)| {
                let trial = &chosen[i].0.trial;
                format!("{}#{} {}", trial.family, trial.id + 1, round4(score))
            })
            .collect();
        let mut params = ParamPoint::from([
            (
                "members".to_string(),
                ParamValue::Text(self.member_names(chosen)),
            ),
            ("folds".to_string(), ParamValue::Int(self.folds as i64)),
            (
                "out_of_fold".to_string(),
                ParamValue::Text(considered.join(", ")),
            ),
        ]);
        if let Some(summary) = &self.stacking_summary {
            params.insert("stacking".into(), ParamValue::Text(summary.clone()));
        }
        let trial = Trial {
            id,
            family: BAGGED_FAMILY.into(),
            params,
        };
        self.scored_record(trial, problem, (latency_ms, size_mb), note)
    }

    /// The leaderboard row of `trial`, a model scored by this bagged model's out-of-fold
    /// predictions, with its footprint and the note that excludes it, if any.
    fn scored_record(
        &self,
        trial: Trial,
        problem: Problem,
        (latency_ms, size_mb): (Option<f64>, Option<f64>),
        note: Option<String>,
    ) -> TrialRecord {
        TrialRecord {
            trial,
            outcome: TrialOutcome {
                score: Some(validation_score(problem, &self.y, &self.oof)),
                metric: score_name(problem).into(),
                note,
                latency_ms,
                size_mb,
                ..Default::default()
            },
        }
    }

    /// Every fit with its weight: the configuration's weight shared by its k fits.
    fn parts(&self) -> Vec<(&FeaturePipeline, &Estimator, f64)> {
        let per_fold = self.configs.len().max(1);
        self.estimators
            .iter()
            .enumerate()
            .map(|(i, (p, e))| {
                let w = self.configs[i % per_fold].1 / self.folds as f64;
                (&self.pipelines[*p], e, w)
            })
            .collect()
    }

    /// The kept configurations as `family#trial weight`, heaviest first.
    fn member_names(&self, chosen: &[(Candidate, f64)]) -> String {
        let names: Vec<String> = self
            .configs
            .iter()
            .map(|&(i, w)| {
                let trial = &chosen[i].0.trial;
                format!("{}#{} {w:.2}", trial.family, trial.id + 1)
            })
            .collect();
        names.join(" + ")
    }
}

/// Single-row latency of a model made of `parts` (always) and its saved size (when a size
/// limit is set).
fn footprint(
    parts: &[(&FeaturePipeline, &Estimator, f64)],
    constraints: &Constraints,
    valid_table: &Table,
    scratch_id: usize,
) -> (Option<f64>, Option<f64>) {
    let latency = single_row_latency_ms(parts, valid_table).ok();
    let size = constraints
        .max_model_mb
        .and_then(|_| saved_megabytes(parts, scratch_id).ok());
    (latency, size)
}

/// The configurations a bagged model kept, each refitted once on all rows with the weights
/// chosen out of fold, as AutoGluon's `refit_full`: one fit per configuration instead of k,
/// so k times faster to predict and about k times smaller, trained on a quarter more rows
/// than each fold's fit.
struct BagRefit {
    pipelines: Vec<FeaturePipeline>,
    /// One fit per kept configuration of the bagged model, in its order.
    estimators: Vec<(usize, Estimator)>,
    rows: usize,
}

impl BagRefit {
    /// One manifest member per configuration, with its out-of-fold weight.
    /// With a stacker each refitted configuration is its own stacker input.
    fn members(&self, bagged: &Bagged, chosen: &[(Candidate, f64)]) -> Vec<MemberManifest> {
        let stacked = bagged.stacking.is_some();
        bagged
            .configs
            .iter()
            .enumerate()
            .map(|(input, &(i, w))| MemberManifest {
                family: chosen[i].0.trial.family.clone(),
                params: chosen[i].0.trial.params.clone(),
                weight: if stacked { 1.0 } else { w },
                trial: Some(chosen[i].0.trial.id),
                folder: String::new(),
                pipeline: crate::manifest::default_pipeline_file(),
                fold: None,
                input: stacked.then_some(input),
            })
            .collect()
    }

    fn parts(&self, bagged: &Bagged) -> Vec<(&FeaturePipeline, &Estimator, f64)> {
        self.estimators
            .iter()
            .zip(&bagged.configs)
            .map(|((p, e), &(_, w))| (&self.pipelines[*p], e, w))
            .collect()
    }

    /// The leaderboard row of the refitted model. No row is held out of its fits, so its score
    /// is the out-of-fold score of the bagged model it comes from (the params say so).
    fn record(
        &self,
        bagged: &Bagged,
        chosen: &[(Candidate, f64)],
        problem: Problem,
        id: usize,
        footprint: (Option<f64>, Option<f64>),
        note: Option<String>,
    ) -> TrialRecord {
        let params = ParamPoint::from([
            (
                "members".to_string(),
                ParamValue::Text(bagged.member_names(chosen)),
            ),
            ("rows".to_string(), ParamValue::Int(self.rows as i64)),
            (
                "score".to_string(),
                ParamValue::Text(format!(
                    "out of fold, of the {}-fold bagged model",
                    bagged.folds
                )),
            ),
        ]);
        let trial = Trial {
            id,
            family: REFIT_FULL_FAMILY.into(),
            params,
        };
        bagged.scored_record(trial, problem, footprint, note)
    }
}

/// The family name of a bagged model refitted on all rows in leaderboards.
pub const REFIT_FULL_FAMILY: &str = "refit_full";

/// Refit the configurations `bagged` kept once each on all `rows` (see [`BagRefit`]), when the
/// time left covers it: bagging took `bag_secs` for k fits of every bagged configuration on
/// (k − 1)/k of the rows, so one fit of the kept ones on all rows takes about the kept
/// configurations' share of it over (k − 1). `None` when a fit fails or the time runs out
/// (a booster cut short by the clock would be worse than the bagged model it replaces).
fn refit_bag(
    bagged: &Bagged,
    chosen: &[(Candidate, f64)],
    rows: &[usize],
    inputs: &BagInputs<'_>,
    ctx: &FitContext<'_>,
    bag_secs: f64,
) -> Option<BagRefit> {
    let kept: Vec<&Candidate> = bagged.configs.iter().map(|&(i, _)| &chosen[i].0).collect();
    let all_secs: f64 = chosen.iter().map(|(c, _)| c.fit_secs).sum();
    let kept_secs: f64 = kept.iter().map(|c| c.fit_secs).sum();
    let share = if all_secs > 0.0 {
        kept_secs / all_secs
    } else {
        1.0
    };
    let needed = bag_secs * share / (bagged.folds - 1).max(1) as f64 * 1.25;
    if needed >= ctx.budget.remaining().as_secs_f64() {
        return None;
    }
    let (pipelines, estimators) = refit_all(
        &kept,
        rows,
        inputs.table,
        inputs.columns,
        inputs.y,
        inputs.problem,
        ctx,
        "refitting the bagged models",
    )?;
    (!ctx.budget.exhausted()).then_some(BagRefit {
        pipelines,
        estimators,
        rows: rows.len(),
    })
}

/// What the search hands to the manifest: the final model's parts and how it was made.
struct Shipped {
    members: Vec<MemberManifest>,
    /// The stacking layer over the members, if the bagged model has one.
    stacking: Option<Stacking>,
    pipelines: Vec<FeaturePipeline>,
    estimators: Vec<(usize, Estimator)>,
    refit: bool,
    refit_rows: Option<usize>,
    bagged_folds: Option<usize>,
    refit_of_folds: Option<usize>,
    /// The leaderboard row that names the model (a bagged model or its refit), if any.
    headline: Option<Trial>,
}

/// The family name of a bagged model in leaderboards.
pub const BAGGED_FAMILY: &str = "bagged";

/// Fit each chosen configuration on all `rows` but one fold, for each of `folds` folds; collect
/// each row's prediction by the fits that did not see it, and choose the configurations'
/// weights on those (greedy selection, as for the search's ensemble). `None` when a fit fails
/// or the budget runs out (the caller refits instead).
fn bag_all(
    chosen: &[(Candidate, f64)],
    rows: &[usize],
    folds: usize,
    inputs: &BagInputs<'_>,
    ctx: &FitContext<'_>,
) -> Option<Bagged> {
    let problem = inputs.problem;
    let width = problem.output_width();
    let y: Vec<f64> = rows.iter().map(|&r| inputs.y[r]).collect();
    let fold_of = bagging::fold_ids(&y, problem, folds, ctx.seed);
    let candidates: Vec<&Candidate> = chosen.iter().map(|(c, _)| c).collect();
    let mut oof: Vec<Vec<f64>> = vec![vec![0.0; rows.len() * width]; chosen.len()];
    let mut pipelines: Vec<FeaturePipeline> = Vec::new();
    // Per fold, each chosen configuration's fit (pipeline index, model).
    let mut fits: Vec<Vec<Option<(usize, Estimator)>>> = Vec::with_capacity(folds);
    for fold in 0..folds {
        let (held, fit_on): (Vec<usize>, Vec<usize>) =
            (0..rows.len()).partition(|&i| fold_of[i] == fold);
        let fit_rows: Vec<usize> = fit_on.iter().map(|&i| rows[i]).collect();
        let label = format!("bagging: fold {}/{folds}", fold + 1);
        let (fold_pipelines, fold_estimators) = refit_all(
            &candidates,
            &fit_rows,
            inputs.table,
            inputs.columns,
            inputs.y,
            problem,
            ctx,
            &label,
        )?;
        let held_table = inputs
            .table
            .take(&held.iter().map(|&i| rows[i]).collect::<Vec<_>>());
        let features: Vec<features::Matrix> = fold_pipelines
            .iter()
            .map(|p| p.transform(&held_table))
            .collect::<Result<_>>()
            .ok()?;
        for (config, (p, estimator)) in fold_estimators.iter().enumerate() {
            let out = estimator.predict(&features[*p]);
            for (j, &i) in held.iter().enumerate() {
                oof[config][i * width..(i + 1) * width]
                    .copy_from_slice(&out[j * width..(j + 1) * width]);
            }
        }
        let offset = pipelines.len();
        pipelines.extend(fold_pipelines);
        fits.push(
            fold_estimators
                .into_iter()
                .map(|(p, e)| Some((p + offset, e)))
                .collect(),
        );
    }
    let refs: Vec<&[f64]> = oof.iter().map(Vec::as_slice).collect();
    // The selection starts from the best configuration by its out-of-fold score.
    let mut by_score: Vec<(usize, f64)> = refs
        .iter()
        .map(|out| validation_score(problem, &y, out))
        .enumerate()
        .collect();
    by_score.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let ranked: Vec<&[f64]> = by_score.iter().map(|&(i, _)| refs[i]).collect();
    let selection = ensemble_limits(inputs.preference)
        .filter(|_| chosen.len() > 1)
        .and_then(|limits| ensemble::select(problem, &y, &ranked, limits));
    let mut weights: Vec<f64> = chosen.iter().map(|(_, w)| *w).collect();
    if let Some(selection) = selection {
        weights = vec![0.0; chosen.len()];
        for (rank, w) in selection.weights {
            weights[by_score[rank].0] = w;
        }
    }
    let pairs: Vec<(usize, f64)> = weights.iter().copied().enumerate().collect();
    let mut blended = ensemble::blend(problem, &refs, &pairs);
    // Configurations the out-of-fold selection dropped leave the model; the heaviest first.
    let mut configs: Vec<(usize, f64)> = pairs.into_iter().filter(|&(_, w)| w > 0.0).collect();
    configs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    // One stacking layer over every bagged configuration (best first), kept when it beats the
    // weighted average in cross-validation on the out-of-fold predictions.
    let tried = (inputs.stack && chosen.len() > 1)
        .then(|| {
            ctx.progress.phase("stacking");
            stacking::fit(
                problem,
                &y,
                &ranked,
                ensemble_limits(inputs.preference),
                ctx,
            )
        })
        .flatten();
    let stacking_summary = tried.as_ref().map(Stacking::summary);
    let stacking = tried.filter(Stacking::beats_blend);
    if let Some(stacking) = &stacking {
        let share = 1.0 / by_score.len() as f64;
        configs = by_score.iter().map(|&(i, _)| (i, share)).collect();
        blended = stacking.out.clone();
    }
    let mut estimators = Vec::with_capacity(folds * configs.len());
    for fold in &mut fits {
        for &(config, _) in &configs {
            estimators.push(fold[config].take()?);
        }
    }
    // Only the pipelines the kept fits read are saved.
    let mut kept: Vec<Option<FeaturePipeline>> = pipelines.into_iter().map(Some).collect();
    let mut pipelines = Vec::new();
    let mut renumbered: HashMap<usize, usize> = HashMap::new();
    for (p, _) in &mut estimators {
        *p = *renumbered.entry(*p).or_insert_with(|| {
            pipelines.push(kept[*p].take());
            pipelines.len() - 1
        });
    }
    let pipelines: Vec<FeaturePipeline> = pipelines.into_iter().collect::<Option<_>>()?;
    Some(Bagged {
        folds,
        pipelines,
        estimators,
        configs,
        scores: by_score,
        oof: blended,
        y,
        stacking,
        stacking_summary,
    })
}

/// The rows to refit the chosen models on: all training and validation rows when the time left
/// covers it (estimated from the trials' fit times, which grow about linearly with the rows),
/// else as large a stratified sample of them as it covers, if that is at least a quarter more
/// rows than the search fitted on; `None` when a refit would not add enough rows to be worth it.
fn refit_rows(
    chosen: &[(Candidate, f64)],
    all_rows: &[usize],
    y: &[f64],
    problem: Problem,
    ctx: &FitContext<'_>,
    searched_train_rows: usize,
) -> Option<Vec<usize>> {
    if ctx.budget.is_cancelled() {
        return None;
    }
    let fit_secs: f64 = chosen.iter().map(|(c, _)| c.fit_secs).sum();
    let secs_per_row = fit_secs * 1.3 / searched_train_rows.max(1) as f64;
    let spare = ctx.budget.remaining().as_secs_f64() - 0.05;
    let affordable = if secs_per_row > 0.0 {
        spare / secs_per_row
    } else {
        f64::INFINITY
    };
    if affordable >= all_rows.len() as f64 {
        Some(all_rows.to_vec())
    } else if affordable >= searched_train_rows as f64 * 1.25 {
        Some(sample::stratified_sample(
            all_rows,
            y,
            problem,
            affordable as usize,
            ctx.seed ^ 2,
        ))
    } else {
        None
    }
}

/// Refit the chosen models on `rows` (the training and validation rows together, or a sample of
/// them: see [`refit_rows`]), as AutoGluon's `refit_full` and FLAML's `retrain_full` do: more
/// data for the model that is shipped. `None` when any refit fails; the models fitted during the
/// search are kept then.
#[allow(clippy::too_many_arguments)]
fn refit_all(
    chosen: &[&Candidate],
    rows: &[usize],
    table: &Table,
    columns: &[crate::schema::ColumnSchema],
    y: &[f64],
    problem: Problem,
    ctx: &FitContext<'_>,
    label: &str,
) -> Option<RefitParts> {
    ctx.progress
        .phase(&format!("{label} on {} rows", rows.len()));
    let all_table = table.take(rows);
    let y_all: Vec<f64> = rows.iter().map(|&r| y[r]).collect();
    let mut keys: Vec<FeatureKey> = Vec::new();
    let mut pipelines: Vec<FeaturePipeline> = Vec::new();
    let mut data: Vec<Labelled> = Vec::new();
    let mut estimators = Vec::new();
    let targets = Targets {
        y: &y_all,
        problem,
        seed: ctx.seed,
    };
    for c in chosen {
        let index = match keys.iter().position(|k| *k == c.key) {
            Some(i) => i,
            None => {
                // A continued booster keeps reading the parent's features.
                let (pipeline, x) = if c.key.from_parent {
                    (
                        (*c.pipeline).clone(),
                        c.pipeline.transform(&all_table).ok()?,
                    )
                } else {
                    FeaturePipeline::fit_transform(
                        &all_table,
                        columns,
                        c.key.encoding,
                        c.key.options,
                        targets,
                    )
                    .ok()?
                };
                data.push(Labelled {
                    x,
                    y: y_all.clone(),
                    embedded: pipeline.embedded_features(),
                    categorical: pipeline.category_code_features(),
                });
                pipelines.push(pipeline);
                keys.push(c.key);
                pipelines.len() - 1
            }
        };
        let all = &data[index];
        let estimator = match &c.estimator {
            Estimator::Gbdt(fitted) => {
                gbdt::refit(&c.trial.params, fitted, all, ctx.seed).map(Estimator::Gbdt)
            }
            Estimator::HistGbdt(fitted) => {
                hist_gbdt::refit(&c.trial.params, fitted, all, ctx).map(Estimator::HistGbdt)
            }
            // The network trains for the epochs early stopping kept.
            Estimator::Mlp(fitted) => mlp::MlpTrainer { problem }
                .fit(&fitted.refit_point(&c.trial.params), all, all, ctx)
                .map(Estimator::Mlp),
            _ => {
                // No validation part is left (k-NN sizes what it stores by the cost of
                // scoring the validation part: none here).
                let none = Labelled {
                    x: crate::features::Matrix {
                        data: Vec::new(),
                        rows: 0,
                        cols: all.x.cols,
                    },
                    y: Vec::new(),
                    embedded: all.embedded.clone(),
                    categorical: all.categorical.clone(),
                };
                fit_family(&c.trial, problem, (all, &none), None, ctx)
            }
        }
        .ok()?;
        if ctx.budget.is_cancelled() {
            return None;
        }
        estimators.push((index, estimator));
    }
    Some((pipelines, estimators))
}

/// True when the refitted model still meets the deployment limits (more rows can make a model
/// slower or larger: k-NN stores them, forests grow more leaves); measured only when limits
/// are set.
fn refit_meets(
    (pipelines, estimators): &RefitParts,
    chosen: &[(Candidate, f64)],
    constraints: &Constraints,
    valid_table: &Table,
    scratch_id: usize,
) -> bool {
    if constraints.is_empty() {
        return true;
    }
    let parts: Vec<(&FeaturePipeline, &Estimator, f64)> = estimators
        .iter()
        .zip(chosen)
        .map(|((p, e), (_, w))| (&pipelines[*p], e, *w))
        .collect();
    let (latency, size) = footprint(&parts, constraints, valid_table, scratch_id);
    constraints.violation(latency, size).is_none()
}

/// The pipelines and the members (pipeline index, estimator) of a refitted model.
type RefitParts = (Vec<FeaturePipeline>, Vec<(usize, Estimator)>);

/// The share of the remaining search time a trial may use: a family's first trial gets an
/// equal share with the other families not tried yet, so that one slow default point (a
/// full-batch softmax regression on a large table, say) cannot take the time every other
/// family needs for its first model; later trials may use all of it. The run's very first
/// trial (the booster's default point) may take up to [`FIRST_MODEL_SHARE`]: a booster cut
/// short after a sixth of the time is a poor model on a large table, and the other families
/// are rarely better there.
fn first_trial_share(
    spaces: &[exeml_core::search::SearchSpace],
    history: &[TrialRecord],
    family: &str,
) -> f64 {
    let tried = |f: &str| history.iter().any(|r| r.trial.family == f);
    if tried(family) {
        return 1.0;
    }
    let untried = spaces.iter().filter(|s| !tried(&s.family)).count();
    let equal = 1.0 / untried.max(1) as f64;
    if history.is_empty() {
        equal.max(FIRST_MODEL_SHARE)
    } else {
        equal
    }
}

/// The most of the search time the run's first trial may take (see [`first_trial_share`]).
const FIRST_MODEL_SHARE: f64 = 0.5;

/// The leaderboard note of a fit that continued an earlier booster.
fn continued_note(estimator: &Estimator) -> Option<String> {
    match estimator {
        Estimator::HistGbdt(m) => m.continued_rounds().map(|r| {
            format!(
                "continues the parent's booster ({r} rounds) with {} new rounds",
                m.rounds() - r
            )
        }),
        _ => None,
    }
}

/// Most trials [`trial_concurrency`] runs at once by itself.
const MAX_AUTO_CONCURRENCY: usize = 4;

/// Search samples with more feature cells than this fit one trial at a time by default: their
/// fits spread over every core by themselves, and concurrent trials would multiply the memory
/// of their features and models.
const MAX_CONCURRENT_CELLS: usize = 2_000_000;

/// How many trials the search fits at once: `asked` when given (at least 1), else one per
/// thread rayon may use (at most [`MAX_AUTO_CONCURRENCY`], each trial then getting an equal
/// share of the threads) when the search sample has at most [`MAX_CONCURRENT_CELLS`] feature
/// cells, else 1. A
/// `deterministic` run decides without the machine: 1 unless asked, since which trials are
/// proposed depends on how many are proposed before any is observed. On a small
/// table a fit cannot keep many cores busy (a few thousand rows split into few chunks, a
/// network's small matrix products), so running trials side by side is what uses the machine,
/// as FLAML's `n_concurrent_trials` and AutoGluon's parallel fold fits do. Measured on 2 cores
/// (docs/benchmarks.md): two at a time scored as well as one on 12 small tables over two seeds.
pub fn trial_concurrency(
    asked: Option<usize>,
    deterministic: bool,
    threads: usize,
    cells: usize,
) -> Result<usize> {
    match asked {
        Some(0) => Err(Error::invalid("parallel_trials", "must be at least 1")),
        Some(n) => Ok(n),
        None if !deterministic && cells <= MAX_CONCURRENT_CELLS => {
            Ok(threads.clamp(1, MAX_AUTO_CONCURRENCY))
        }
        None => Ok(1),
    }
}

/// A proposed trial with the features it is fitted on.
struct TrialJob<'p> {
    trial: Trial,
    key: FeatureKey,
    parent: Option<&'p ParentBooster>,
    pipeline: Arc<FeaturePipeline>,
    train: Arc<Labelled>,
    valid: Arc<Labelled>,
    /// Its share of the search budget ([`first_trial_share`]).
    share: f64,
}

/// What fitting a [`TrialJob`] gave.
struct TrialFit {
    fitted: Result<Estimator>,
    fit_secs: f64,
    /// The step early stopping stopped it at, if it did.
    stopped_at: Option<usize>,
}

/// Fit one trial under its family's early-stopping rule and its share of the budget.
fn fit_trial(
    job: &TrialJob<'_>,
    problem: Problem,
    ctx: &FitContext<'_>,
    stopping: &HashMap<String, MedianStopping>,
) -> TrialFit {
    let started = Instant::now();
    let monitor = stopping.get(&job.trial.family).map(MedianStopping::trial);
    let trial_ctx = FitContext {
        monitor: monitor
            .as_ref()
            .map_or(&NeverStop as &dyn TrialMonitor, |m| m as &dyn TrialMonitor),
        budget: ctx.budget.slice(job.share),
        ..ctx.clone()
    };
    let fitted = fit_family(
        &job.trial,
        problem,
        (&job.train, &job.valid),
        job.parent.map(|p| &p.booster),
        &trial_ctx,
    );
    TrialFit {
        fitted,
        fit_secs: started.elapsed().as_secs_f64(),
        stopped_at: monitor.and_then(StoppingTrial::end),
    }
}

/// Fit the trials of a batch: here when there is one, else each on its own thread with its own
/// rayon pool of an equal share of the cores (so that the fits' parallel loops do not all
/// crowd the one global pool). Results come back in the batch's order.
fn fit_trials(
    jobs: &[TrialJob<'_>],
    problem: Problem,
    ctx: &FitContext<'_>,
    stopping: &HashMap<String, MedianStopping>,
) -> Vec<TrialFit> {
    if jobs.len() <= 1 {
        return jobs
            .iter()
            .map(|job| fit_trial(job, problem, ctx, stopping))
            .collect();
    }
    let threads = (rayon::current_num_threads() / jobs.len()).max(1);
    std::thread::scope(|scope| {
        let running: Vec<_> = jobs
            .iter()
            .map(|job| {
                scope.spawn(move || {
                    let fit = || fit_trial(job, problem, ctx, stopping);
                    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                        Ok(pool) => pool.install(fit),
                        Err(_) => fit(),
                    }
                })
            })
            .collect();
        running
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|panic| TrialFit {
                    fitted: Err(Error::invalid(
                        "trial",
                        format!(
                            "the fit stopped with an internal error: {}",
                            panic_text(&*panic)
                        ),
                    )),
                    fit_secs: 0.0,
                    stopped_at: None,
                })
            })
            .collect()
    })
}

/// The message of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// Fit `trial`'s family; `parent` is an earlier booster a `hist_gbdt` trial continues.
fn fit_family(
    trial: &Trial,
    problem: Problem,
    (train, valid): (&Labelled, &Labelled),
    parent: Option<&Arc<Booster>>,
    ctx: &FitContext<'_>,
) -> Result<Estimator> {
    match trial.family.as_str() {
        gbdt::FAMILY => gbdt::GbdtTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Gbdt),
        hist_gbdt::FAMILY => hist_gbdt::HistGbdtTrainer {
            problem,
            parent: parent.cloned(),
        }
        .fit(&trial.params, train, valid, ctx)
        .map(Estimator::HistGbdt),
        linear::FAMILY => linear::LinearTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Linear),
        knn::FAMILY => knn::KnnTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Knn),
        forest::FAMILY => forest::ForestTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Forest),
        mlp::FAMILY => mlp::MlpTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Mlp),
        other => Err(Error::invalid(
            "model family",
            format!("unknown family `{other}`"),
        )),
    }
}

/// Median time to predict one validation row through the whole pipeline (one-row table →
/// features → each weighted model → average), as a single-row request to the service does.
fn single_row_latency_ms(
    parts: &[(&FeaturePipeline, &Estimator, f64)],
    rows: &Table,
) -> Result<f64> {
    let n = rows.n_rows().clamp(1, 25);
    let mut next = 0;
    median_latency_ms(25, 0.5, || {
        let row = rows.take(&[next % n]);
        next += 1;
        let mut sum: Vec<f64> = Vec::new();
        // As the saved model predicts: each distinct pipeline transforms the row once.
        let mut transformed: Vec<(&FeaturePipeline, features::Matrix)> = Vec::new();
        for (pipeline, estimator, weight) in parts {
            let x = match transformed
                .iter()
                .position(|(p, _)| std::ptr::eq(*p, *pipeline))
            {
                Some(i) => &transformed[i].1,
                None => {
                    transformed.push((pipeline, pipeline.transform(&row)?));
                    &transformed[transformed.len() - 1].1
                }
            };
            let out = estimator.predict(x);
            sum.resize(out.len(), 0.0);
            for (s, v) in sum.iter_mut().zip(out) {
                *s += weight * v;
            }
        }
        std::hint::black_box(sum);
        Ok(())
    })
}

/// The size of the model files these weighted parts would save (written to a scratch folder
/// as [`TabularModel::write_into`] lays them out: each pipeline once, each model in its folder).
fn saved_megabytes(parts: &[(&FeaturePipeline, &Estimator, f64)], trial: usize) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!(
        "exeml-size-{}-{trial}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let write = || -> Result<f64> {
        let mut written: Vec<&FeaturePipeline> = Vec::new();
        for (i, (pipeline, estimator, _)) in parts.iter().enumerate() {
            if !written.iter().any(|p| std::ptr::eq(*p, *pipeline)) {
                let file = dir.join(format!("pipeline_{}.json", written.len()));
                exeml_core::fsio::write_json_atomic(&file, pipeline)?;
                written.push(pipeline);
            }
            let folder = if parts.len() == 1 {
                dir.clone()
            } else {
                dir.join(format!("member_{i}"))
            };
            std::fs::create_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
            estimator.save(&folder)?;
        }
        folder_megabytes(&dir)
    };
    let measured = write();
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

/// For the error when every trained trial broke a constraint: the fastest and the smallest.
fn closest_to_constraints(history: &[TrialRecord]) -> Option<String> {
    let excluded: Vec<&TrialOutcome> = history
        .iter()
        .map(|r| &r.outcome)
        .filter(|o| o.score.is_some() && o.note.is_some())
        .collect();
    if excluded.is_empty() {
        return None;
    }
    let min = |f: fn(&TrialOutcome) -> Option<f64>| {
        excluded.iter().filter_map(|o| f(o)).min_by(f64::total_cmp)
    };
    let mut parts = vec![format!(
        "{} trained model(s) were all excluded",
        excluded.len()
    )];
    if let Some(ms) = min(|o| o.latency_ms) {
        parts.push(format!("the fastest took {ms:.3} ms"));
    }
    if let Some(mb) = min(|o| o.size_mb) {
        parts.push(format!("the smallest was {mb:.2} MB"));
    }
    Some(parts.join(", "))
}

fn score_name(problem: Problem) -> &'static str {
    if problem.kind == ProblemType::Regression {
        "neg_rmse"
    } else {
        "accuracy"
    }
}

/// Higher is better: accuracy (ties broken by a tiny log-loss term) or negative RMSE.
fn validation_score(problem: Problem, y: &[f64], out: &[f64]) -> f64 {
    let n = y.len().max(1) as f64;
    if problem.kind == ProblemType::Regression {
        let mse = y
            .iter()
            .zip(out)
            .map(|(t, p)| (t - p) * (t - p))
            .sum::<f64>()
            / n;
        return -mse.sqrt();
    }
    let k = problem.n_classes;
    let mut correct = 0.0;
    let mut log_loss = 0.0;
    for (r, &t) in y.iter().enumerate() {
        let row = &out[r * k..(r + 1) * k];
        if argmax(row) == t as usize {
            correct += 1.0;
        }
        log_loss -= row[t as usize].clamp(1e-15, 1.0).ln();
    }
    correct / n - 1e-6 * log_loss / n
}

fn evaluate_output(
    problem: Problem,
    classes: &[String],
    y: &[f64],
    out: &[f64],
) -> Result<Evaluation> {
    if problem.kind == ProblemType::Regression {
        evaluate_regression(y, out)
    } else {
        let truth: Vec<usize> = y.iter().map(|&v| v as usize).collect();
        evaluate_classification(problem.kind, classes, &truth, out)
    }
}

/// A parent model must predict the same label the same way.
fn check_parent(parent: &Manifest, target: &Target, source: &std::path::Path) -> Result<()> {
    if parent.target.column != target.column || parent.problem != target.problem {
        return Err(Error::data(
            source,
            format!(
                "cannot warm-start from a model of label `{}` ({}) for label `{}` ({})",
                parent.target.column, parent.problem, target.column, target.problem
            ),
        ));
    }
    Ok(())
}

/// The seeded, stratified split of a table's rows: by class, or by target decile for regression.
pub fn split_rows(table: &Table, target: &Target, spec: SplitSpec) -> Result<Vec<Usage>> {
    let spec = spec.check()?;
    let values = &table.column(&target.column)?.values;
    Ok(if target.problem == ProblemType::Regression {
        stratified_split(&quantile_strata(&label_numbers(values), 10), spec)
    } else {
        stratified_split(&label_texts(values), spec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use exeml_core::search::{SearchSpace, TrialOutcome};

    #[test]
    fn trials_run_at_once_on_many_cores_and_small_samples_only() {
        assert_eq!(
            trial_concurrency(None, false, 1, 1_000).expect("concurrency"),
            1
        );
        assert_eq!(
            trial_concurrency(None, false, 2, 1_000).expect("concurrency"),
            2
        );
        assert_eq!(
            trial_concurrency(None, false, 8, 1_000).expect("concurrency"),
            4
        );
        assert_eq!(
            trial_concurrency(None, false, 64, 1_000).expect("concurrency"),
            4
        );
        assert_eq!(
            trial_concurrency(None, false, 64, 50_000_000).expect("concurrency"),
            1
        );
        assert_eq!(
            trial_concurrency(None, true, 64, 1_000).expect("concurrency"),
            1
        );
        assert_eq!(
            trial_concurrency(Some(3), true, 2, 50_000_000).expect("concurrency"),
            3
        );
        let err = trial_concurrency(Some(0), false, 8, 1).expect_err("zero");
        assert!(err.to_string().contains("parallel_trials"), "{err}");
    }

    #[test]
    fn a_familys_first_trial_shares_the_time_with_the_untried_families() {
        let space = |family: &str| SearchSpace {
            family: family.into(),
            params: Default::default(),
            defaults: Vec::new(),
            cost_hint: 1.0,
        };
        let spaces = [
            space("linear"),
            space("hist_gbdt"),
            space("forest"),
            space("mlp"),
        ];
        let record = |family: &str| TrialRecord {
            trial: Trial {
                id: 0,
                family: family.into(),
                params: ParamPoint::new(),
            },
            outcome: TrialOutcome::default(),
        };
        // The run's first trial may take half the time; an equal share would be a quarter.
        assert_eq!(first_trial_share(&spaces, &[], "hist_gbdt"), 0.5);
        assert_eq!(first_trial_share(&spaces[..1], &[], "linear"), 1.0);
        let history = [record("linear")];
        assert_eq!(first_trial_share(&spaces, &history, "hist_gbdt"), 1.0 / 3.0);
        assert_eq!(first_trial_share(&spaces, &history, "linear"), 1.0);
    }
}
