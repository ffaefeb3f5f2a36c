//! One fit of exeml's histogram booster with LightGBM's default parameters (100 rounds, 31
//! leaves, at least 20 rows per leaf, 255 bins of at least 3 rows, learning rate 0.1, no early
//! stopping), for
//! `benches/tabular/booster.py`, which runs LightGBM on the same split in the same run.
//!
//! usage: booster_fit TRAIN.csv TEST.csv LABEL regression|binary|multiclass [CATEGORICAL]
//!
//! CATEGORICAL lists the columns (0-based, counting the label's) that hold category codes,
//! comma-separated, e.g. `2,5,7`: they are split into sets of categories, as LightGBM's
//! `categorical_feature`.
//!
//! The CSVs are all-numeric apart from the label (the benchmark's exports); classes are
//! numbered in sorted order of their names. Prints one JSON object: fit and predict seconds
//! and the test predictions (values, or row-major class probabilities).

use exeml::tabular::boosting::{BoostParams, Booster, GrowRules, Objective, SplitRules};
use exeml::tabular::features::Matrix;
use std::collections::BTreeSet;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn read(path: &str, label: &str) -> Result<(Matrix, Vec<String>), Box<dyn std::error::Error>> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let target = headers
        .iter()
        .position(|h| h == label)
        .ok_or_else(|| format!("{path}: no column `{label}`"))?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut labels = Vec::new();
    for record in reader.records() {
        let record = record?;
        let mut row = Vec::with_capacity(record.len() - 1);
        for (i, field) in record.iter().enumerate() {
            if i == target {
                labels.push(field.to_string());
            } else {
                row.push(field.parse().unwrap_or(f64::NAN));
            }
        }
        rows.push(row);
    }
    let (n, cols) = (rows.len(), headers.len() - 1);
    let mut data = vec![0.0; n * cols];
    for (r, row) in rows.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            data[c * n + r] = v;
        }
    }
    Ok((
        Matrix {
            data,
            rows: n,
            cols,
        },
        labels,
    ))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (train, test, label, problem, categorical) = match args.as_slice() {
        [a, b, c, d] => (a, b, c, d, None),
        [a, b, c, d, e] => (a, b, c, d, Some(e)),
        _ => {
            return Err("usage: booster_fit TRAIN.csv TEST.csv LABEL \
                        regression|binary|multiclass [CATEGORICAL]"
                .into())
        }
    };
    let (x, labels) = read(train, label)?;
    // Column numbers count the label's column; the matrix leaves it out.
    let target = csv::Reader::from_path(train)?
        .headers()?
        .iter()
        .position(|h| h == label)
        .unwrap_or(usize::MAX);
    let categories: Vec<usize> = match categorical {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|&c| c != target)
            .map(|c| if c > target { c - 1 } else { c })
            .collect(),
    };
    let (xt, _) = read(test, label)?;
    let classes: Vec<&String> = labels.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let (objective, y): (Objective, Vec<f64>) = match problem.as_str() {
        "regression" => (
            Objective::Squared,
            labels.iter().map(|l| l.parse()).collect::<Result<_, _>>()?,
        ),
        "binary" | "multiclass" => {
            let index = |l: &String| classes.iter().position(|c| *c == l).unwrap_or(0) as f64;
            let objective = if problem == "binary" {
                Objective::Logistic
            } else {
                Objective::Softmax(classes.len())
            };
            (objective, labels.iter().map(index).collect())
        }
        other => return Err(format!("unknown problem `{other}`").into()),
    };
    let params = BoostParams {
        grow: GrowRules {
            max_leaves: 31,
            max_depth: usize::MAX,
            learning_rate: 0.1,
            split: SplitRules {
                lambda: 0.0,
                min_rows: 20.0,
                min_hessian: 1e-3,
                min_gain: 0.0,
            },
        },
        max_rounds: 100,
        early_stopping: 0,
        row_fraction: 1.0,
        feature_fraction: 1.0,
        max_value_bins: 255,
        min_rows_in_bin: 3,
        seed: 0,
    };
    let started = Instant::now();
    let booster = Booster::fit(
        (&x, &categories),
        &y,
        None,
        objective,
        &params,
        &mut |_, _| true,
    )?;
    let fit_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let predictions = booster.predict(&xt);
    let predict_s = started.elapsed().as_secs_f64();
    let out = serde_json::json!({
        "fit_s": fit_s,
        "predict_s": predict_s,
        "rounds": booster.rounds(),
        "classes": classes,
        "predictions": predictions,
    });
    println!("{out}");
    Ok(())
}
