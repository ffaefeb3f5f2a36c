//! What the user cares about more: a fast small model or the most accurate one.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The trade-off between speed/size and accuracy (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// A fast, small model; the search stops early.
    PerformanceFirst,
    /// The default: good accuracy at a reasonable cost.
    #[default]
    Balance,
    /// The most accurate model the budget allows, even if large and slow.
    AccuracyFirst,
}

impl Preference {
    /// The spelling used on the command line and in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Preference::PerformanceFirst => "performance_first",
            Preference::Balance => "balance",
            Preference::AccuracyFirst => "accuracy_first",
        }
    }
}

impl fmt::Display for Preference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Preference {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "performance_first" => Ok(Preference::PerformanceFirst),
            "balance" => Ok(Preference::Balance),
            "accuracy_first" => Ok(Preference::AccuracyFirst),
            _ => Err(crate::Error::invalid(
                "preference",
                format!("`{s}`: expected performance_first, balance or accuracy_first"),
            )),
        }
    }
}
