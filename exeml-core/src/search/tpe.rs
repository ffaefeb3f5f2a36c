//! Cost-aware Bayesian optimisation over model family × hyper-parameters: a Tree-structured
//! Parzen Estimator (TPE, Bergstra et al. 2011, as in Hyperopt and Optuna) per family, and a
//! family choice that weighs each family's best score against its cost (FLAML's idea of
//! cost-frugal search).
//!
//! Written here rather than taken from a crate: no maintained Rust crate does TPE over mixed
//! (log-float, int, choice) spaces with per-family conditional parameters, and the method is
//! short.
//!
//! The search starts with every family's default points (and a warm start's configuration),
//! then a few random points per family, then TPE. It ends after `patience` trials without
//! improvement, after `max_trials`, or when the caller's budget runs out.

use super::{DefaultsFirst, ParamPoint, ParamRange, ParamValue, SearchSpace, Searcher, Trial};
use super::{TrialOutcome, TrialRecord};
use crate::seed::{rng, Rng};
use rand::Rng as _;
use std::collections::BTreeMap;

/// Tuning of the search itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TpeConfig {
    /// Random points per family before its model is used.
    pub startup: usize,
    /// Candidates drawn from the good-points density per suggestion.
    pub candidates: usize,
    /// Share of a family's trials that count as good.
    pub gamma: f64,
    /// Stop after this many trials without a better score (`None`: only the budget stops it).
    pub patience: Option<usize>,
    /// Stop after this many trials in all.
    pub max_trials: usize,
    /// Seed of the search's own randomness.
    pub seed: u64,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            startup: 3,
            candidates: 24,
            gamma: 0.25,
            patience: Some(25),
            max_trials: 500,
            seed: 0,
        }
    }
}

/// The TPE searcher (see the module docs).
#[derive(Debug, Clone)]
pub struct TpeSearcher {
    defaults: DefaultsFirst,
    spaces: Vec<SearchSpace>,
    config: TpeConfig,
    rng: Rng,
    history: Vec<TrialRecord>,
    /// Trials proposed and not observed yet (fitted at the same time as others).
    pending: Vec<Trial>,
    issued: usize,
    best: Option<f64>,
    since_improvement: usize,
}

/// A family whose trials failed this many times in a row is not proposed again.
const MAX_FAILURES: usize = 2;

impl TpeSearcher {
    /// A search over `spaces`, default points first (cheapest family first).
    pub fn new(spaces: &[SearchSpace], config: TpeConfig) -> Self {
        TpeSearcher {
            defaults: DefaultsFirst::new(spaces),
            spaces: spaces.to_vec(),
            rng: rng(config.seed, 0x7e5),
            config,
            history: Vec::new(),
            pending: Vec::new(),
            issued: 0,
            best: None,
            since_improvement: 0,
        }
    }

    /// Try `params` of `family` first (a warm start from an earlier model).
    pub fn prepend(&mut self, family: &str, params: ParamPoint) {
        self.defaults.prepend(family, params);
    }

    /// Every observed trial so far.
    pub fn history(&self) -> &[TrialRecord] {
        &self.history
    }

    /// The scored trials of `family`.
    fn scored(&self, family: &str) -> Vec<(&ParamPoint, f64)> {
        self.history
            .iter()
            .filter(|r| r.trial.family == family)
            .filter_map(|r| r.outcome.score.map(|s| (&r.trial.params, s)))
            .collect()
    }

    fn failed_recently(&self, family: &str) -> bool {
        let recent: Vec<&TrialOutcome> = self
            .history
            .iter()
            .rev()
            .filter(|r| r.trial.family == family)
            .take(MAX_FAILURES)
            .map(|r| &r.outcome)
            .collect();
        recent.len() == MAX_FAILURES && recent.iter().all(|o| o.score.is_none())
    }

    /// Pick a family: better best scores and cheaper fits are more likely.
    fn choose_family(&mut self) -> Option<usize> {
        let scores: Vec<f64> = self
            .history
            .iter()
            .filter_map(|r| r.outcome.score)
            .collect();
        let best_all = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let spread = std_dev(&scores).max(1e-3);
        // Costs come from the families' declared hints, not measured seconds, so that the same
        // seed gives the same search on any machine (measured times only decide when the
        // budget ends it).
        let cheapest = self
            .spaces
            .iter()
            .map(|s| s.cost_hint)
            .fold(f64::INFINITY, f64::min)
            .max(1e-9);
        let weights: Vec<f64> = self
            .spaces
            .iter()
            .map(|space| {
                if space.params.is_empty() || self.failed_recently(&space.family) {
                    return 0.0;
                }
                let best = self
                    .scored(&space.family)
                    .iter()
                    .map(|(_, s)| *s)
                    .fold(f64::NEG_INFINITY, f64::max);
                let gap = if best.is_finite() && best_all.is_finite() {
                    (best_all - best) / spread
                } else {
                    1.0
                };
                (-gap).exp() / (space.cost_hint.max(1e-9) / cheapest).sqrt()
            })
            .collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            return None;
        }
        let mut draw = self.rng.random::<f64>() * total;
        for (i, w) in weights.iter().enumerate() {
            if draw < *w {
                return Some(i);
            }
            draw -= w;
        }
        weights.iter().rposition(|w| *w > 0.0)
    }

    /// A new point of `space`: random during start-up, else TPE.
    fn sample(&mut self, space_index: usize) -> ParamPoint {
        let space = self.spaces[space_index].clone();
        let mut scored: Vec<(ParamPoint, f64)> = self
            .scored(&space.family)
            .into_iter()
            .map(|(p, s)| (p.clone(), s))
            .collect();
        let random_phase =
            scored.len() < 2 || scored.len() < space.defaults.len() + self.config.startup;
        // Start from the default point so that parameters outside the ranges keep their value.
        let mut point = space.defaults.first().cloned().unwrap_or_default();
        if random_phase {
            for (name, range) in &space.params {
                let u = self.rng.random::<f64>();
                point.insert(name.clone(), from_unit(range, u));
            }
            return point;
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        let n_good =
            ((self.config.gamma * scored.len() as f64).ceil() as usize).clamp(1, scored.len() - 1);
        let (good, bad) = scored.split_at(n_good);
        for (name, range) in &space.params {
            let value = match range {
                ParamRange::Choice { options } => {
                    let counts = |set: &[(ParamPoint, f64)]| {
                        let mut c = vec![1.0; options.len()];
                        for (p, _) in set {
                            if let Some(i) = p
                                .get(name)
                                .and_then(ParamValue::as_str)
                                .and_then(|v| options.iter().position(|o| o == v))
                            {
                                c[i] += 1.0;
                            }
                        }
                        let total: f64 = c.iter().sum();
                        c.into_iter().map(|x| x / total).collect::<Vec<f64>>()
                    };
                    let (l, g) = (counts(good), counts(bad));
                    let best = (0..options.len())
                        .max_by(|&a, &b| (l[a] / g[a]).total_cmp(&(l[b] / g[b])))
                        .unwrap_or(0);
                    ParamValue::Text(options[best].clone())
                }
                _ => {
                    let units = |set: &[(ParamPoint, f64)]| -> Vec<f64> {
                        set.iter()
                            .filter_map(|(p, _)| p.get(name).and_then(|v| to_unit(range, v)))
                            .collect()
                    };
                    let l = Parzen::new(units(good));
                    let g = Parzen::new(units(bad));
                    let mut best_u = self.rng.random::<f64>();
                    let mut best_ratio = f64::NEG_INFINITY;
                    for _ in 0..self.config.candidates {
                        let u = l.draw(&mut self.rng);
                        let ratio = l.log_density(u) - g.log_density(u);
                        if ratio > best_ratio {
                            best_ratio = ratio;
                            best_u = u;
                        }
                    }
                    from_unit(range, best_u)
                }
            };
            point.insert(name.clone(), value);
        }
        point
    }
}

impl Searcher for TpeSearcher {
    fn suggest(&mut self) -> Option<Trial> {
        if self.issued >= self.config.max_trials {
            return None;
        }
        let (family, params) = match self.defaults.suggest() {
            Some(trial) => (trial.family, trial.params),
            None => {
                if self
                    .config
                    .patience
                    .is_some_and(|p| self.since_improvement >= p)
                {
                    return None;
                }
                let index = self.choose_family()?;
                let family = self.spaces[index].family.clone();
                // A repeated point teaches nothing: redraw a few times (a point proposed and
                // not observed yet counts as seen).
                let mut params = self.sample(index);
                for _ in 0..8 {
                    let seen = self
                        .history
                        .iter()
                        .map(|r| &r.trial)
                        .chain(&self.pending)
                        .any(|t| t.family == family && t.params == params);
                    if !seen {
                        break;
                    }
                    params = self.sample(index);
                }
                (family, params)
            }
        };
        let id = self.issued;
        self.issued += 1;
        let trial = Trial { id, family, params };
        self.pending.push(trial.clone());
        Some(trial)
    }

    fn observe(&mut self, record: TrialRecord) {
        self.pending.retain(|t| t.id != record.trial.id);
        match (record.outcome.score, self.best) {
            (Some(score), Some(best)) if score <= best + 1e-12 => self.since_improvement += 1,
            (Some(score), _) => {
                self.best = Some(score);
                self.since_improvement = 0;
            }
            (None, _) => self.since_improvement += 1,
        }
        self.history.push(record);
    }
}

/// A one-dimensional Parzen density on `[0, 1]` as in Hyperopt: a Gaussian kernel per
/// observation whose width is the larger gap to its neighbours (clipped so that few points
/// still explore), plus a wide prior kernel at the centre with the weight of one observation.
struct Parzen {
    centers: Vec<f64>,
    widths: Vec<f64>,
}

impl Parzen {
    fn new(observations: Vec<f64>) -> Self {
        let mut centers = observations;
        centers.push(0.5);
        centers.sort_by(f64::total_cmp);
        let n = centers.len();
        let min_width = 1.0 / (n as f64).min(100.0);
        let widths = (0..n)
            .map(|i| {
                if centers[i] == 0.5 && (i == 0 || centers[i - 1] != 0.5) {
                    // The prior (the first kernel at the centre) spans the whole range.
                    return 1.0;
                }
                let left = if i > 0 {
                    centers[i] - centers[i - 1]
                } else {
                    centers[i]
                };
                let right = if i + 1 < n {
                    centers[i + 1] - centers[i]
                } else {
                    1.0 - centers[i]
                };
                left.max(right).clamp(min_width, 1.0)
            })
            .collect();
        Parzen { centers, widths }
    }

    fn log_density(&self, u: f64) -> f64 {
        let norm = (2.0 * std::f64::consts::PI).sqrt();
        let total: f64 = self
            .centers
            .iter()
            .zip(&self.widths)
            .map(|(c, w)| (-0.5 * ((u - c) / w).powi(2)).exp() / (w * norm))
            .sum();
        (total / self.centers.len() as f64)
            .max(f64::MIN_POSITIVE)
            .ln()
    }

    fn draw(&self, rng: &mut Rng) -> f64 {
        let pick = rng.random_range(0..self.centers.len());
        // Redraw out-of-range values a few times (a truncated kernel), then clip.
        for _ in 0..8 {
            let u = self.centers[pick] + self.widths[pick] * standard_normal(rng);
            if (0.0..=1.0).contains(&u) {
                return u;
            }
        }
        self.centers[pick].clamp(0.0, 1.0)
    }
}

/// A standard normal draw (Box–Muller; rand's distributions live in another crate).
fn standard_normal(rng: &mut Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// The position of `value` in `range`, mapped to `[0, 1]` (log scale where declared).
fn to_unit(range: &ParamRange, value: &ParamValue) -> Option<f64> {
    let (low, high, log) = match range {
        ParamRange::Float { low, high, log } => (*low, *high, *log),
        ParamRange::Int { low, high, log } => (*low as f64, *high as f64, *log),
        ParamRange::Choice { .. } => return None,
    };
    let v = value.as_f64()?;
    let u = if log && low > 0.0 {
        (v.max(low).ln() - low.ln()) / (high.ln() - low.ln())
    } else {
        (v - low) / (high - low)
    };
    u.is_finite().then(|| u.clamp(0.0, 1.0))
}

/// The value of `range` at `u` in `[0, 1]`.
fn from_unit(range: &ParamRange, u: f64) -> ParamValue {
    let u = u.clamp(0.0, 1.0);
    let scale = |low: f64, high: f64, log: bool| {
        if log && low > 0.0 {
            (low.ln() + u * (high.ln() - low.ln())).exp()
        } else {
            low + u * (high - low)
        }
    };
    match range {
        ParamRange::Float { low, high, log } => {
            ParamValue::Float(scale(*low, *high, *log).clamp(*low, *high))
        }
        ParamRange::Int { low, high, log } => ParamValue::Int(
            (scale(*low as f64, *high as f64, *log).round() as i64).clamp(*low, *high),
        ),
        ParamRange::Choice { options } => {
            let i = ((u * options.len() as f64) as usize).min(options.len().saturating_sub(1));
            ParamValue::Text(options.get(i).cloned().unwrap_or_default())
        }
    }
}

/// Summary of where the search's trials went, for logs: trials per family.
pub fn trials_per_family(history: &[TrialRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in history {
        *out.entry(r.trial.family.clone()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> SearchSpace {
        let mut default = ParamPoint::new();
        default.insert("x".into(), ParamValue::Float(1.0));
        SearchSpace {
            family: "quad".into(),
            params: BTreeMap::from([
                (
                    "x".to_string(),
                    ParamRange::Float {
                        low: 1e-3,
                        high: 1e3,
                        log: true,
                    },
                ),
                (
                    "k".to_string(),
                    ParamRange::Int {
                        low: 1,
                        high: 64,
                        log: false,
                    },
                ),
            ]),
            defaults: vec![default],
            cost_hint: 1.0,
        }
    }

    /// Best at x = 30, k = 48; the default (x = 1) is far off.
    fn objective(p: &ParamPoint) -> f64 {
        let x = p["x"].as_f64().expect("x").log10();
        let k = p.get("k").and_then(ParamValue::as_i64).unwrap_or(1) as f64;
        -((x - 30f64.log10()).powi(2) + ((k - 48.0) / 32.0).powi(2))
    }

    fn run(searcher: &mut dyn Searcher, trials: usize) -> Vec<f64> {
        let mut scores = Vec::new();
        for _ in 0..trials {
            let Some(trial) = searcher.suggest() else {
                break;
            };
            let score = objective(&trial.params);
            scores.push(score);
            searcher.observe(TrialRecord {
                trial,
                outcome: TrialOutcome {
                    score: Some(score),
                    metric: "neg_distance".into(),
                    fit_secs: 0.01,
                    predict_secs: 0.0,
                    note: None,
                    ..Default::default()
                },
            });
        }
        scores
    }

    fn config(seed: u64) -> TpeConfig {
        TpeConfig {
            patience: None,
            seed,
            ..TpeConfig::default()
        }
    }

    #[test]
    fn tpe_beats_random_search_on_the_same_number_of_trials() {
        let (mut tpe_wins, runs) = (0, 10);
        for seed in 0..runs {
            let mut tpe = TpeSearcher::new(&[space()], config(seed));
            let tpe_best = run(&mut tpe, 40).into_iter().fold(f64::MIN, f64::max);
            let random = TpeConfig {
                startup: usize::MAX / 2,
                ..config(seed)
            };
            let mut random = TpeSearcher::new(&[space()], random);
            let random_best = run(&mut random, 40).into_iter().fold(f64::MIN, f64::max);
            if tpe_best > random_best {
                tpe_wins += 1;
            }
        }
        assert!(tpe_wins >= 7, "TPE won {tpe_wins} of {runs}");
    }

    #[test]
    fn trials_proposed_before_any_is_observed_differ_and_are_observed_in_any_order() {
        let mut searcher = TpeSearcher::new(&[space()], config(3));
        run(&mut searcher, 12);
        // A batch of four proposals made at once (trials fitted side by side).
        let batch: Vec<Trial> = (0..4)
            .map(|_| searcher.suggest().expect("a trial"))
            .collect();
        for (i, a) in batch.iter().enumerate() {
            for b in &batch[i + 1..] {
                assert_ne!(a.params, b.params, "{batch:#?}");
                assert_ne!(a.id, b.id);
            }
        }
        for trial in batch.into_iter().rev() {
            let score = objective(&trial.params);
            searcher.observe(TrialRecord {
                trial,
                outcome: TrialOutcome {
                    score: Some(score),
                    metric: "m".into(),
                    ..Default::default()
                },
            });
        }
        assert!(searcher.pending.is_empty());
        assert_eq!(searcher.history().len(), 16);
    }

    #[test]
    fn defaults_come_first_and_values_stay_in_range() {
        let mut searcher = TpeSearcher::new(&[space()], config(1));
        let first = searcher.suggest().expect("a trial");
        assert_eq!(first.params["x"], ParamValue::Float(1.0));
        searcher.observe(TrialRecord {
            trial: first,
            outcome: TrialOutcome {
                score: Some(0.0),
                metric: "m".into(),
                fit_secs: 0.1,
                predict_secs: 0.0,
                note: None,
                ..Default::default()
            },
        });
        run(&mut searcher, 30);
        for record in searcher.history() {
            let x = record.trial.params["x"].as_f64().expect("x");
            assert!((1e-3..=1e3).contains(&x), "{x}");
            if let Some(k) = record.trial.params.get("k") {
                assert!(matches!(k, ParamValue::Int(v) if (1..=64).contains(v)));
            }
        }
    }

    #[test]
    fn same_seed_same_suggestions_and_patience_ends_the_search() {
        let a = run(&mut TpeSearcher::new(&[space()], config(5)), 25);
        let b = run(&mut TpeSearcher::new(&[space()], config(5)), 25);
        assert_eq!(a, b);
        let patient = TpeConfig {
            patience: Some(5),
            ..config(5)
        };
        let mut searcher = TpeSearcher::new(&[space()], patient);
        // A constant objective never improves after the first trial.
        let mut n = 0;
        while let Some(trial) = searcher.suggest() {
            n += 1;
            searcher.observe(TrialRecord {
                trial,
                outcome: TrialOutcome {
                    score: Some(0.0),
                    metric: "m".into(),
                    fit_secs: 0.0,
                    predict_secs: 0.0,
                    note: None,
                    ..Default::default()
                },
            });
        }
        assert_eq!(n, 6, "one improving trial, then five without improvement");
    }

    #[test]
    fn a_family_that_keeps_failing_is_dropped() {
        let mut other = space();
        other.family = "broken".into();
        let mut searcher = TpeSearcher::new(&[space(), other], config(2));
        for _ in 0..40 {
            let Some(trial) = searcher.suggest() else {
                break;
            };
            let score = (trial.family == "quad").then(|| objective(&trial.params));
            searcher.observe(TrialRecord {
                trial,
                outcome: TrialOutcome {
                    score,
                    metric: "m".into(),
                    fit_secs: 0.01,
                    predict_secs: 0.0,
                    note: score.is_none().then(|| "failed".into()),
                    ..Default::default()
                },
            });
        }
        let per_family = trials_per_family(searcher.history());
        assert!(per_family["broken"] <= MAX_FAILURES + 1, "{per_family:?}");
    }
}
