//! The SPEC §3 data checks of predictive analytics.

use crate::schema::{ColumnKind, ColumnSchema, Target};
use crate::table::Table;
use exeml_core::checks::{at, CheckReport};
use exeml_core::ProblemType;
use std::collections::BTreeMap;

/// Fewest rows a table must have to train (SPEC).
pub const MIN_ROWS: usize = 100;
/// Share of missing values above which a column gets a warning (SPEC).
pub const MISSING_WARNING: f64 = 0.10;

/// Check a table before training: rows, the label, usable features, missing values, dates.
pub fn check_table(
    table: &Table,
    target: &Target,
    labels: &[Option<String>],
    numbers: &[f64],
    columns: &[ColumnSchema],
) -> CheckReport {
    let mut report = CheckReport::new();
    let file = table.source.display().to_string();
    let n = table.n_rows();
    if n < MIN_ROWS {
        report.error(
            "too_few_rows",
            format!("{n} data rows; at least {MIN_ROWS} are needed to train"),
            at().file(&file),
        );
    }
    let label = &target.column;
    let missing_label: Vec<usize> = if target.problem == ProblemType::Regression {
        (0..n).filter(|&i| numbers[i].is_nan()).collect()
    } else {
        (0..n).filter(|&i| labels[i].is_none()).collect()
    };
    if let Some(&first) = missing_label.first() {
        report.error(
            "label_missing",
            format!(
                "{} rows have no label (the first is data row {}); label every row or remove them",
                missing_label.len(),
                first + 1
            ),
            at().file(&file).column(label).row(first + 1),
        );
    }
    if target.problem.is_classification() {
        if target.classes.len() < 2 {
            report.error(
                "label_single_value",
                format!(
                    "the label has {} distinct value(s); at least 2 are needed",
                    target.classes.len()
                ),
                at().file(&file).column(label),
            );
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for l in labels.iter().flatten() {
            *counts.entry(l.as_str()).or_default() += 1;
        }
        for (class, count) in counts {
            if count < 2 {
                report.warn(
                    "rare_class",
                    format!("class has {count} row; it cannot be both trained on and validated"),
                    at().file(&file).column(label).label(class),
                );
            }
        }
    } else {
        let distinct = numbers
            .iter()
            .filter(|x| !x.is_nan())
            .map(|x| x.to_bits())
            .collect::<std::collections::HashSet<_>>()
            .len();
        if distinct < 2 {
            report.error(
                "label_single_value",
                "the regression target has a single value",
                at().file(&file).column(label),
            );
        }
    }
    let usable = columns.iter().filter(|c| c.dropped.is_none()).count();
    for column in columns {
        if let Some(reason) = &column.dropped {
            report.info(
                "column_dropped",
                format!("not used: {reason}"),
                at().file(&file).column(&column.name),
            );
            continue;
        }
        if column.missing_ratio > MISSING_WARNING {
            report.warn(
                "many_missing",
                format!(
                    "{:.0}% of values are missing (more than {:.0}%); they are imputed",
                    column.missing_ratio * 100.0,
                    MISSING_WARNING * 100.0
                ),
                at().file(&file).column(&column.name),
            );
        }
        match column.kind {
            ColumnKind::Datetime => report.info(
                "datetime_features",
                "dates are turned into year, month, day, weekday, day-of-year, hour and elapsed-time features",
                at().file(&file).column(&column.name),
            ),
            ColumnKind::Text => report.info(
                "text_features",
                "free text is turned into length and hashed word features",
                at().file(&file).column(&column.name),
            ),
            ColumnKind::Categorical if column.distinct > 100 => report.info(
                "high_cardinality",
                format!(
                    "{} distinct values: rare ones are grouped and counts are added as a feature",
                    column.distinct
                ),
                at().file(&file).column(&column.name),
            ),
            _ => {}
        }
    }
    if usable < 2 {
        report.error(
            "too_few_features",
            format!("{usable} usable feature column(s); at least 2 are needed"),
            at().file(&file),
        );
    }
    report
}
