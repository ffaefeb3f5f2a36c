//! Search spaces, trials and the `Searcher` trait.
//!
//! Each model family declares its own [`SearchSpace`], the points to try first and a cost hint
//! (FLAML's idea), so a searcher stays generic and adding a family touches one file.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod stopping;
pub mod tpe;
pub use stopping::{MedianStopping, NeverStop, StoppingTrial, TrialMonitor};
pub use tpe::{TpeConfig, TpeSearcher};

/// One hyper-parameter's range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ParamRange {
    /// A real number in `[low, high]`, searched on a log scale if `log`.
    Float {
        /// Lower bound.
        low: f64,
        /// Upper bound.
        high: f64,
        /// Search on a log scale.
        log: bool,
    },
    /// An integer in `[low, high]`, on a log scale if `log`.
    Int {
        /// Lower bound.
        low: i64,
        /// Upper bound.
        high: i64,
        /// Search on a log scale.
        log: bool,
    },
    /// One of a few named choices.
    Choice {
        /// The choices.
        options: Vec<String>,
    },
}

/// A concrete value of one hyper-parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A choice.
    Text(String),
}

impl ParamValue {
    /// The value as a float (integers convert; text does not).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            ParamValue::Int(v) => Some(*v as f64),
            ParamValue::Float(v) => Some(*v),
            ParamValue::Text(_) => None,
        }
    }

    /// The value as an integer (floats round).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ParamValue::Int(v) => Some(*v),
            ParamValue::Float(v) => Some(v.round() as i64),
            ParamValue::Text(_) => None,
        }
    }

    /// The value as text, if it is a choice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ParamValue::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// A point in a search space: parameter name → value.
pub type ParamPoint = BTreeMap<String, ParamValue>;

/// The search space of one model family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    /// The family's name, e.g. `gbdt`.
    pub family: String,
    /// Every tunable parameter with its range.
    pub params: BTreeMap<String, ParamRange>,
    /// Points known to be good, tried first in this order.
    pub defaults: Vec<ParamPoint>,
    /// Relative cost of one fit at the default point (1.0 = a linear model); orders the search.
    pub cost_hint: f64,
}

/// A configuration to evaluate: a family and a point of its space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Sequence number within the search, from 0.
    pub id: usize,
    /// The model family.
    pub family: String,
    /// The hyper-parameters.
    pub params: ParamPoint,
}

/// What happened when a trial ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrialOutcome {
    /// Validation score, higher is better (losses are negated); `None` if the trial failed.
    pub score: Option<f64>,
    /// The name of the score (e.g. `accuracy`, `neg_rmse`).
    pub metric: String,
    /// Seconds spent fitting.
    pub fit_secs: f64,
    /// Seconds spent predicting the validation part.
    pub predict_secs: f64,
    /// Why the trial failed, was stopped or was excluded by a constraint, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Median latency of one prediction, in milliseconds (see [`crate::constraints`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// Size of the saved model, in megabytes (measured when a size limit is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mb: Option<f64>,
}

/// A trial with its outcome: one row of the leaderboard and of the search history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    /// The configuration.
    pub trial: Trial,
    /// What it scored.
    pub outcome: TrialOutcome,
}

/// Proposes configurations and learns from their outcomes.
pub trait Searcher {
    /// The next trial to run, or `None` when the searcher has nothing more to try.
    fn suggest(&mut self) -> Option<Trial>;

    /// Report the outcome of a trial returned by [`Searcher::suggest`].
    fn observe(&mut self, record: TrialRecord);
}

/// The simplest real searcher: every family's default points, cheapest family first.
///
/// It is the warm start of every smarter searcher and the whole search when the budget is small.
#[derive(Debug, Clone)]
pub struct DefaultsFirst {
    queue: std::collections::VecDeque<(String, ParamPoint)>,
    next_id: usize,
    history: Vec<TrialRecord>,
}

impl DefaultsFirst {
    /// Queue the default points of `spaces`, ordered by cost hint.
    pub fn new(spaces: &[SearchSpace]) -> Self {
        let mut ordered: Vec<&SearchSpace> = spaces.iter().collect();
        ordered.sort_by(|a, b| a.cost_hint.total_cmp(&b.cost_hint));
        let queue = ordered
            .into_iter()
            .flat_map(|s| s.defaults.iter().map(|p| (s.family.clone(), p.clone())))
            .collect();
        DefaultsFirst {
            queue,
            next_id: 0,
            history: Vec::new(),
        }
    }

    /// Try `params` of `family` before everything else (a warm start from an earlier model);
    /// the same point is not tried twice.
    pub fn prepend(&mut self, family: &str, params: ParamPoint) {
        self.queue.retain(|(f, p)| !(f == family && *p == params));
        self.queue.push_front((family.to_string(), params));
    }

    /// Trials still queued.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }

    /// Every observed trial so far.
    pub fn history(&self) -> &[TrialRecord] {
        &self.history
    }
}

impl Searcher for DefaultsFirst {
    fn suggest(&mut self) -> Option<Trial> {
        let (family, params) = self.queue.pop_front()?;
        let id = self.next_id;
        self.next_id += 1;
        Some(Trial { id, family, params })
    }

    fn observe(&mut self, record: TrialRecord) {
        self.history.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(family: &str, cost: f64) -> SearchSpace {
        SearchSpace {
            family: family.into(),
            params: BTreeMap::new(),
            defaults: vec![ParamPoint::new()],
            cost_hint: cost,
        }
    }

    #[test]
    fn defaults_first_orders_by_cost_and_ends() {
        let mut searcher = DefaultsFirst::new(&[space("gbdt", 10.0), space("linear", 1.0)]);
        let first = searcher.suggest().expect("a trial");
        assert_eq!((first.id, first.family.as_str()), (0, "linear"));
        assert_eq!(searcher.suggest().map(|t| t.family), Some("gbdt".into()));
        assert!(searcher.suggest().is_none());
    }
}
