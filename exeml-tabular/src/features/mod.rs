//! Feature transformation: turns typed columns into a numeric matrix, fitted on the training part
//! only and stored with the model so prediction repeats it exactly.
//!
//! Two encodings share one pipeline: trees get ordinal categories and keep missing values as
//! `NaN` (they route them themselves); linear models get one-hot categories, imputed and
//! standardised features and missing-value indicators.
//!
//! On top of the encoding, the search chooses [`FeatureOptions`] per data set and family:
//! out-of-fold target encoding of categories ([`target`]), a quantile transform of numbers
//! ([`quantile`]) and feature selection by mutual information ([`select`]).

pub mod quantile;
pub mod select;
pub mod target;
pub mod text;

use crate::family::Problem;
use crate::schema::{coerce, ColumnKind, ColumnSchema};
use crate::table::{Table, Values};
use chrono::{Datelike, Timelike};
use exeml_core::search::{ParamPoint, ParamRange, ParamValue};
use exeml_core::{Error, Result};
use quantile::QuantileMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use target::TargetStats;
use text::TfIdf;

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
const MAX_LEVELS_TARGET: usize = 4096;
/// Target encoding is offered up to this many values per level (classes of a multiclass label).
const MAX_TARGET_WIDTH: usize = 16;
/// Columns with more levels than this also get a count-encoding feature.
const COUNT_ENCODING_ABOVE: usize = 32;

/// How one input column becomes features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "transform", rename_all = "snake_case")]
pub enum ColumnTransform {
    /// A number, as is or quantile-transformed.
    Numeric {
        /// Input column.
        column: String,
        /// The quantile transform, when the options ask for it (linear encoding only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantiles: Option<QuantileMap>,
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
        /// Target statistics, when categories are target-encoded (instead of codes or one-hot).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<TargetStats>,
        /// The linear encoding passes the level code through for an embedding (no one-hot).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        embedded: bool,
        /// Level → code lookup, built on first use (not saved).
        #[serde(skip)]
        index: LevelIndex,
    },
    /// Dates: calendar parts and elapsed days.
    Datetime {
        /// Input column.
        column: String,
        /// Whether any training value had a time of day (adds the hour).
        with_hour: bool,
    },
    /// Free text: length, word count and hashed word frequencies (or TF-IDF).
    Text {
        /// Input column.
        column: String,
        /// TF-IDF over hashed words and word pairs, when the options ask for it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tfidf: Option<TfIdf>,
    },
}

/// A lazily built level → code lookup of a categorical column: built once per loaded pipeline
/// instead of on every prediction (a target-encoded column keeps thousands of levels).
///
/// A value that is not a level as written but is the same number as one (a JSON client sends
/// `1.0` or `1e0` for the level `1` of a CSV) finds that level.
#[derive(Debug, Clone, Default)]
pub struct LevelIndex(std::sync::OnceLock<LevelLookup>);

/// The exact and the numeric lookup of one column's levels.
#[derive(Debug, Clone, Default)]
struct LevelLookup {
    exact: HashMap<String, usize>,
    /// Levels that read as finite numbers, by the bits of that number (−0 as 0).
    numeric: HashMap<u64, usize>,
}

/// The bits of `text` read as a finite number (−0 as 0), if it is one.
fn number_key(text: &str) -> Option<u64> {
    let x: f64 = text.trim().parse().ok().filter(|x: &f64| x.is_finite())?;
    Some(if x == 0.0 {
        0f64.to_bits()
    } else {
        x.to_bits()
    })
}

impl PartialEq for LevelIndex {
    /// A cache: two transforms are equal whatever each has looked up so far.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl LevelIndex {
    /// The code of `value` among `levels`: its own, else that of the level with the same number.
    fn code(&self, levels: &[String], value: &str) -> Option<usize> {
        let lookup = self.0.get_or_init(|| {
            let mut lookup = LevelLookup::default();
            for (i, level) in levels.iter().enumerate() {
                lookup.exact.insert(level.clone(), i);
                if let Some(key) = number_key(level) {
                    lookup.numeric.entry(key).or_insert(i);
                }
            }
            lookup
        });
        lookup
            .exact
            .get(value)
            .or_else(|| lookup.numeric.get(&number_key(value)?))
            .copied()
    }
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
    /// The options the search chose.
    #[serde(default)]
    pub options: FeatureOptions,
    /// Kept features (indices into the encoded features, increasing), when some were dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<usize>>,
}

/// How categories are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoryEncoding {
    /// The encoding's own: ordinal codes for trees, one-hot for linear models.
    #[default]
    Native,
    /// Out-of-fold target statistics.
    Target,
    /// Level codes that the network maps through learned embeddings (MLP only; in the linear
    /// encoding the code is passed through unscaled, trees read it as their ordinal code).
    Embedding,
}

/// A feature that holds level codes for an embedding: its index among the output features and
/// the number of codes (`levels + 2`: kept levels, another level, missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedFeature {
    /// Index of the feature in the pipeline's output.
    pub feature: usize,
    /// Number of distinct codes, `0..codes`.
    pub codes: usize,
}

/// How numbers are scaled in the linear encoding (trees ignore it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumericScaling {
    /// Standardised (mean 0, standard deviation 1).
    #[default]
    Standard,
    /// Quantile-transformed to a uniform spread, then standardised.
    Quantile,
}

/// How the words of free-text columns are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextEncoding {
    /// 16 hashed word frequencies.
    #[default]
    Hashed,
    /// TF-IDF over 256 hashed buckets of words and word pairs.
    TfIdf,
}

/// The feature transformation choices the search makes per data set and family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureOptions {
    /// Category encoding.
    pub categories: CategoryEncoding,
    /// Number scaling.
    pub numbers: NumericScaling,
    /// Share of the features kept by selection, in percent (100: all).
    pub keep_percent: u8,
    /// Free-text encoding.
    pub text: TextEncoding,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions {
            categories: CategoryEncoding::Native,
            numbers: NumericScaling::Standard,
            keep_percent: 100,
            text: TextEncoding::Hashed,
        }
    }
}

/// Search parameter: how categories are encoded (`ordinal` / `one_hot` or `target`).
pub const CATEGORIES_PARAM: &str = "categories";
/// Search parameter: how numbers are scaled (`standard` or `quantile`).
pub const NUMBERS_PARAM: &str = "numbers";
/// Search parameter: the share of features kept (`1.0`, `0.7`, `0.4`).
pub const KEEP_PARAM: &str = "keep_features";
/// Search parameter: how free text is encoded (`hashed` or `tfidf`).
pub const TEXT_PARAM: &str = "text";

impl FeatureOptions {
    /// The options of a trial's parameters (absent ones take their default).
    pub fn from_params(params: &ParamPoint) -> Result<Self> {
        let text = |name: &str| params.get(name).and_then(ParamValue::as_str);
        let categories = match text(CATEGORIES_PARAM) {
            None | Some("ordinal" | "one_hot") => CategoryEncoding::Native,
            Some("target") => CategoryEncoding::Target,
            Some("embedding") => CategoryEncoding::Embedding,
            Some(other) => {
                return Err(Error::invalid(
                    CATEGORIES_PARAM,
                    format!("`{other}` is not ordinal, one_hot, target or embedding"),
                ))
            }
        };
        let numbers = match text(NUMBERS_PARAM) {
            None | Some("standard") => NumericScaling::Standard,
            Some("quantile") => NumericScaling::Quantile,
            Some(other) => {
                return Err(Error::invalid(
                    NUMBERS_PARAM,
                    format!("`{other}` is not standard or quantile"),
                ))
            }
        };
        let text = match text(TEXT_PARAM) {
            None | Some("hashed") => TextEncoding::Hashed,
            Some("tfidf") => TextEncoding::TfIdf,
            Some(other) => {
                return Err(Error::invalid(
                    TEXT_PARAM,
                    format!("`{other}` is not hashed or tfidf"),
                ))
            }
        };
        let keep = match params.get(KEEP_PARAM) {
            None => 1.0,
            Some(ParamValue::Text(t)) => t.parse::<f64>().unwrap_or(f64::NAN),
            Some(v) => v.as_f64().unwrap_or(f64::NAN),
        };
        if !(keep > 0.0 && keep <= 1.0) {
            return Err(Error::invalid(
                KEEP_PARAM,
                "the share of features kept must be in (0, 1]",
            ));
        }
        Ok(FeatureOptions {
            categories,
            numbers,
            keep_percent: ((keep * 100.0).round() as u8).max(1),
            text,
        })
    }
}

/// The feature options worth searching for `encoding` on these columns: each parameter with
/// its range and its default value. Empty when the data leaves nothing to choose. A `network`
/// (the MLP) also gets category embeddings, its default.
pub fn search_params(
    encoding: Encoding,
    schema: &[ColumnSchema],
    problem: Problem,
    network: bool,
) -> Vec<(&'static str, ParamRange, ParamValue)> {
    let used: Vec<&ColumnSchema> = schema.iter().filter(|c| c.dropped.is_none()).collect();
    let has = |kind: ColumnKind| used.iter().any(|c| c.kind == kind);
    let choice = |options: &[&str]| ParamRange::Choice {
        options: options.iter().map(|o| (*o).to_string()).collect(),
    };
    let mut params = Vec::new();
    if has(ColumnKind::Categorical) {
        let native = native_category_name(encoding);
        let mut options = vec![native];
        if target::width(problem) <= MAX_TARGET_WIDTH {
            options.push("target");
        }
        if network {
            options.push("embedding");
        }
        if options.len() > 1 {
            let default = if network { "embedding" } else { native };
            params.push((
                CATEGORIES_PARAM,
                choice(&options),
                ParamValue::Text(default.into()),
            ));
        }
    }
    if encoding == Encoding::Linear && has(ColumnKind::Numeric) {
        params.push((
            NUMBERS_PARAM,
            choice(&["standard", "quantile"]),
            ParamValue::Text("standard".into()),
        ));
    }
    if has(ColumnKind::Text) {
        params.push((
            TEXT_PARAM,
            choice(&["hashed", "tfidf"]),
            ParamValue::Text("hashed".into()),
        ));
    }
    if used.len() >= 5 {
        params.push((
            KEEP_PARAM,
            choice(&["1.0", "0.7", "0.4"]),
            ParamValue::Text("1.0".into()),
        ));
    }
    params
}

/// Whether some categorical column has more levels than one-hot keeps: target encoding is then
/// worth trying early rather than leaving it to chance.
pub fn has_many_level_categories(schema: &[ColumnSchema]) -> bool {
    schema.iter().any(|c| {
        c.dropped.is_none() && c.kind == ColumnKind::Categorical && c.distinct > MAX_LEVELS_LINEAR
    })
}

/// The search's name for the encoding's own category encoding.
fn native_category_name(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Trees => "ordinal",
        Encoding::Linear => "one_hot",
    }
}

/// The training targets, for the options that learn from them (target encoding, selection).
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    /// One target per training row: class index, or the value for regression.
    pub y: &'a [f64],
    /// The problem.
    pub problem: Problem,
    /// Seed of the out-of-fold split.
    pub seed: u64,
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
    /// The column-major matrix of these rows (tests: every row as long as the first).
    #[cfg(test)]
    pub(crate) fn from_rows(rows: &[&[f64]]) -> Matrix {
        let cols = rows.first().map_or(0, |r| r.len());
        Matrix {
            rows: rows.len(),
            cols,
            data: (0..cols)
                .flat_map(|c| rows.iter().map(move |r| r[c]))
                .collect(),
        }
    }

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
    /// Fit the pipeline on the training table for the used columns of `schema`, and return it
    /// with the training rows' features (target-encoded out of fold, so they differ from what
    /// [`FeaturePipeline::transform`] gives for the same rows).
    pub fn fit_transform(
        table: &Table,
        schema: &[ColumnSchema],
        encoding: Encoding,
        options: FeatureOptions,
        targets: Targets<'_>,
    ) -> Result<(Self, Matrix)> {
        if targets.y.len() != table.n_rows() {
            return Err(Error::data(
                &table.source,
                format!(
                    "{} targets for {} training rows",
                    targets.y.len(),
                    table.n_rows()
                ),
            ));
        }
        let mut transforms = Vec::new();
        let mut kinds = Vec::new();
        for column in schema.iter().filter(|c| c.dropped.is_none()) {
            let (values, _) = coerce(&table.column(&column.name)?.values, column.kind);
            let transform = match (column.kind, &*values) {
                (ColumnKind::Numeric, Values::Number(v)) => ColumnTransform::Numeric {
                    column: column.name.clone(),
                    quantiles: if encoding == Encoding::Linear
                        && options.numbers == NumericScaling::Quantile
                    {
                        QuantileMap::fit(v)
                    } else {
                        None
                    },
                },
                (ColumnKind::Categorical, _) => {
                    fit_categorical(&column.name, &values, encoding, options, targets)
                }
                (ColumnKind::Datetime, _) => ColumnTransform::Datetime {
                    column: column.name.clone(),
                    with_hour: match &*values {
                        Values::Time(v) => v.iter().flatten().any(|ms| ms % 86_400_000 != 0),
                        _ => false,
                    },
                },
                (_, Values::Text(v)) if options.text == TextEncoding::TfIdf => {
                    ColumnTransform::Text {
                        column: column.name.clone(),
                        tfidf: Some(TfIdf::fit(v, text::TFIDF_BUCKETS)),
                    }
                }
                _ => ColumnTransform::Text {
                    column: column.name.clone(),
                    tfidf: None,
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
            options,
            selected: None,
        };
        pipeline.feature_names = pipeline.raw_feature_names();
        let raw = pipeline.raw_features(table, Some(targets))?;
        let mut features = if encoding == Encoding::Linear {
            let mut scaling = fit_scaling(&raw);
            // Codes for an embedding are indices, not quantities: passed through as they are.
            for e in pipeline.embedded_features() {
                scaling.fill[e.feature] = 0.0;
                scaling.mean[e.feature] = 0.0;
                scaling.std[e.feature] = 1.0;
            }
            for &i in &scaling.indicators {
                let name = format!("{}__missing", pipeline.feature_names[i]);
                pipeline.feature_names.push(name);
            }
            let scaled = apply_scaling(&raw, &scaling);
            pipeline.scaling = Some(scaling);
            scaled
        } else {
            raw
        };
        if options.keep_percent < 100 && features.cols > 1 {
            let scores = select::scores(&features, targets.y, targets.problem);
            let kept = select::best_share(&scores, options.keep_percent);
            if kept.len() < features.cols {
                pipeline.feature_names = kept
                    .iter()
                    .map(|&i| pipeline.feature_names[i].clone())
                    .collect();
                features = features.take_columns(&kept);
                pipeline.selected = Some(kept);
            }
        }
        Ok((pipeline, features))
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

    /// Turn a table (new rows, or the validation part) into the feature matrix.
    pub fn transform(&self, table: &Table) -> Result<Matrix> {
        let raw = self.raw_features(table, None)?;
        let encoded = match &self.scaling {
            None => raw,
            Some(scaling) => apply_scaling(&raw, scaling),
        };
        Ok(match &self.selected {
            None => encoded,
            Some(kept) => encoded.take_columns(kept),
        })
    }

    /// Check that a pipeline read from a file is internally consistent, so that applying it
    /// cannot index out of bounds: `path` names the file in the error.
    pub fn check(&self, path: &std::path::Path) -> Result<()> {
        let bad = |message: String| Err(Error::data(path, message));
        if self.transforms.len() != self.kinds.len() {
            return bad("transforms and column kinds differ in number".into());
        }
        for (t, &kind) in self.transforms.iter().zip(&self.kinds) {
            let fits = matches!(
                (t, kind),
                (ColumnTransform::Numeric { .. }, ColumnKind::Numeric)
                    | (ColumnTransform::Categorical { .. }, ColumnKind::Categorical)
                    | (ColumnTransform::Datetime { .. }, ColumnKind::Datetime)
                    | (ColumnTransform::Text { .. }, ColumnKind::Text)
            );
            if !fits {
                return bad(format!(
                    "column `{}` has a transform of another kind",
                    t.column()
                ));
            }
            let consistent = match t {
                ColumnTransform::Numeric { quantiles, .. } => {
                    quantiles.as_ref().is_none_or(QuantileMap::is_consistent)
                }
                ColumnTransform::Text { tfidf, .. } => {
                    tfidf.as_ref().is_none_or(TfIdf::is_consistent)
                }
                ColumnTransform::Categorical {
                    levels,
                    frequencies,
                    target,
                    ..
                } => {
                    frequencies.len() == levels.len()
                        && target
                            .as_ref()
                            .is_none_or(|s| s.is_consistent(levels.len() + 2))
                }
                _ => true,
            };
            if !consistent {
                return bad(format!(
                    "the fitted values of column `{}` are inconsistent",
                    t.column()
                ));
            }
        }
        let raw = self.raw_width();
        if raw != self.raw_feature_names().len() {
            return bad("the transforms' feature counts disagree with their names".into());
        }
        let mut encoded = raw;
        if let Some(s) = &self.scaling {
            if s.fill.len() != raw || s.mean.len() != raw || s.std.len() != raw {
                return bad(format!(
                    "scaling is for {} features, not {raw}",
                    s.fill.len()
                ));
            }
            if s.indicators.iter().any(|&i| i >= raw) {
                return bad("a missing-value indicator names a feature that does not exist".into());
            }
            encoded += s.indicators.len();
        }
        let out = match &self.selected {
            Some(kept) => {
                if kept.windows(2).any(|w| w[0] >= w[1]) || kept.iter().any(|&i| i >= encoded) {
                    return bad(format!(
                        "selected features must be increasing and below {encoded}"
                    ));
                }
                kept.len()
            }
            None => encoded,
        };
        if self.feature_names.len() != out {
            return bad(format!(
                "{} feature names for {out} features",
                self.feature_names.len()
            ));
        }
        Ok(())
    }

    /// The features that hold level codes for an embedding (indices into the output).
    pub fn embedded_features(&self) -> Vec<EmbeddedFeature> {
        let mut found = Vec::new();
        let mut offset = 0;
        for t in &self.transforms {
            if let ColumnTransform::Categorical {
                levels,
                target: None,
                embedded: true,
                ..
            } = t
            {
                if self.encoding == Encoding::Linear {
                    found.push(EmbeddedFeature {
                        feature: offset,
                        codes: levels.len() + 2,
                    });
                }
            }
            offset += self.transform_width(t);
        }
        match &self.selected {
            None => found,
            Some(kept) => found
                .into_iter()
                .filter_map(|e| {
                    kept.binary_search(&e.feature)
                        .ok()
                        .map(|i| EmbeddedFeature {
                            feature: i,
                            codes: e.codes,
                        })
                })
                .collect(),
        }
    }

    /// The features that hold category codes in the tree encoding (indices into the output):
    /// a categorical column's level index, another level one more, missing `NaN`. Target-
    /// encoded columns emit statistics instead, and other encodings none.
    pub fn category_code_features(&self) -> Vec<usize> {
        if self.encoding != Encoding::Trees {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut offset = 0;
        for t in &self.transforms {
            if let ColumnTransform::Categorical { target: None, .. } = t {
                found.push(offset);
            }
            offset += self.transform_width(t);
        }
        match &self.selected {
            None => found,
            Some(kept) => found
                .into_iter()
                .filter_map(|f| kept.binary_search(&f).ok())
                .collect(),
        }
    }

    /// How many features one transform emits before scaling (what
    /// [`FeaturePipeline::transform_feature_names`] names, without building the names: this is
    /// on the prediction path).
    fn transform_width(&self, t: &ColumnTransform) -> usize {
        match t {
            ColumnTransform::Numeric { .. } => 1,
            ColumnTransform::Categorical {
                levels,
                count_feature,
                target,
                embedded,
                ..
            } => {
                let codes = match (target, self.encoding) {
                    (Some(stats), _) => stats.width,
                    (None, Encoding::Trees) => 1,
                    (None, Encoding::Linear) if *embedded => 1,
                    (None, Encoding::Linear) => levels.len() + 1,
                };
                codes + usize::from(*count_feature)
            }
            ColumnTransform::Datetime { with_hour, .. } => 6 + usize::from(*with_hour),
            ColumnTransform::Text { tfidf, .. } => {
                2 + tfidf.as_ref().map_or(text::HASHED_BUCKETS, TfIdf::buckets)
            }
        }
    }

    fn raw_width(&self) -> usize {
        self.transforms
            .iter()
            .map(|t| self.transform_width(t))
            .sum()
    }

    fn raw_feature_names(&self) -> Vec<String> {
        self.transforms
            .iter()
            .flat_map(|t| self.transform_feature_names(t))
            .collect()
    }

    /// The names of the features one transform emits, before scaling.
    fn transform_feature_names(&self, t: &ColumnTransform) -> Vec<String> {
        let mut names = Vec::new();
        match t {
            ColumnTransform::Numeric { column, .. } => names.push(column.clone()),
            ColumnTransform::Categorical {
                column,
                levels,
                count_feature,
                target,
                embedded,
                ..
            } => {
                match (target, self.encoding) {
                    (Some(stats), _) if stats.width == 1 => {
                        names.push(format!("{column}__target"));
                    }
                    (Some(stats), _) => {
                        names.extend((0..stats.width).map(|j| format!("{column}__target{j}")));
                    }
                    (None, Encoding::Trees) => names.push(column.clone()),
                    (None, Encoding::Linear) if *embedded => {
                        names.push(format!("{column}__code"));
                    }
                    (None, Encoding::Linear) => {
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
            ColumnTransform::Text { column, tfidf } => {
                names.push(format!("{column}__chars"));
                names.push(format!("{column}__words"));
                match tfidf {
                    None => names
                        .extend((0..text::HASHED_BUCKETS).map(|b| format!("{column}__hash{b}"))),
                    Some(t) => {
                        names.extend((0..t.buckets()).map(|b| format!("{column}__tfidf{b}")))
                    }
                }
            }
        }
        names
    }

    /// The encoded features before scaling; `training` gives the targets of the rows the
    /// pipeline was fitted on (target encoding is then out of fold).
    fn raw_features(&self, table: &Table, training: Option<Targets<'_>>) -> Result<Matrix> {
        let rows = table.n_rows();
        let n_raw = self.raw_width();
        let mut data = Vec::with_capacity(rows * n_raw);
        // The columns are usually in the order the model was trained with: each search starts
        // after the column found last.
        let mut next = 0;
        for (transform, &kind) in self.transforms.iter().zip(&self.kinds) {
            let name = transform.column();
            let found = table.position_from(name, next);
            if let Some(i) = found {
                next = i + 1;
            }
            let column = found.map(|i| &table.columns[i]).ok_or_else(|| {
                Error::data(
                    &table.source,
                    format!("missing column `{name}` that the model was trained with"),
                )
            })?;
            let (values, _) = coerce(&column.values, kind);
            append_features(&mut data, transform, &values, self.encoding, training);
        }
        debug_assert_eq!(data.len(), rows * n_raw);
        Ok(Matrix {
            data,
            rows,
            cols: n_raw,
        })
    }
}

impl Matrix {
    /// The matrix of rows `rows` (in that order).
    pub fn take_rows(&self, rows: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(rows.len() * self.cols);
        for c in 0..self.cols {
            let column = self.column(c);
            data.extend(rows.iter().map(|&r| column[r]));
        }
        Matrix {
            data,
            rows: rows.len(),
            cols: self.cols,
        }
    }

    /// The matrix of columns `kept` (in that order).
    pub fn take_columns(&self, kept: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(self.rows * kept.len());
        for &c in kept {
            data.extend_from_slice(self.column(c));
        }
        Matrix {
            data,
            rows: self.rows,
            cols: kept.len(),
        }
    }
}

impl ColumnTransform {
    /// The input column it reads.
    pub fn column(&self) -> &str {
        match self {
            ColumnTransform::Numeric { column, .. }
            | ColumnTransform::Categorical { column, .. }
            | ColumnTransform::Datetime { column, .. }
            | ColumnTransform::Text { column, .. } => column,
        }
    }
}

fn fit_categorical(
    name: &str,
    values: &Values,
    encoding: Encoding,
    options: FeatureOptions,
    targets: Targets<'_>,
) -> ColumnTransform {
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
    let target_encoded = options.categories == CategoryEncoding::Target
        && target::width(targets.problem) <= MAX_TARGET_WIDTH;
    let embedded =
        options.categories == CategoryEncoding::Embedding && encoding == Encoding::Linear;
    let max_levels = match (target_encoded || embedded, encoding) {
        (true, _) => MAX_LEVELS_TARGET,
        (false, Encoding::Trees) => MAX_LEVELS_TREES,
        (false, Encoding::Linear) => MAX_LEVELS_LINEAR,
    };
    let min_count = if distinct > max_levels { 2 } else { 1 };
    let kept: Vec<(&str, usize)> = by_count
        .into_iter()
        .filter(|(_, c)| *c >= min_count)
        .take(max_levels)
        .collect();
    let levels: Vec<String> = kept.iter().map(|(l, _)| (*l).to_string()).collect();
    let target = target_encoded.then(|| {
        let codes = level_codes(&levels, values);
        TargetStats::fit(&codes, levels.len() + 2, targets.y, targets.problem)
    });
    ColumnTransform::Categorical {
        column: name.to_string(),
        frequencies: kept
            .iter()
            .map(|(_, c)| *c as f64 / n.max(1) as f64)
            .collect(),
        levels,
        count_feature: distinct > COUNT_ENCODING_ABOVE,
        target,
        embedded,
        index: LevelIndex::default(),
    }
}

/// Target-encoding codes: the level's index, `levels.len()` for another level, one more for a
/// missing value.
fn level_codes(levels: &[String], values: &Values) -> Vec<usize> {
    let index: HashMap<&str, usize> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    match values {
        Values::Text(v) => v
            .iter()
            .map(|x| match x {
                None => levels.len() + 1,
                Some(s) => index.get(s.as_str()).copied().unwrap_or(levels.len()),
            })
            .collect(),
        other => vec![levels.len() + 1; other.len()],
    }
}

fn append_features(
    out: &mut Vec<f64>,
    t: &ColumnTransform,
    values: &Values,
    encoding: Encoding,
    training: Option<Targets<'_>>,
) {
    match (t, values) {
        (ColumnTransform::Numeric { quantiles, .. }, Values::Number(v)) => match quantiles {
            None => out.extend_from_slice(v),
            Some(map) => out.extend(v.iter().map(|&x| map.apply(x))),
        },
        (
            ColumnTransform::Categorical {
                levels,
                frequencies,
                count_feature,
                target,
                embedded,
                index,
                ..
            },
            Values::Text(v),
        ) => {
            let codes: Vec<Option<Option<usize>>> = v
                .iter()
                .map(|x| x.as_deref().map(|s| index.code(levels, s)))
                .collect();
            // Codes of the target encoding and embeddings: another level and missing last.
            let full_codes = || -> Vec<usize> {
                codes
                    .iter()
                    .map(|c| match c {
                        Some(Some(i)) => *i,
                        Some(None) => levels.len(),
                        None => levels.len() + 1,
                    })
                    .collect()
            };
            match (target, encoding) {
                (Some(stats), _) => {
                    let target_codes = full_codes();
                    out.extend(match training {
                        Some(t) => stats.out_of_fold(&target_codes, t.y, t.problem, t.seed),
                        None => stats.apply(&target_codes),
                    });
                }
                (None, Encoding::Trees) => out.extend(codes.iter().map(|c| match c {
                    None => f64::NAN,
                    Some(Some(i)) => *i as f64,
                    Some(None) => levels.len() as f64,
                })),
                (None, Encoding::Linear) if *embedded => {
                    out.extend(full_codes().into_iter().map(|c| c as f64));
                }
                (None, Encoding::Linear) => {
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
        (ColumnTransform::Text { tfidf, .. }, Values::Text(v)) => {
            out.extend(
                v.iter()
                    .map(|t| t.as_ref().map_or(0.0, |s| s.chars().count() as f64)),
            );
            out.extend(v.iter().map(|t| {
                t.as_ref()
                    .map_or(0.0, |s| s.split_whitespace().count() as f64)
            }));
            match tfidf {
                None => out.extend(text::hashed_frequencies(v, text::HASHED_BUCKETS)),
                Some(t) => out.extend(t.apply(v)),
            }
        }
        // `coerce` guarantees the representation matches the kind; anything else is a bug.
        _ => unreachable!("column values were coerced to the transform's kind"),
    }
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

    const BINARY: Problem = Problem {
        kind: exeml_core::ProblemType::Binary,
        n_classes: 2,
    };

    fn fit_with(encoding: Encoding, options: FeatureOptions) -> (FeaturePipeline, Matrix) {
        let y = [1.0, 0.0, 1.0, 0.0];
        let targets = Targets {
            y: &y,
            problem: BINARY,
            seed: 1,
        };
        FeaturePipeline::fit_transform(&table(), &schema(), encoding, options, targets)
            .expect("fit")
    }

    fn fit(encoding: Encoding) -> FeaturePipeline {
        fit_with(encoding, FeatureOptions::default()).0
    }

    #[test]
    fn trees_keep_missing_and_code_categories_by_frequency() {
        let p = fit(Encoding::Trees);
        let m = p.transform(&table()).expect("transform");
        assert_eq!((m.rows, m.cols), (4, 2));
        assert!(m.get(1, 0).is_nan());
        assert_eq!(m.column(1)[..3], [0.0, 1.0, 0.0]);
        assert!(m.get(3, 1).is_nan());
    }

    #[test]
    fn linear_one_hot_standardises_and_flags_missing() {
        let (p, training) = fit_with(Encoding::Linear, FeatureOptions::default());
        let m = p.transform(&table()).expect("transform");
        assert_eq!(m, training, "without target encoding both ways agree");
        // x, c=a, c=b, c=<other>, x__missing
        assert_eq!(m.cols, 5, "{:?}", p.feature_names);
        let mean: f64 = m.column(0).iter().sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12);
        assert!(m.data.iter().all(|x| x.is_finite()));
        assert_eq!(p.feature_names[4], "x__missing");
    }

    #[test]
    fn unseen_category_and_missing_column_at_prediction() {
        let p = fit(Encoding::Trees);
        let mut new = table();
        new.columns[1].values = Values::Text(vec![Some("zzz".into()); 4]);
        let m = p.transform(&new).expect("transform");
        assert_eq!(m.get(0, 1), 2.0, "unseen level maps to the <other> code");
        new.columns.remove(0);
        let err = p.transform(&new).expect_err("missing column");
        assert!(err.to_string().contains("`x`"));
    }

    #[test]
    fn a_number_written_otherwise_finds_its_level() {
        let with_levels = |levels: [&str; 3]| {
            let mut t = table();
            t.columns[1].values = Values::Text(
                levels
                    .iter()
                    .map(|l| Some(l.to_string()))
                    .chain([None])
                    .collect(),
            );
            t
        };
        // Mixed codes make the column categorical (numbers alone would be a numeric column).
        let training = with_levels(["1", "2", "x"]);
        let schema = crate::schema::describe_columns(&training, "none");
        let y = [1.0, 0.0, 1.0, 0.0];
        let targets = Targets {
            y: &y,
            problem: BINARY,
            seed: 1,
        };
        let (p, _) = FeaturePipeline::fit_transform(
            &training,
            &schema,
            Encoding::Trees,
            FeatureOptions::default(),
            targets,
        )
        .expect("fit");
        let expected = p.transform(&training).expect("transform");
        // A JSON client's 1.0 and 2e0 are the CSV's levels 1 and 2; a text level stays unseen.
        let written_otherwise = p.transform(&with_levels(["1.0", "2e0", "x"])).expect("t");
        assert_eq!(written_otherwise.column(1)[..3], expected.column(1)[..3]);
        let unseen = p.transform(&with_levels(["zzz"; 3])).expect("t").get(0, 1);
        let other = p.transform(&with_levels(["one", "2.5", "1"])).expect("t");
        assert_eq!(other.column(1)[..3], [unseen, unseen, expected.get(0, 1)]);
        assert_ne!(unseen, expected.get(0, 1));
    }

    #[test]
    fn target_encoding_replaces_codes_and_is_out_of_fold_for_training_rows() {
        let options = FeatureOptions {
            categories: CategoryEncoding::Target,
            ..FeatureOptions::default()
        };
        let (p, training) = fit_with(Encoding::Trees, options);
        assert_eq!(p.feature_names, vec!["x", "c__target"]);
        let new = p.transform(&table()).expect("transform");
        // Level `a` (rows 0 and 2, both positive) scores above the prior for new rows.
        assert!(new.get(0, 1) > 0.5 && new.get(1, 1) < 0.5);
        assert_ne!(
            new.column(1),
            training.column(1),
            "training rows are out of fold"
        );
        p.check(std::path::Path::new("pipeline.json"))
            .expect("consistent");
        let json = serde_json::to_string(&p).expect("json");
        let back: FeaturePipeline = serde_json::from_str(&json).expect("parse");
        let again = back.transform(&table()).expect("transform");
        assert_eq!(again.column(1), new.column(1));
    }

    #[test]
    fn quantile_option_changes_only_the_linear_encoding() {
        let options = FeatureOptions {
            numbers: NumericScaling::Quantile,
            ..FeatureOptions::default()
        };
        let (linear, _) = fit_with(Encoding::Linear, options);
        assert!(matches!(
            &linear.transforms[0],
            ColumnTransform::Numeric {
                quantiles: Some(_),
                ..
            }
        ));
        let (trees, _) = fit_with(Encoding::Trees, options);
        assert!(matches!(
            &trees.transforms[0],
            ColumnTransform::Numeric {
                quantiles: None,
                ..
            }
        ));
    }

    #[test]
    fn selection_keeps_a_share_and_prediction_matches_it() {
        let options = FeatureOptions {
            keep_percent: 40,
            ..FeatureOptions::default()
        };
        let (p, training) = fit_with(Encoding::Linear, options);
        assert_eq!(p.selected.as_ref().map(Vec::len), Some(2));
        assert_eq!(p.n_features(), 2);
        assert_eq!(p.transform(&table()).expect("transform"), training);
        p.check(std::path::Path::new("pipeline.json"))
            .expect("consistent");
    }

    #[test]
    fn options_come_from_trial_parameters_and_bad_values_are_refused() {
        let point = ParamPoint::from([
            (
                CATEGORIES_PARAM.to_string(),
                ParamValue::Text("target".into()),
            ),
            (
                NUMBERS_PARAM.to_string(),
                ParamValue::Text("quantile".into()),
            ),
            (KEEP_PARAM.to_string(), ParamValue::Text("0.7".into())),
        ]);
        let options = FeatureOptions::from_params(&point).expect("options");
        assert_eq!(options.categories, CategoryEncoding::Target);
        assert_eq!(options.numbers, NumericScaling::Quantile);
        assert_eq!(options.keep_percent, 70);
        assert_eq!(
            FeatureOptions::from_params(&ParamPoint::new()).expect("defaults"),
            FeatureOptions::default()
        );
        let bad = ParamPoint::from([(KEEP_PARAM.to_string(), ParamValue::Float(1.5))]);
        assert!(FeatureOptions::from_params(&bad).is_err());
        let bad = ParamPoint::from([(CATEGORIES_PARAM.to_string(), ParamValue::Text("x".into()))]);
        assert!(FeatureOptions::from_params(&bad).is_err());
    }

    #[test]
    fn search_params_follow_the_columns() {
        let linear = search_params(Encoding::Linear, &schema(), BINARY, false);
        let names: Vec<&str> = linear.iter().map(|(n, ..)| *n).collect();
        assert_eq!(
            names,
            vec![CATEGORIES_PARAM, NUMBERS_PARAM],
            "2 columns: no selection"
        );
        let trees = search_params(Encoding::Trees, &schema(), BINARY, false);
        assert_eq!(trees[0].2, ParamValue::Text("ordinal".into()));
        assert_eq!(trees.len(), 1, "numbers are not scaled for trees");
        let many_classes = Problem {
            kind: exeml_core::ProblemType::Multiclass,
            n_classes: 40,
        };
        let network = search_params(Encoding::Linear, &schema(), many_classes, true);
        assert_eq!(network[0].2, ParamValue::Text("embedding".into()));
        assert_eq!(
            network[0].1,
            ParamRange::Choice {
                options: vec!["one_hot".into(), "embedding".into()]
            },
            "no target encoding for 40 classes"
        );
        assert!(
            search_params(Encoding::Trees, &schema(), many_classes, false)
                .iter()
                .all(|(name, ..)| *name != CATEGORIES_PARAM)
        );
    }

    #[test]
    fn an_inconsistent_saved_pipeline_is_refused() {
        let path = std::path::Path::new("pipeline.json");
        let mut p = fit(Encoding::Linear);
        p.check(path).expect("consistent");
        let good = p.clone();
        if let Some(s) = &mut p.scaling {
            s.mean.pop();
        }
        assert!(p.check(path).is_err());
        let mut p = good.clone();
        p.selected = Some(vec![3, 99]);
        p.feature_names.truncate(2);
        assert!(p.check(path).is_err());
        let mut p = good;
        if let ColumnTransform::Categorical { frequencies, .. } = &mut p.transforms[1] {
            frequencies.push(0.1);
        }
        let err = p.check(path).expect_err("inconsistent");
        assert!(err.to_string().contains("`c`"), "{err}");
    }

    #[test]
    fn embedding_codes_pass_through_unscaled_and_are_listed() {
        let options = FeatureOptions {
            categories: CategoryEncoding::Embedding,
            ..FeatureOptions::default()
        };
        let (p, training) = fit_with(Encoding::Linear, options);
        assert_eq!(p.feature_names, vec!["x", "c__code", "x__missing"]);
        // Levels a (0), b (1); the missing value is the last code (levels + 1 = 3).
        assert_eq!(training.column(1), [0.0, 1.0, 0.0, 3.0]);
        assert_eq!(
            p.embedded_features(),
            vec![EmbeddedFeature {
                feature: 1,
                codes: 4
            }]
        );
        let mut new = table();
        new.columns[1].values = Values::Text(vec![Some("zzz".into()); 4]);
        assert_eq!(p.transform(&new).expect("transform").column(1), [2.0; 4]);
        // Trees read the same option as their ordinal codes.
        let (trees, _) = fit_with(Encoding::Trees, options);
        assert!(trees.embedded_features().is_empty());
        assert_eq!(trees.feature_names, vec!["x", "c"]);
        // …whose codes the booster may split into sets of categories.
        assert_eq!(trees.category_code_features(), [1]);
        assert!(p.category_code_features().is_empty());
        let mut selected = trees.clone();
        selected.selected = Some(vec![1]);
        assert_eq!(selected.category_code_features(), [0]);
        selected.selected = Some(vec![0]);
        assert!(selected.category_code_features().is_empty());
    }

    #[test]
    fn embedded_features_follow_the_selection() {
        let mut p = fit_with(
            Encoding::Linear,
            FeatureOptions {
                categories: CategoryEncoding::Embedding,
                ..FeatureOptions::default()
            },
        )
        .0;
        p.selected = Some(vec![1, 2]);
        p.feature_names = vec!["c__code".into(), "x__missing".into()];
        p.check(std::path::Path::new("pipeline.json"))
            .expect("consistent");
        assert_eq!(p.embedded_features()[0].feature, 0);
        p.selected = Some(vec![0, 2]);
        assert!(
            p.embedded_features().is_empty(),
            "the code feature was dropped"
        );
    }

    #[test]
    fn text_columns_get_tf_idf_when_asked_and_the_option_is_searched() {
        let reviews = [
            "not good at all",
            "good",
            "really good",
            "not bad",
            "bad",
            "awful",
        ];
        let mut t = table();
        t.columns.push(Column {
            name: "review".into(),
            values: Values::Text(reviews[..4].iter().map(|r| Some((*r).into())).collect()),
        });
        let schema = vec![
            ColumnSchema {
                name: "x".into(),
                kind: ColumnKind::Numeric,
                dropped: None,
                missing_ratio: 0.25,
                distinct: 3,
            },
            ColumnSchema {
                name: "review".into(),
                kind: ColumnKind::Text,
                dropped: None,
                missing_ratio: 0.0,
                distinct: 4,
            },
        ];
        let y = [0.0, 1.0, 1.0, 0.0];
        let targets = Targets {
            y: &y,
            problem: BINARY,
            seed: 1,
        };
        let options = FeatureOptions {
            text: TextEncoding::TfIdf,
            ..FeatureOptions::default()
        };
        let (p, training) =
            FeaturePipeline::fit_transform(&t, &schema, Encoding::Trees, options, targets)
                .expect("fit");
        assert_eq!(p.n_features(), 1 + 2 + text::TFIDF_BUCKETS);
        assert_eq!(p.feature_names[3], "review__tfidf0");
        p.check(std::path::Path::new("pipeline.json"))
            .expect("consistent");
        let again = p.transform(&t).expect("transform");
        assert_eq!(again.column(5), training.column(5));
        let (hashed, _) = FeaturePipeline::fit_transform(
            &t,
            &schema,
            Encoding::Trees,
            FeatureOptions::default(),
            targets,
        )
        .expect("fit");
        assert_eq!(hashed.n_features(), 1 + 2 + text::HASHED_BUCKETS);
        let params = search_params(Encoding::Trees, &schema, BINARY, false);
        assert!(params.iter().any(|(name, ..)| *name == TEXT_PARAM));
        let point = ParamPoint::from([(TEXT_PARAM.to_string(), ParamValue::Text("tfidf".into()))]);
        assert_eq!(
            FeatureOptions::from_params(&point).expect("options").text,
            TextEncoding::TfIdf
        );
    }

    #[test]
    fn pipelines_saved_before_feature_options_still_load() {
        let json = r#"{"encoding":"trees","transforms":[{"transform":"numeric","column":"x"}],
            "kinds":["numeric"],"feature_names":["x"]}"#;
        let p: FeaturePipeline = serde_json::from_str(json).expect("parse");
        assert_eq!(p.options, FeatureOptions::default());
        p.check(std::path::Path::new("pipeline.json"))
            .expect("consistent");
    }
}
