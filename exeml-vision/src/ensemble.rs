//! Greedy ensemble selection (Caruana et al., 2004) over the validation probabilities of
//! fine-tuned models: start from the best single model, then repeatedly add — with replacement —
//! the model whose addition lowers the validation log loss of the averaged probabilities most,
//! while one does. A model's weight is how often it was picked. Log loss rather than accuracy
//! drives the picks because a few hundred validation images make accuracy too coarse a signal.

use crate::evaluate::proba_score;

/// The models picked and what their average scores on the validation rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// How often each candidate was picked; 0 = left out.
    pub counts: Vec<u32>,
    /// Validation accuracy (macro F1 for multi-label) of the weighted average.
    pub score: f64,
    /// Its validation log loss.
    pub loss: f64,
}

impl Selection {
    /// Candidates picked at least once.
    pub fn members(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0).count()
    }

    /// Each candidate's weight (its share of the picks).
    pub fn weights(&self) -> Vec<f64> {
        let total = f64::from(self.counts.iter().sum::<u32>().max(1));
        self.counts.iter().map(|&c| f64::from(c) / total).collect()
    }
}

/// Select from `probas` (one `rows × classes` matrix per candidate, rows in the order of
/// `truth`): at most `rounds` picks and `max_members` distinct candidates. With no candidate,
/// every count is zero.
pub fn select(
    probas: &[Vec<Vec<f32>>],
    truth: &[Vec<usize>],
    multilabel: bool,
    rounds: usize,
    max_members: usize,
) -> Selection {
    let single: Vec<(f64, f64)> = probas
        .iter()
        .map(|p| proba_score(p, truth, multilabel))
        .collect();
    let mut counts = vec![0u32; probas.len()];
    let Some(first) = (0..probas.len()).max_by(|&a, &b| {
        let (sa, la) = single[a];
        let (sb, lb) = single[b];
        sa.total_cmp(&sb).then(lb.total_cmp(&la))
    }) else {
        return Selection {
            counts,
            score: 0.0,
            loss: f64::INFINITY,
        };
    };
    counts[first] = 1;
    let mut sum: Vec<Vec<f32>> = probas[first].clone();
    let (mut score, mut loss) = single[first];
    for picks in 1..rounds.max(1) {
        let members = counts.iter().filter(|&&c| c > 0).count();
        let mut best: Option<(usize, f64, f64)> = None;
        for (c, proba) in probas.iter().enumerate() {
            if counts[c] == 0 && members >= max_members {
                continue;
            }
            let averaged = average(&sum, proba, picks);
            let (s, l) = proba_score(&averaged, truth, multilabel);
            if best.is_none_or(|(_, _, bl)| l < bl) {
                best = Some((c, s, l));
            }
        }
        match best {
            Some((c, s, l)) if l < loss - 1e-9 => {
                counts[c] += 1;
                for (row, add) in sum.iter_mut().zip(&probas[c]) {
                    for (v, a) in row.iter_mut().zip(add) {
                        *v += a;
                    }
                }
                (score, loss) = (s, l);
            }
            _ => break,
        }
    }
    Selection {
        counts,
        score,
        loss,
    }
}

/// `(sum + add) / (picks + 1)`, row by row: the average after one more pick.
fn average(sum: &[Vec<f32>], add: &[Vec<f32>], picks: usize) -> Vec<Vec<f32>> {
    let scale = 1.0 / (picks + 1) as f32;
    sum.iter()
        .zip(add)
        .map(|(s, a)| s.iter().zip(a).map(|(x, y)| (x + y) * scale).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two-class probabilities from the probability of class 1.
    fn rows(p1: &[f32]) -> Vec<Vec<f32>> {
        p1.iter().map(|&p| vec![1.0 - p, p]).collect()
    }

    #[test]
    fn complementary_models_are_averaged_and_a_useless_one_is_left_out() {
        let truth: Vec<Vec<usize>> = [1, 1, 0, 0].iter().map(|&c| vec![c]).collect();
        // A is right on the first pair only, B on the second pair only, both confidently;
        // C is a coin flip on every row.
        let a = rows(&[0.9, 0.9, 0.6, 0.6]);
        let b = rows(&[0.4, 0.4, 0.1, 0.1]);
        let c = rows(&[0.5, 0.5, 0.5, 0.5]);
        let s = select(&[a, b, c], &truth, false, 10, 3);
        assert_eq!(s.counts[2], 0, "{s:?}");
        assert_eq!(s.members(), 2, "{s:?}");
        assert_eq!(s.score, 1.0, "the average is right on every row: {s:?}");
        let single = proba_score(&rows(&[0.9, 0.9, 0.6, 0.6]), &truth, false);
        assert!(s.loss < single.1, "{s:?} against {single:?}");
        let w = s.weights();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_model_that_adds_nothing_leaves_the_best_single_model_alone() {
        let truth: Vec<Vec<usize>> = [1, 0, 1].iter().map(|&c| vec![c]).collect();
        let good = rows(&[0.8, 0.2, 0.8]);
        let worse = rows(&[0.3, 0.7, 0.3]);
        let s = select(&[worse, good], &truth, false, 10, 3);
        assert_eq!(s.counts, [0, 1]);
        assert_eq!(s.members(), 1);
        assert_eq!(s.score, 1.0);
    }

    #[test]
    fn the_member_limit_and_no_candidates_are_honoured() {
        let truth: Vec<Vec<usize>> = [1, 1, 0, 0].iter().map(|&c| vec![c]).collect();
        let a = rows(&[0.9, 0.9, 0.6, 0.6]);
        let b = rows(&[0.4, 0.4, 0.1, 0.1]);
        assert_eq!(select(&[a, b], &truth, false, 10, 1).members(), 1);
        let none = select(&[], &truth, false, 10, 3);
        assert!(none.counts.is_empty() && none.loss.is_infinite());
    }
}
