//! The search: checks the data, splits it, fits each proposed configuration within the budget,
//! keeps the best by validation score, and evaluates it.

use crate::dataset::TabularDataset;
use crate::evaluate::{argmax, evaluate_classification, evaluate_regression, Evaluation};
use crate::family::{self, gbdt, knn, linear, Estimator, Labelled, Problem};
use crate::features::{Encoding, FeaturePipeline};
use crate::manifest::{Lineage, Manifest, FORMAT, FORMAT_VERSION};
use crate::model::TabularModel;
use crate::predictor::TabularPredictor;
use crate::schema::{label_numbers, label_texts, Target};
use crate::table::Table;
use exeml_core::constraints::{folder_megabytes, median_latency_ms};
use exeml_core::search::{Searcher, TpeConfig, TpeSearcher, Trial, TrialOutcome, TrialRecord};
use exeml_core::split::{quantile_strata, stratified_split};
use exeml_core::{
    Budget, Dataset, Error, FitContext, Preference, ProblemType, Progress, Result, SplitSpec,
    TaskKind, Trainer, Usage,
};
use std::collections::HashMap;
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
    progress.phase("checking data");
    let dataset = TabularDataset::new(table.clone(), config.label.as_deref(), config.problem)?;
    let checks = dataset.check().into_result(&table.source)?;
    let TabularDataset {
        target,
        columns,
        labels: texts,
        numbers,
        ..
    } = dataset;

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
    let train_table = table.take(&train_rows);
    let valid_table = table.take(&valid_rows);
    let pick = |rows: &[usize]| rows.iter().map(|&r| y[r]).collect::<Vec<f64>>();
    let (y_train, y_valid) = (pick(&train_rows), pick(&valid_rows));

    let ctx = FitContext {
        budget: budget.clone(),
        device: config.device,
        preference: config.preference,
        seed: config.seed,
        progress,
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
    let mut searcher = TpeSearcher::new(&spaces, search_config(config.preference, config.seed));
    if let Some(parent) = &config.warm_start {
        check_parent(&parent.manifest, &target, &table.source)?;
        if spaces.iter().any(|s| s.family == parent.manifest.family) {
            searcher.prepend(&parent.manifest.family, parent.manifest.params.clone());
        }
    }
    let mut prepared: HashMap<Encoding, (FeaturePipeline, Labelled, Labelled)> = HashMap::new();
    let mut best: Option<(f64, Trial, FeaturePipeline, Estimator, Vec<f64>)> = None;
    let mut history = Vec::new();
    while let Some(trial) = searcher.suggest() {
        if budget.is_cancelled() && best.is_none() {
            return Err(Error::Interrupted(
                "training was cancelled before any model was trained".into(),
            ));
        }
        let any_scored = history
            .iter()
            .any(|r: &TrialRecord| r.outcome.score.is_some());
        if budget.exhausted() && (best.is_some() || any_scored) {
            break;
        }
        progress.phase(&format!("trial {}: {}", trial.id + 1, trial.family));
        progress.fraction(budget.fraction_used());
        let encoding = family::encoding_of(&trial.family)?;
        if let std::collections::hash_map::Entry::Vacant(slot) = prepared.entry(encoding) {
            let pipeline = FeaturePipeline::fit(&train_table, &columns, encoding)?;
            let train = Labelled {
                x: pipeline.transform(&train_table)?,
                y: y_train.clone(),
            };
            let valid = Labelled {
                x: pipeline.transform(&valid_table)?,
                y: y_valid.clone(),
            };
            slot.insert((pipeline, train, valid));
        }
        let (pipeline, train, valid) = &prepared[&encoding];
        let fit_started = Instant::now();
        let fitted = fit_family(&trial, problem, train, valid, &ctx);
        let fit_secs = fit_started.elapsed().as_secs_f64();
        let record = match fitted {
            Ok(estimator) => {
                let predict_started = Instant::now();
                let out = estimator.predict(&valid.x);
                let predict_secs = predict_started.elapsed().as_secs_f64();
                let score = validation_score(problem, &valid.y, &out);
                let latency_ms = single_row_latency_ms(pipeline, &estimator, &valid_table).ok();
                let size_mb = constraints
                    .max_model_mb
                    .and_then(|_| saved_megabytes(pipeline, &estimator, trial.id).ok());
                let excluded = constraints.violation(latency_ms, size_mb);
                let record = TrialRecord {
                    trial: trial.clone(),
                    outcome: TrialOutcome {
                        score: Some(score),
                        metric: score_name(problem).into(),
                        fit_secs,
                        predict_secs,
                        note: excluded.clone(),
                        latency_ms,
                        size_mb,
                    },
                };
                if excluded.is_none() && best.as_ref().is_none_or(|(s, ..)| score > *s) {
                    best = Some((score, trial, pipeline.clone(), estimator, out));
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
        if observed.outcome.note.is_some() {
            // Excluded by a constraint: the searcher should not look for more like it.
            observed.outcome.score = None;
        }
        searcher.observe(observed);
    }
    let Some((_, trial, pipeline, estimator, out)) = best else {
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
    };
    progress.phase("evaluating");
    let validation = evaluate_output(problem, &target.classes, &y_valid, &out)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        exeml_version: env!("CARGO_PKG_VERSION").into(),
        task: TaskKind::Tabular,
        problem: problem.kind,
        target,
        columns,
        family: trial.family.clone(),
        params: trial.params.clone(),
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
            rows: (train_rows.len(), valid_rows.len()),
            preference: config.preference,
            time_limit_secs: budget.limit().as_secs_f64(),
            fit_secs: started.elapsed().as_secs_f64(),
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            constraints,
        },
    };
    Ok(TabularModel::new(manifest, pipeline, estimator))
}

fn fit_family(
    trial: &Trial,
    problem: Problem,
    train: &Labelled,
    valid: &Labelled,
    ctx: &FitContext<'_>,
) -> Result<Estimator> {
    match trial.family.as_str() {
        gbdt::FAMILY => gbdt::GbdtTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Gbdt),
        linear::FAMILY => linear::LinearTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Linear),
        knn::FAMILY => knn::KnnTrainer { problem }
            .fit(&trial.params, train, valid, ctx)
            .map(Estimator::Knn),
        other => Err(Error::invalid(
            "model family",
            format!("unknown family `{other}`"),
        )),
    }
}

/// Median time to predict one validation row through the whole pipeline (one-row table →
/// features → model), as a single-row request to the service does.
fn single_row_latency_ms(
    pipeline: &FeaturePipeline,
    estimator: &Estimator,
    rows: &Table,
) -> Result<f64> {
    let n = rows.n_rows().clamp(1, 25);
    let mut next = 0;
    median_latency_ms(25, 0.5, || {
        let row = rows.take(&[next % n]);
        next += 1;
        let x = pipeline.transform(&row)?;
        std::hint::black_box(estimator.predict(&x));
        Ok(())
    })
}

/// The size of the model files this trial would save (written to a scratch folder).
fn saved_megabytes(pipeline: &FeaturePipeline, estimator: &Estimator, trial: usize) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!(
        "exeml-size-{}-{trial}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let measured = estimator
        .save(&dir)
        .and_then(|_| exeml_core::fsio::write_json_atomic(&dir.join("pipeline.json"), pipeline))
        .and_then(|_| folder_megabytes(&dir));
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
