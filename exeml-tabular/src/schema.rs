//! Column type inference, the label and the problem type of a table.

use crate::table::{clean_text, format_number, Table, Values};
use exeml_core::{Error, ProblemType, Result};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What a column holds, as far as modelling is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Numbers (including 0/1 flags).
    Numeric,
    /// A small set of named values.
    Categorical,
    /// Dates or timestamps: turned into calendar features.
    Datetime,
    /// Free text: turned into length and hashed word features.
    Text,
}

/// One input column as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    /// The column's name.
    pub name: String,
    /// Its inferred kind.
    pub kind: ColumnKind,
    /// Why the column is not used, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
    /// Share of missing values in the training data.
    #[serde(default)]
    pub missing_ratio: f64,
    /// Number of distinct non-missing values in the training data.
    #[serde(default)]
    pub distinct: usize,
}

/// The label and what kind of problem it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The label column's name.
    pub column: String,
    /// Binary, multiclass or regression.
    pub problem: ProblemType,
    /// Class names in model order (sorted); empty for regression.
    pub classes: Vec<String>,
}

/// How values that look like dates are parsed (after polars' own ISO parsing).
const TIME_FORMATS: [&str; 8] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
];

/// Parse a date or timestamp in any of the supported formats into epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in TIME_FORMATS {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(text, format) {
            return d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis());
        }
    }
    None
}

/// Parse a finite number (surrounding spaces allowed).
pub fn parse_number(text: &str) -> Option<f64> {
    let v: f64 = text.trim().parse().ok()?;
    v.is_finite().then_some(v)
}

/// Whether the text `text` can be a value of a column of `kind` (missing-value tokens always
/// can); the message says what was expected.
pub fn check_text(text: &str, kind: ColumnKind) -> std::result::Result<(), String> {
    let Some(t) = clean_text(text) else {
        return Ok(());
    };
    match kind {
        ColumnKind::Numeric if parse_number(&t).is_none() => {
            Err(format!("expected a number, got {}", quoted(&t)))
        }
        ColumnKind::Datetime if parse_time(&t).is_none() => Err(format!(
            "expected a date such as 2024-01-31 or 2024-01-31 08:00:00, got {}",
            quoted(&t)
        )),
        _ => Ok(()),
    }
}

/// A value, quoted and cut short for an error message.
pub fn quoted(text: &str) -> String {
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("\"{short}…\"")
    } else {
        format!("\"{short}\"")
    }
}

/// Infer the kind of a column from its values.
pub fn infer_kind(values: &Values) -> ColumnKind {
    match values {
        Values::Number(_) => ColumnKind::Numeric,
        Values::Time(_) => ColumnKind::Datetime,
        Values::Text(texts) => {
            let present: Vec<&str> = texts.iter().flatten().map(String::as_str).collect();
            if present.is_empty() {
                return ColumnKind::Categorical;
            }
            if present.iter().all(|t| parse_number(t).is_some()) {
                return ColumnKind::Numeric;
            }
            let sample = present.iter().take(1000);
            if sample.clone().all(|t| parse_time(t).is_some()) {
                return ColumnKind::Datetime;
            }
            let n = present.len() as f64;
            let mean_words = present
                .iter()
                .map(|t| t.split_whitespace().count())
                .sum::<usize>() as f64
                / n;
            let distinct = present.iter().collect::<HashSet<_>>().len() as f64;
            if mean_words >= 3.0 && distinct / n > 0.3 {
                ColumnKind::Text
            } else {
                ColumnKind::Categorical
            }
        }
    }
}

/// Convert `values` to the representation `kind` needs: numbers for numeric, times for dates,
/// text for the rest. Values that do not convert become missing; returns how many did so.
/// Values already in that representation are borrowed, not copied.
pub fn coerce(values: &Values, kind: ColumnKind) -> (Cow<'_, Values>, usize) {
    let (converted, lost) = match (kind, values) {
        (ColumnKind::Numeric, Values::Number(_))
        | (ColumnKind::Datetime, Values::Time(_))
        | (ColumnKind::Categorical | ColumnKind::Text, Values::Text(_)) => {
            return (Cow::Borrowed(values), 0)
        }
        (ColumnKind::Numeric, Values::Text(t)) => {
            let mut lost = 0;
            let v = t
                .iter()
                .map(|x| match x.as_deref().map(parse_number) {
                    None => f64::NAN,
                    Some(Some(v)) => v,
                    Some(None) => {
                        lost += 1;
                        f64::NAN
                    }
                })
                .collect();
            (Values::Number(v), lost)
        }
        (ColumnKind::Datetime, Values::Text(t)) => {
            let mut lost = 0;
            let v = t
                .iter()
                .map(|x| match x.as_deref().map(parse_time) {
                    None => None,
                    Some(Some(v)) => Some(v),
                    Some(None) => {
                        lost += 1;
                        None
                    }
                })
                .collect();
            (Values::Time(v), lost)
        }
        (ColumnKind::Numeric, Values::Time(v)) => (
            Values::Number(v.iter().map(|x| x.map_or(f64::NAN, |m| m as f64)).collect()),
            0,
        ),
        (ColumnKind::Datetime, Values::Number(v)) => {
            (Values::Time(v.iter().map(|_| None).collect()), v.len())
        }
        (ColumnKind::Categorical | ColumnKind::Text, other) => (
            Values::Text((0..other.len()).map(|i| other.text_at(i)).collect()),
            0,
        ),
    };
    (Cow::Owned(converted), lost)
}

/// Describe every column except the label: kind, missing ratio, distinct count, and whether it
/// is dropped (constant, all missing, or an identifier with one distinct value per row).
pub fn describe_columns(table: &Table, label: &str) -> Vec<ColumnSchema> {
    let n = table.n_rows().max(1);
    table
        .columns
        .iter()
        .filter(|c| c.name != label)
        .map(|column| {
            let kind = infer_kind(&column.values);
            let (values, _) = coerce(&column.values, kind);
            let missing = (0..values.len()).filter(|&i| values.is_missing(i)).count();
            let distinct = distinct_count(&values);
            let dropped = if missing == values.len() {
                Some("all values are missing".to_string())
            } else if distinct <= 1 {
                Some("a single value in every row".to_string())
            } else if kind == ColumnKind::Categorical && distinct == n - missing && n >= 20 {
                Some("an identifier: a different value in every row".to_string())
            } else {
                None
            };
            ColumnSchema {
                name: column.name.clone(),
                kind,
                dropped,
                missing_ratio: missing as f64 / n as f64,
                distinct,
            }
        })
        .collect()
}

fn distinct_count(values: &Values) -> usize {
    match values {
        Values::Number(v) => v
            .iter()
            .filter(|x| !x.is_nan())
            .map(|x| x.to_bits())
            .collect::<HashSet<_>>()
            .len(),
        Values::Text(v) => v.iter().flatten().collect::<HashSet<_>>().len(),
        Values::Time(v) => v.iter().flatten().collect::<HashSet<_>>().len(),
    }
}

/// Decide the problem type of the label column (unless `forced`) and its classes.
///
/// Text labels and integer labels with at most 20 distinct values are classes; other numbers are
/// a regression target (AutoGluon's rule, roughly).
pub fn infer_target(table: &Table, label: &str, forced: Option<ProblemType>) -> Result<Target> {
    let column = table.column(label)?;
    let numeric = match &column.values {
        Values::Number(v) => Some(v.clone()),
        Values::Text(_) if infer_kind(&column.values) == ColumnKind::Numeric => {
            match coerce(&column.values, ColumnKind::Numeric).0.into_owned() {
                Values::Number(v) => Some(v),
                _ => None,
            }
        }
        Values::Time(_) => {
            return Err(Error::data(
                &table.source,
                format!("label column `{label}` holds dates; a label must be classes or numbers"),
            ))
        }
        Values::Text(_) => None,
    };
    let problem = match (forced, &numeric) {
        (Some(ProblemType::Regression), None) => {
            return Err(Error::data(
                &table.source,
                format!(
                    "label column `{label}` is not numeric, so it cannot be a regression target"
                ),
            ))
        }
        (Some(p), _) => p,
        (None, Some(v)) => {
            let present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            let distinct: BTreeSet<u64> = present.iter().map(|x| x.to_bits()).collect();
            let integral = present.iter().all(|x| x.fract() == 0.0);
            if distinct.len() == 2 || (integral && distinct.len() <= 20) {
                ProblemType::Multiclass
            } else {
                ProblemType::Regression
            }
        }
        (None, None) => ProblemType::Multiclass,
    };
    if problem == ProblemType::Regression {
        return Ok(Target {
            column: label.to_string(),
            problem,
            classes: Vec::new(),
        });
    }
    let classes = class_names(&column.values, numeric.as_deref());
    let problem = if classes.len() == 2 {
        ProblemType::Binary
    } else {
        ProblemType::Multiclass
    };
    Ok(Target {
        column: label.to_string(),
        problem,
        classes,
    })
}

/// The sorted distinct labels (numbers sorted numerically).
fn class_names(values: &Values, numeric: Option<&[f64]>) -> Vec<String> {
    if let Some(v) = numeric {
        let mut present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
        present.sort_by(f64::total_cmp);
        present.dedup();
        return present.into_iter().map(format_number).collect();
    }
    let mut set = BTreeMap::new();
    for i in 0..values.len() {
        if let Some(t) = values.text_at(i).as_deref().and_then(clean_text) {
            set.insert(t, ());
        }
    }
    set.into_keys().collect()
}

/// The label of every row as a class name (`None` where missing), canonicalised like the classes.
pub fn label_texts(values: &Values) -> Vec<Option<String>> {
    match values {
        Values::Text(t) if infer_kind(values) == ColumnKind::Numeric => t
            .iter()
            .map(|x| x.as_deref().and_then(parse_number).map(format_number))
            .collect(),
        _ => (0..values.len()).map(|i| values.text_at(i)).collect(),
    }
}

/// The label of every row as a number (`NaN` where missing or not a number).
pub fn label_numbers(values: &Values) -> Vec<f64> {
    match coerce(values, ColumnKind::Numeric).0.into_owned() {
        Values::Number(v) => v,
        _ => vec![f64::NAN; values.len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(values: &[&str]) -> Values {
        Values::Text(values.iter().map(|v| clean_text(v)).collect())
    }

    #[test]
    fn infers_kinds_from_text() {
        assert_eq!(infer_kind(&text(&["1", "2.5", ""])), ColumnKind::Numeric);
        assert_eq!(
            infer_kind(&text(&["2024-01-01", "2023/12/31"])),
            ColumnKind::Datetime
        );
        assert_eq!(
            infer_kind(&text(&["red", "blue", "red"])),
            ColumnKind::Categorical
        );
        assert_eq!(
            infer_kind(&text(&[
                "the cat sat down",
                "a dog ran off fast",
                "birds sing at dawn"
            ])),
            ColumnKind::Text
        );
    }

    #[test]
    fn integer_labels_with_few_values_are_classes() {
        let table = Table {
            columns: vec![crate::table::Column {
                name: "y".into(),
                values: Values::Number(vec![1.0, 2.0, 3.0, 1.0]),
            }],
            source: "t.csv".into(),
        };
        let target = infer_target(&table, "y", None).expect("target");
        assert_eq!(target.problem, ProblemType::Multiclass);
        assert_eq!(target.classes, ["1", "2", "3"]);
        let forced = infer_target(&table, "y", Some(ProblemType::Regression)).expect("target");
        assert_eq!(forced.problem, ProblemType::Regression);
    }

    #[test]
    fn fractional_labels_are_regression() {
        let table = Table {
            columns: vec![crate::table::Column {
                name: "y".into(),
                values: Values::Number((0..50).map(|i| i as f64 * 0.37).collect()),
            }],
            source: "t.csv".into(),
        };
        assert_eq!(
            infer_target(&table, "y", None).expect("target").problem,
            ProblemType::Regression
        );
    }

    #[test]
    fn parses_common_date_formats() {
        for t in [
            "2024-03-01",
            "2024-03-01 12:30:00",
            "01/03/2024",
            "2024-03-01T12:00:00Z",
        ] {
            assert!(parse_time(t).is_some(), "{t}");
        }
        assert!(parse_time("March").is_none());
    }
}
