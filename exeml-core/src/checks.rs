//! The data-check framework: every check yields structured findings that name where the problem is.
//!
//! An [`Severity::Error`] finding refuses training; a [`Severity::Warning`] trains and says so;
//! an [`Severity::Info`] records what exeml did (a dropped column, a date turned into features).

use serde::{Deserialize, Serialize};
use std::fmt;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A note about what was done automatically.
    Info,
    /// Training goes on, but the user should look.
    Warning,
    /// Training is refused until this is fixed.
    Error,
}

/// Where in the data a finding points.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Location {
    /// The file, if the finding concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The column (tables) or field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The 1-based data row (tables) or line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<usize>,
    /// The label concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// A stable machine-readable code, e.g. `too_few_rows`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// Where it points.
    #[serde(default)]
    pub location: Location,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{level} [{}]", self.code)?;
        let loc = &self.location;
        if let Some(file) = &loc.file {
            write!(f, " {file}")?;
        }
        if let Some(column) = &loc.column {
            write!(f, " column `{column}`")?;
        }
        if let Some(row) = loc.row {
            write!(f, " row {row}")?;
        }
        if let Some(label) = &loc.label {
            write!(f, " label `{label}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All findings of a data check, stored with the dataset version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The findings in the order they were made.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a finding.
    pub fn push(
        &mut self,
        severity: Severity,
        code: &str,
        message: impl Into<String>,
        location: Location,
    ) {
        self.findings.push(Finding {
            severity,
            code: code.to_string(),
            message: message.into(),
            location,
        });
    }

    /// Add an error finding.
    pub fn error(&mut self, code: &str, message: impl Into<String>, location: Location) {
        self.push(Severity::Error, code, message, location);
    }

    /// Add a warning finding.
    pub fn warn(&mut self, code: &str, message: impl Into<String>, location: Location) {
        self.push(Severity::Warning, code, message, location);
    }

    /// Add an informational finding.
    pub fn info(&mut self, code: &str, message: impl Into<String>, location: Location) {
        self.push(Severity::Info, code, message, location);
    }

    /// True if any finding refuses training.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The findings of one severity.
    pub fn of(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == severity)
    }

    /// Turn a report with errors into [`crate::Error::CheckFailed`] for `path`.
    pub fn into_result(self, path: &std::path::Path) -> crate::Result<CheckReport> {
        if !self.has_errors() {
            return Ok(self);
        }
        let summary = self
            .of(Severity::Error)
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        Err(crate::Error::CheckFailed {
            path: path.to_path_buf(),
            summary,
        })
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        Ok(())
    }
}

/// Location builders, so checks read naturally: `at().column("age").row(3)`.
pub fn at() -> Location {
    Location::default()
}

impl Location {
    /// Set the file.
    pub fn file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
    /// Set the column.
    pub fn column(mut self, column: impl Into<String>) -> Self {
        self.column = Some(column.into());
        self
    }
    /// Set the 1-based row.
    pub fn row(mut self, row: usize) -> Self {
        self.row = Some(row);
        self
    }
    /// Set the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_refuse_and_name_the_place() {
        let mut report = CheckReport::new();
        report.warn("many_missing", "40% missing", at().column("income"));
        assert!(report.clone().into_result("t.csv".as_ref()).is_ok());
        report.error("too_few_rows", "12 rows, need 100", at().file("t.csv"));
        let err = report
            .into_result("t.csv".as_ref())
            .expect_err("an error finding refuses");
        let text = err.to_string();
        assert!(
            text.contains("t.csv") && text.contains("too_few_rows"),
            "{text}"
        );
    }
}
