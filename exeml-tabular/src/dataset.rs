//! `TabularDataset`: a table with its label resolved, implementing the core `Dataset` trait.

use crate::checks::check_table;
use crate::schema::{
    describe_columns, infer_target, label_numbers, label_texts, ColumnSchema, Target,
};
use crate::table::Table;
use exeml_core::{CheckReport, Dataset, Error, ProblemType, Result, TaskKind, Usage};

/// A table whose label column, problem type and column kinds are known.
#[derive(Debug, Clone)]
pub struct TabularDataset {
    /// The rows.
    pub table: Table,
    /// The label column, problem type and classes.
    pub target: Target,
    /// Every other column: kind, missing share, and whether it is dropped.
    pub columns: Vec<ColumnSchema>,
    /// Each row's label as a class name (`None` where missing).
    pub labels: Vec<Option<String>>,
    /// Each row's label as a number (`NaN` where missing or not numeric).
    pub numbers: Vec<f64>,
}

impl TabularDataset {
    /// Resolve the label (`None`: the last column) and the problem (`None`: inferred).
    pub fn new(table: Table, label: Option<&str>, problem: Option<ProblemType>) -> Result<Self> {
        let label = match label {
            Some(l) => l.to_string(),
            None => table
                .columns
                .last()
                .map(|c| c.name.clone())
                .ok_or_else(|| Error::data(&table.source, "the table has no columns"))?,
        };
        let target = infer_target(&table, &label, problem)?;
        Ok(Self::with_target(table, target))
    }

    fn with_target(table: Table, target: Target) -> Self {
        let (labels, numbers, columns) = match table.column(&target.column) {
            Ok(column) => (
                label_texts(&column.values),
                label_numbers(&column.values),
                describe_columns(&table, &target.column),
            ),
            Err(_) => (Vec::new(), Vec::new(), Vec::new()),
        };
        TabularDataset {
            table,
            target,
            columns,
            labels,
            numbers,
        }
    }

    /// The label column's name.
    pub fn label(&self) -> &str {
        &self.target.column
    }
}

impl Dataset for TabularDataset {
    fn task(&self) -> TaskKind {
        TaskKind::Tabular
    }

    fn len(&self) -> usize {
        self.table.n_rows()
    }

    fn classes(&self) -> &[String] {
        &self.target.classes
    }

    fn check(&self) -> CheckReport {
        check_table(
            &self.table,
            &self.target,
            &self.labels,
            &self.numbers,
            &self.columns,
        )
    }

    fn subset(&self, usage: &[Usage], keep: Usage) -> Result<Self> {
        if usage.len() != self.len() {
            return Err(Error::data(
                &self.table.source,
                format!(
                    "the split has {} rows but the table {}",
                    usage.len(),
                    self.len()
                ),
            ));
        }
        let rows: Vec<usize> = (0..usage.len()).filter(|&i| usage[i] == keep).collect();
        Ok(Self::with_target(
            self.table.take(&rows),
            self.target.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Column, Values};

    fn table(n: usize) -> Table {
        Table {
            columns: vec![
                Column {
                    name: "x".into(),
                    values: Values::Number((0..n).map(|i| i as f64).collect()),
                },
                Column {
                    name: "z".into(),
                    values: Values::Number((0..n).map(|i| (i * 7 % 11) as f64).collect()),
                },
                Column {
                    name: "y".into(),
                    values: Values::Text((0..n).map(|i| Some(format!("c{}", i % 2))).collect()),
                },
            ],
            source: "t.csv".into(),
        }
    }

    #[test]
    fn implements_dataset_with_checks_and_subsets() {
        let data = TabularDataset::new(table(120), None, None).expect("dataset");
        assert_eq!(
            (data.task(), data.len(), data.label()),
            (TaskKind::Tabular, 120, "y")
        );
        assert_eq!(data.classes(), ["c0", "c1"]);
        assert!(!data.check().has_errors(), "{}", data.check());
        let usage: Vec<Usage> = (0..120)
            .map(|i| {
                if i < 100 {
                    Usage::Train
                } else {
                    Usage::Validation
                }
            })
            .collect();
        let valid = data.subset(&usage, Usage::Validation).expect("subset");
        assert_eq!(valid.len(), 20);
        assert!(
            valid.check().has_errors(),
            "20 rows are too few to train on"
        );
    }
}
