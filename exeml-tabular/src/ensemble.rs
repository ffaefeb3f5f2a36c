//! Greedy ensemble selection (Caruana et al., "Ensemble selection from libraries of models",
//! ICML 2004), the method AutoGluon's and auto-sklearn's final ensembles use: start from the
//! best model and repeatedly add (with replacement) the one whose addition most lowers the
//! validation loss of the averaged predictions. A model picked k times gets weight k / rounds.
//! The start is the first candidate, the best by the search's own metric (the paper's sorted
//! initialisation); the loss is log loss or squared error, smooth where accuracy is flat.
//!
//! Written here because it is thirty lines over prediction vectors the search already holds;
//! no crate offers it on plain slices.

use crate::family::Problem;
use exeml_core::ProblemType;

/// How large an ensemble may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnsembleLimits {
    /// Selection rounds (the weights are multiples of 1 / rounds).
    pub rounds: usize,
    /// Most distinct models in the ensemble (each one costs prediction time).
    pub max_members: usize,
}

/// The chosen weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// `(candidate index, weight)`, weights summing to one, heaviest first.
    pub weights: Vec<(usize, f64)>,
    /// The validation loss of the weighted average (log loss, or mean squared error).
    pub loss: f64,
}

/// Select weights over `candidates` (each the row-major validation predictions of one model:
/// probabilities `rows × classes`, or values; the best by the search's metric first) for the
/// targets `y` (class index or value). Returns `None` without usable candidates.
pub fn select(
    problem: Problem,
    y: &[f64],
    candidates: &[&[f64]],
    limits: EnsembleLimits,
) -> Option<Selection> {
    let width = problem.output_width();
    let len = y.len() * width;
    let usable: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].len() == len)
        .collect();
    if usable.is_empty() || limits.rounds == 0 || limits.max_members == 0 {
        return None;
    }
    let mut counts = vec![0usize; candidates.len()];
    let mut sum = vec![0.0; len];
    let mut blended = vec![0.0; len];
    let mut best: Option<(f64, Vec<usize>)> = None;
    for round in 1..=limits.rounds {
        let distinct = counts.iter().filter(|&&c| c > 0).count();
        let mut pick: Option<(usize, f64)> = None;
        let choices: &[usize] = if round == 1 { &usable[..1] } else { &usable };
        for &i in choices {
            if counts[i] == 0 && distinct >= limits.max_members {
                continue;
            }
            for (b, (s, c)) in blended.iter_mut().zip(sum.iter().zip(candidates[i])) {
                *b = (s + c) / round as f64;
            }
            let loss = loss(problem, y, &blended);
            // Strictly lower only: ties keep the earlier (better-ranked) candidate.
            if pick.is_none_or(|(_, l)| loss < l) {
                pick = Some((i, loss));
            }
        }
        let (i, loss) = pick?;
        counts[i] += 1;
        for (s, c) in sum.iter_mut().zip(candidates[i]) {
            *s += c;
        }
        // The returned ensemble is the best of every round's, as in the paper: later rounds
        // may only add noise.
        if best.as_ref().is_none_or(|(l, _)| loss < *l) {
            best = Some((loss, counts.clone()));
        }
    }
    let (best_loss, counts) = best?;
    let total: usize = counts.iter().sum();
    let mut weights: Vec<(usize, f64)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(i, &c)| (i, c as f64 / total as f64))
        .collect();
    weights.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Some(Selection {
        weights,
        loss: best_loss,
    })
}

/// The weighted average of `candidates` under `weights` (probabilities kept inside [0, 1]).
pub fn blend(problem: Problem, candidates: &[&[f64]], weights: &[(usize, f64)]) -> Vec<f64> {
    let len = weights
        .first()
        .map_or(0, |&(i, _)| candidates.get(i).map_or(0, |c| c.len()));
    let mut out = vec![0.0; len];
    for &(i, w) in weights {
        for (o, v) in out.iter_mut().zip(candidates[i]) {
            *o += w * v;
        }
    }
    crate::family::clamp_probabilities(problem, &mut out);
    out
}

/// Log loss for classification (probabilities clamped to [1e-15, 1]), mean squared error for
/// regression.
pub fn loss(problem: Problem, y: &[f64], predictions: &[f64]) -> f64 {
    let n = y.len().max(1) as f64;
    if problem.kind == ProblemType::Regression {
        return y
            .iter()
            .zip(predictions)
            .map(|(t, p)| (t - p) * (t - p))
            .sum::<f64>()
            / n;
    }
    let k = problem.n_classes;
    y.iter()
        .enumerate()
        .map(|(r, &t)| {
            -predictions
                .get(r * k + t as usize)
                .copied()
                .unwrap_or(0.0)
                .clamp(1e-15, 1.0)
                .ln()
        })
        .sum::<f64>()
        / n
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINARY: Problem = Problem {
        kind: ProblemType::Binary,
        n_classes: 2,
    };
    const REGRESSION: Problem = Problem {
        kind: ProblemType::Regression,
        n_classes: 1,
    };
    const LIMITS: EnsembleLimits = EnsembleLimits {
        rounds: 20,
        max_members: 5,
    };

    #[test]
    fn averaging_two_models_with_opposite_errors_beats_either() {
        let y = [1.0, 2.0, 3.0, 4.0];
        let high = [2.0, 3.0, 4.0, 5.0];
        let low = [0.0, 1.0, 2.0, 3.0];
        let selection = select(REGRESSION, &y, &[&high, &low], LIMITS).expect("selected");
        assert_eq!(selection.weights.len(), 2);
        for &(_, w) in &selection.weights {
            assert!((w - 0.5).abs() < 1e-9, "{:?}", selection.weights);
        }
        assert!(selection.loss < 1e-12);
        let blended = blend(REGRESSION, &[&high, &low], &selection.weights);
        assert_eq!(blended, y.to_vec());
    }

    #[test]
    fn a_useless_model_gets_no_weight() {
        let y = [0.0, 1.0, 1.0, 0.0];
        let good = [0.9, 0.1, 0.2, 0.8, 0.1, 0.9, 0.7, 0.3];
        let coin = [0.5; 8];
        let selection = select(BINARY, &y, &[&good, &coin], LIMITS).expect("selected");
        assert_eq!(selection.weights, vec![(0, 1.0)]);
        assert!((selection.loss - loss(BINARY, &y, &good)).abs() < 1e-12);
    }

    #[test]
    fn the_first_candidate_starts_the_ensemble_even_with_a_worse_loss() {
        let y = [1.0, 2.0, 3.0, 4.0];
        let off = [2.0, 3.0, 4.0, 5.0];
        let exact = [1.0, 2.0, 3.0, 4.0];
        let selection = select(REGRESSION, &y, &[&off, &exact], LIMITS).expect("selected");
        // Round 1 takes `off`; later rounds add `exact` until its weight dominates.
        assert!(selection.weights.iter().any(|&(i, _)| i == 0));
        assert_eq!(selection.weights[0].0, 1, "{:?}", selection.weights);
    }

    #[test]
    fn the_member_limit_is_respected() {
        let y = [0.0, 0.0, 0.0];
        let candidates: Vec<Vec<f64>> = [3.0, -2.9, 1.0, -1.1, 0.5]
            .iter()
            .map(|&v| vec![v; 3])
            .collect();
        let refs: Vec<&[f64]> = candidates.iter().map(Vec::as_slice).collect();
        let limits = EnsembleLimits {
            rounds: 30,
            max_members: 2,
        };
        let selection = select(REGRESSION, &y, &refs, limits).expect("selected");
        assert!(selection.weights.len() <= 2, "{:?}", selection.weights);
        let sum: f64 = selection.weights.iter().map(|w| w.1).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn predictions_of_the_wrong_length_are_ignored() {
        let y = [1.0, 2.0];
        let short = [1.0];
        let right = [1.0, 2.5];
        let selection = select(REGRESSION, &y, &[&short, &right], LIMITS).expect("selected");
        assert_eq!(selection.weights, vec![(1, 1.0)]);
        assert!(select(REGRESSION, &y, &[&short], LIMITS).is_none());
    }

    #[test]
    fn log_loss_matches_a_hand_computed_value() {
        let y = [1.0, 0.0];
        let p = [0.2, 0.8, 0.6, 0.4];
        let expected = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        assert!((loss(BINARY, &y, &p) - expected).abs() < 1e-12);
    }
}
