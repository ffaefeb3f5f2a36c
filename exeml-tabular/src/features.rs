//! Feature transformation: turns typed columns into a numeric matrix, fitted on the training part
//! only and stored with the model so prediction repeats it exactly.
//!
//! Two encodings share one pipeline: trees get ordinal categories and keep missing values as
//! `NaN` (they route them themselves); linear models get one-hot categories, imputed and
//! standardised features and missing-value indicators.

use crate::schema::{coerce, ColumnKind, ColumnSchema};
use crate::table::{Table, Values};
use chrono::{Datelike, Timelike};
use exeml_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Which kind of model the features are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Tree ensembles: ordinal categories, raw numbers, `NaN` for missing.
    Trees,
    /// Linear models and networks: one-hot, imputed, standardised.
    Linear,
}

/// Most category levels kept per column; rarer ones share an "other" level.
const MAX_LEVELS_TREES: usize = 254;
const MAX_LEVELS_LINEAR: usize = 32;
/// Columns with more levels than this also get a count-encoding feature.
const COUNT_ENCODING_ABOVE: usize = 32;
/// Hash buckets for words of a free-text column.
const TEXT_BUCKETS: usize = 16;

/// How one input column becomes features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "transform", rename_all = "snake_case")]
pub enum ColumnTransform {
    /// A number, as is.
    Numeric {
        /// Input column.
        column: String,
    },
    /// Categories: ordinal codes (trees) or one-hot (linear), plus counts for many levels.
    Categorical {
        /// Input column.
        column: String,
        /// Kept levels, most frequent first.
        levels: Vec<String>,
        /// Training frequency of each kept level (share of rows), for count encoding.
        frequencies: Vec<f64>,
        /// Whether a count-encoding feature is added.
        count_feature: bool,
    },
    /// Dates: calendar parts and elapsed days.
    Datetime {
        /// Input column.
        column: String,
        /// Whether any training value had a time of day (adds the hour).
        with_hour: bool,
    },
    /// Free text: length, word count and hashed word frequencies.
    Text {
        /// Input column.
        column: String,
    },
}

/// Per-feature scaling of the linear encoding, fitted on training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Value imputed for a missing feature (the training median).
    pub fill: Vec<f64>,
    /// Training mean after imputation.
    pub mean: Vec<f64>,
    /// Training standard deviation after imputation (1 where constant).
    pub std: Vec<f64>,
    /// Features that get a missing-value indicator appended.
    pub indicators: Vec<usize>,
}

/// The fitted transformation from a table to a feature matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturePipeline {
    /// The encoding.
    pub encoding: Encoding,
    /// One transform per used input column.
    pub transforms: Vec<ColumnTransform>,
    /// The kind of each used input column (to coerce prediction input).
    pub kinds: Vec<ColumnKind>,
    /// Names of the output features.
    pub feature_names: Vec<String>,
    /// Scaling for the linear encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
}

/// A dense feature matrix in column-major order (what the tree learner reads).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// `data[c * rows + r]` is feature `c` of row `r`.
    pub data: Vec<f64>,
    /// Number of rows.
    pub rows: usize,
    /// Number of features.
    pub cols: usize,
}

impl Matrix {
    /// Feature `c` of row `r`.
    pub fn get(&self, r: usize, c: usize) -> f64 {
        self.data[c * self.rows + r]
    }

    /// Column `c` as a slice.
    pub fn column(&self, c: usize) -> &[f64] {
        &self.data[c * self.rows..(c + 1) * self.rows]
    }
}

impl FeaturePipeline {
    /// Fit the pipeline on the training table for the used columns of `schema`.
    pub fn fit(table: &Table, schema: &[ColumnSchema], encoding: Encoding) -> Result<Self> {
        let mut transforms = Vec::new();
        let mut kinds = Vec::new();
        for column in schema.iter().filter(|c| c.dropped.is_none()) {
            let (values, _) = coerce(&table.column(&column.name)?.values, column.kind);
            let transform = match column.kind {
                ColumnKind::Numeric => ColumnTransform::Numeric {
                    column: column.name.clone(),
                },
                ColumnKind::Categorical => fit_categorical(&column.name, &values, encoding),
                ColumnKind::Datetime => ColumnTransform::Datetime {
                    column: column.name.clone(),
                    with_hour: match &values {
                        Values::Time(v) => v.iter().flatten().any(|ms| ms % 86_400_000 != 0),
                        _ => false,
                    },
                },
                ColumnKind::Text => ColumnTransform::Text {
                    column: column.name.clone(),
                },
            };
            transforms.push(transform);
            kinds.push(column.kind);
        }
        let mut pipeline = FeaturePipeline {
            encoding,
            feature_names: Vec::new(),
            transforms,
            kinds,
            scaling: None,
        };
        pipeline.feature_names = pipeline.raw_feature_names();
        if encoding == Encoding::Linear {
            let raw = pipeline.raw_features(table)?;
            let scaling = fit_scaling(&raw);
            for &i in &scaling.indicators {
                let name = format!("{}__missing", pipeline.feature_names[i]);
                pipeline.feature_names.push(name);
            }
            pipeline.scaling = Some(scaling);
        }
        Ok(pipeline)
    }

    /// Number of output features.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// The input columns the pipeline reads.
    pub fn input_columns(&self) -> Vec<&str> {
        self.transforms
            .iter()
            .map(ColumnTransform::column)
            .collect()
    }

    /// Turn a table (training data or new rows) into the feature matrix.
    pub fn transform(&self, table: &Table) -> Result<Matrix> {
        let raw = self.raw_features(table)?;
        match &self.scaling {
            None => Ok(raw),
            Some(scaling) => Ok(apply_scaling(&raw, scaling)),
        }
    }

    fn raw_feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for t in &self.transforms {
            match t {
                ColumnTransform::Numeric { column } => names.push(column.clone()),
                ColumnTransform::Categorical {
                    column,
                    levels,
                    count_feature,
                    ..
                } => {
                    match self.encoding {
                        Encoding::Trees => names.push(column.clone()),
                        Encoding::Linear => {
                            names.extend(levels.iter().map(|l| format!("{column}={l}")));
                            names.push(format!("{column}=<other>"));
                        }
                    }
                    if *count_feature {
                        names.push(format!("{column}__count"));
                    }
                }
                ColumnTransform::Datetime { column, with_hour } => {
                    for part in ["year", "month", "day", "weekday", "dayofyear", "days"] {
                        names.push(format!("{column}__{part}"));
                    }
                    if *with_hour {
                        names.push(format!("{column}__hour"));
                    }
                }
                ColumnTransform::Text { column } => {
                    names.push(format!("{column}__chars"));
                    names.push(format!("{column}__words"));
                    names.extend((0..TEXT_BUCKETS).map(|b| format!("{column}__hash{b}")));
                }
            }
        }
        names
    }

    fn raw_features(&self, table: &Table) -> Result<Matrix> {
        let rows = table.n_rows();
        let n_raw = self.raw_feature_names().len();
        let mut data = Vec::with_capacity(rows * n_raw);
        for (transform, &kind) in self.transforms.iter().zip(&self.kinds) {
            let name = transform.column();
            let column = table
                .columns
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    Error::data(
                        &table.source,
                        format!("missing column `{name}` that the model was trained with"),
                    )
                })?;
            let (values, _) = coerce(&column.values, kind);
            append_features(&mut data, transform, &values, self.encoding);
        }
        debug_assert_eq!(data.len(), rows * n_raw);
        Ok(Matrix {
            data,
            rows,
            cols: n_raw,
        })
    }
}

impl ColumnTransform {
    /// The input column it reads.
    pub fn column(&self) -> &str {
        match self {
            ColumnTransform::Numeric { column }
            | ColumnTransform::Categorical { column, .. }
            | ColumnTransform::Datetime { column, .. }
            | ColumnTransform::Text { column } => column,
        }
    }
}

fn fit_categorical(name: &str, values: &Values, encoding: Encoding) -> ColumnTransform {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut n = 0usize;
    if let Values::Text(v) = values {
        for t in v.iter().flatten() {
            *counts.entry(t.as_str()).or_default() += 1;
            n += 1;
        }
    }
    let distinct = counts.len();
    let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let max_levels = match encoding {
        Encoding::Trees => MAX_LEVELS_TREES,
        Encoding::Linear => MAX_LEVELS_LINEAR,
    };
    let min_count = if distinct > max_levels { 2 } else { 1 };
    let kept: Vec<(&str, usize)> = by_count
        .into_iter()
        .filter(|(_, c)| *c >= min_count)
        .take(max_levels)
        .collect();
    ColumnTransform::Categorical {
        column: name.to_string(),
        levels: kept.iter().map(|(l, _)| (*l).to_string()).collect(),
        frequencies: kept
            .iter()
            .map(|(_, c)| *c as f64 / n.max(1) as f64)
            .collect(),
        count_feature: distinct > COUNT_ENCODING_ABOVE,
    }
}

fn append_features(out: &mut Vec<f64>, t: &ColumnTransform, values: &Values, encoding: Encoding) {
    let rows = values.len();
    match (t, values) {
        (ColumnTransform::Numeric { .. }, Values::Number(v)) => out.extend_from_slice(v),
        (
            ColumnTransform::Categorical {
                levels,
                frequencies,
                count_feature,
                ..
            },
            Values::Text(v),
        ) => {
            let index: HashMap<&str, usize> = levels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i))
                .collect();
            let codes: Vec<Option<Option<usize>>> = v
                .iter()
                .map(|x| x.as_deref().map(|s| index.get(s).copied()))
                .collect();
            match encoding {
                Encoding::Trees => out.extend(codes.iter().map(|c| match c {
                    None => f64::NAN,
                    Some(Some(i)) => *i as f64,
                    Some(None) => levels.len() as f64,
                })),
                Encoding::Linear => {
                    for level in 0..=levels.len() {
                        out.extend(codes.iter().map(|c| match c {
                            Some(Some(i)) if *i == level => 1.0,
                            Some(None) if level == levels.len() => 1.0,
                            _ => 0.0,
                        }));
                    }
                }
            }
            if *count_feature {
                out.extend(codes.iter().map(|c| match c {
                    None => f64::NAN,
                    Some(Some(i)) => frequencies[*i],
                    Some(None) => 0.0,
                }));
            }
        }
        (ColumnTransform::Datetime { with_hour, .. }, Values::Time(v)) => {
            let times: Vec<Option<chrono::NaiveDateTime>> = v
                .iter()
                .map(|ms| {
                    ms.and_then(chrono::DateTime::from_timestamp_millis)
                        .map(|t| t.naive_utc())
                })
                .collect();
            let part = |f: &dyn Fn(&chrono::NaiveDateTime) -> f64| -> Vec<f64> {
                times
                    .iter()
                    .map(|t| t.as_ref().map_or(f64::NAN, f))
                    .collect()
            };
            out.extend(part(&|t| t.year() as f64));
            out.extend(part(&|t| t.month() as f64));
            out.extend(part(&|t| t.day() as f64));
            out.extend(part(&|t| t.weekday().num_days_from_monday() as f64));
            out.extend(part(&|t| t.ordinal() as f64));
            out.extend(part(&|t| t.and_utc().timestamp() as f64 / 86_400.0));
            if *with_hour {
                out.extend(part(&|t| t.hour() as f64 + t.minute() as f64 / 60.0));
            }
        }
        (ColumnTransform::Text { .. }, Values::Text(v)) => {
            out.extend(
                v.iter()
                    .map(|t| t.as_ref().map_or(0.0, |s| s.chars().count() as f64)),
            );
            out.extend(v.iter().map(|t| {
                t.as_ref()
                    .map_or(0.0, |s| s.split_whitespace().count() as f64)
            }));
            let start = out.len();
            out.resize(start + rows * TEXT_BUCKETS, 0.0);
            for (r, text) in v.iter().enumerate() {
                let Some(text) = text else { continue };
                let words: Vec<String> = text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                    .map(str::to_lowercase)
                    .collect();
                let weight = 1.0 / words.len().max(1) as f64;
                for word in &words {
                    let bucket = (fnv1a(word.as_bytes()) % TEXT_BUCKETS as u64) as usize;
                    out[start + bucket * rows + r] += weight;
                }
            }
        }
        // `coerce` guarantees the representation matches the kind; anything else is a bug.
        _ => unreachable!("column values were coerced to the transform's kind"),
    }
}

/// FNV-1a: a fixed, portable hash (std's hasher may change between Rust versions, which would
/// silently change saved models' features).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

fn fit_scaling(raw: &Matrix) -> Scaling {
    let mut scaling = Scaling {
        fill: Vec::with_capacity(raw.cols),
        mean: Vec::with_capacity(raw.cols),
        std: Vec::with_capacity(raw.cols),
        indicators: Vec::new(),
    };
    for c in 0..raw.cols {
        let column = raw.column(c);
        let mut present: Vec<f64> = column.iter().copied().filter(|x| !x.is_nan()).collect();
        if present.len() < column.len() {
            scaling.indicators.push(c);
        }
        present.sort_by(f64::total_cmp);
        let fill = present.get(present.len() / 2).copied().unwrap_or(0.0);
        let n = column.len().max(1) as f64;
        let mean = column
            .iter()
            .map(|x| if x.is_nan() { fill } else { *x })
            .sum::<f64>()
            / n;
        let var = column
            .iter()
            .map(|x| {
                let v = if x.is_nan() { fill } else { *x };
                (v - mean) * (v - mean)
            })
            .sum::<f64>()
            / n;
        let std = var.sqrt();
        scaling.fill.push(fill);
        scaling.mean.push(mean);
        scaling.std.push(if std > 1e-12 { std } else { 1.0 });
    }
    scaling
}

fn apply_scaling(raw: &Matrix, scaling: &Scaling) -> Matrix {
    let rows = raw.rows;
    let cols = raw.cols + scaling.indicators.len();
    let mut data = Vec::with_capacity(rows * cols);
    for c in 0..raw.cols {
        let (fill, mean, std) = (scaling.fill[c], scaling.mean[c], scaling.std[c]);
        data.extend(raw.column(c).iter().map(|&x| {
            let v = if x.is_nan() { fill } else { x };
            (v - mean) / std
        }));
    }
    for &c in &scaling.indicators {
        data.extend(
            raw.column(c)
                .iter()
                .map(|x| if x.is_nan() { 1.0 } else { 0.0 }),
        );
    }
    Matrix { data, rows, cols }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Column;

    fn table() -> Table {
        Table {
            columns: vec![
                Column {
                    name: "x".into(),
                    values: Values::Number(vec![1.0, f64::NAN, 3.0, 5.0]),
                },
                Column {
                    name: "c".into(),
                    values: Values::Text(vec![
                        Some("a".into()),
                        Some("b".into()),
                        Some("a".into()),
                        None,
                    ]),
                },
            ],
            source: "t.csv".into(),
        }
    }

    fn schema() -> Vec<ColumnSchema> {
        crate::schema::describe_columns(&table(), "none")
    }

    #[test]
    fn trees_keep_missing_and_code_categories_by_frequency() {
        let p = FeaturePipeline::fit(&table(), &schema(), Encoding::Trees).expect("fit");
        let m = p.transform(&table()).expect("transform");
        assert_eq!((m.rows, m.cols), (4, 2));
        assert!(m.get(1, 0).is_nan());
        assert_eq!(m.column(1)[..3], [0.0, 1.0, 0.0]);
        assert!(m.get(3, 1).is_nan());
    }

    #[test]
    fn linear_one_hot_standardises_and_flags_missing() {
        let p = FeaturePipeline::fit(&table(), &schema(), Encoding::Linear).expect("fit");
        let m = p.transform(&table()).expect("transform");
        // x, c=a, c=b, c=<other>, x__missing
        assert_eq!(m.cols, 5, "{:?}", p.feature_names);
        let mean: f64 = m.column(0).iter().sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12);
        assert!(m.data.iter().all(|x| x.is_finite()));
        assert_eq!(p.feature_names[4], "x__missing");
    }

    #[test]
    fn unseen_category_and_missing_column_at_prediction() {
        let p = FeaturePipeline::fit(&table(), &schema(), Encoding::Trees).expect("fit");
        let mut new = table();
        new.columns[1].values = Values::Text(vec![Some("zzz".into()); 4]);
        let m = p.transform(&new).expect("transform");
        assert_eq!(m.get(0, 1), 2.0, "unseen level maps to the <other> code");
        new.columns.remove(0);
        let err = p.transform(&new).expect_err("missing column");
        assert!(err.to_string().contains("`x`"));
    }
}
