//! The five tasks of exeml.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kind of problem a project solves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Tables: classification or regression of a label column.
    Tabular,
    /// Image classification (single- or multi-label).
    Image,
    /// Object detection with boxes.
    Detection,
    /// Sound classification of WAV clips.
    Sound,
    /// Text classification.
    Text,
}

impl TaskKind {
    /// Every task, in the order of the docs.
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Tabular,
        TaskKind::Image,
        TaskKind::Detection,
        TaskKind::Sound,
        TaskKind::Text,
    ];

    /// The spelling on the command line and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Tabular => "tabular",
            TaskKind::Image => "image",
            TaskKind::Detection => "detection",
            TaskKind::Sound => "sound",
            TaskKind::Text => "text",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskKind {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        TaskKind::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                crate::Error::invalid(
                    "task",
                    format!("`{s}`: expected tabular, image, detection, sound or text"),
                )
            })
    }
}

/// What a model predicts: the supervised problem type of a trained model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// Two classes.
    Binary,
    /// More than two mutually exclusive classes.
    Multiclass,
    /// Any number of labels per sample.
    Multilabel,
    /// A continuous number.
    Regression,
    /// Boxes with classes.
    Detection,
}

impl ProblemType {
    /// True for the problem types that predict classes.
    pub fn is_classification(self) -> bool {
        matches!(
            self,
            ProblemType::Binary | ProblemType::Multiclass | ProblemType::Multilabel
        )
    }

    /// The spelling on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemType::Binary => "binary",
            ProblemType::Multiclass => "multiclass",
            ProblemType::Multilabel => "multilabel",
            ProblemType::Regression => "regression",
            ProblemType::Detection => "detection",
        }
    }
}

impl FromStr for ProblemType {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "binary" => Ok(ProblemType::Binary),
            "multiclass" => Ok(ProblemType::Multiclass),
            "multilabel" => Ok(ProblemType::Multilabel),
            "regression" => Ok(ProblemType::Regression),
            "classification" => Ok(ProblemType::Multiclass),
            _ => Err(crate::Error::invalid(
                "problem type",
                format!("`{s}`: expected binary, multiclass, classification or regression"),
            )),
        }
    }
}

impl fmt::Display for ProblemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
