//! Evaluation of an image classifier: SPEC metrics (per class, macro/weighted, confusion
//! matrix, log loss; per-label metrics for multi-label) and the bad cases by file.

use exeml_core::metrics::classification::ClassMetrics;
use exeml_core::metrics::ClassificationReport;
use exeml_core::{ProblemType, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most bad cases listed in a report.
pub const MAX_BAD_CASES: usize = 100;

/// The `k` of the report's top-k accuracy.
pub const TOP_K: usize = 5;

/// Metrics of several independent labels per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultilabelReport {
    /// Number of evaluated images.
    pub n: usize,
    /// Share of images whose predicted label set is exactly right (subset accuracy).
    pub accuracy: f64,
    /// Share of wrong (image, label) decisions.
    pub hamming_loss: f64,
    /// Mean binary log loss of the label probabilities over every (image, label) pair
    /// (probabilities clipped to `[ε, 1 − ε]` as for single-label log loss); absent in reports
    /// written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
    /// F1 over all (image, label) decisions.
    pub micro_f1: f64,
    /// Mean of the per-label F1.
    pub macro_f1: f64,
    /// Per-label F1 weighted by support.
    pub weighted_f1: f64,
    /// Precision, recall, F1 and support per label.
    pub per_class: BTreeMap<String, ClassMetrics>,
}

/// The metrics of one evaluation (flattened into the report's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageMetrics {
    /// One label per image.
    SingleLabel(ClassificationReport),
    /// Any number of labels per image.
    Multilabel(MultilabelReport),
}

/// An image the model got wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBadCase {
    /// The image's path relative to the data folder.
    pub id: String,
    /// Its true labels, joined by `;`.
    #[serde(rename = "true")]
    pub truth: String,
    /// The predicted labels, joined by `;`.
    pub predicted: String,
    /// Confidence of the (top) prediction.
    pub score: f64,
}

/// The result of `evaluate` for images: the JSON object of the CLI contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEvaluation {
    /// Always `image`.
    pub task: String,
    /// Multiclass/binary or multilabel.
    pub problem: ProblemType,
    /// The metrics.
    #[serde(flatten)]
    pub metrics: ImageMetrics,
    /// Share of images whose true class is among the [`TOP_K`] highest scores (single-label
    /// models of more than [`TOP_K`] classes; with fewer it is always 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top5_accuracy: Option<f64>,
    /// The wrong images, most confidently wrong first.
    pub bad_cases: Vec<ImageBadCase>,
    /// Images left out because they could not be read or decoded, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedImage>,
}

/// An image an evaluation left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedImage {
    /// The image (its path relative to the data folder).
    pub id: String,
    /// Why it was left out.
    pub reason: String,
}

impl ImageEvaluation {
    /// Number of evaluated images.
    pub fn n(&self) -> usize {
        match &self.metrics {
            ImageMetrics::SingleLabel(r) => r.n,
            ImageMetrics::Multilabel(r) => r.n,
        }
    }

    /// Accuracy (subset accuracy for multi-label).
    pub fn accuracy(&self) -> f64 {
        match &self.metrics {
            ImageMetrics::SingleLabel(r) => r.accuracy,
            ImageMetrics::Multilabel(r) => r.accuracy,
        }
    }

    /// Macro-averaged F1.
    pub fn macro_f1(&self) -> f64 {
        match &self.metrics {
            ImageMetrics::SingleLabel(r) => r.macro_f1,
            ImageMetrics::Multilabel(r) => r.macro_f1,
        }
    }
}

/// The label set a multi-label prediction stands for: every label at or above its threshold,
/// or the single best one when none is.
pub fn predicted_set(proba: &[f32], thresholds: &[f32]) -> Vec<usize> {
    let set: Vec<usize> = (0..proba.len())
        .filter(|&j| proba[j] >= thresholds.get(j).copied().unwrap_or(0.5))
        .collect();
    if set.is_empty() {
        vec![argmax(proba)]
    } else {
        set
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

fn join(classes: &[String], set: &[usize]) -> String {
    set.iter()
        .map(|&c| classes[c].as_str())
        .collect::<Vec<_>>()
        .join(";")
}

/// Evaluate class scores (`proba[i]` for image `ids[i]`) against the true label sets.
pub fn evaluate(
    classes: &[String],
    multilabel: bool,
    thresholds: &[f32],
    ids: &[String],
    truth: &[Vec<usize>],
    proba: &[Vec<f32>],
) -> Result<ImageEvaluation> {
    let predicted: Vec<Vec<usize>> = proba
        .iter()
        .map(|p| {
            if multilabel {
                predicted_set(p, thresholds)
            } else {
                vec![argmax(p)]
            }
        })
        .collect();
    let (problem, metrics) = if multilabel {
        (
            ProblemType::Multilabel,
            ImageMetrics::Multilabel(MultilabelReport {
                log_loss: Some(binary_log_loss(proba, truth, f64::EPSILON)),
                ..multilabel_report(classes, truth, &predicted)
            }),
        )
    } else {
        let y_true: Vec<usize> = truth
            .iter()
            .map(|t| t.first().copied().unwrap_or(0))
            .collect();
        let y_pred: Vec<usize> = predicted.iter().map(|p| p[0]).collect();
        let flat: Vec<f64> = proba.iter().flatten().map(|&v| f64::from(v)).collect();
        let report = ClassificationReport::compute(classes, &y_true, &y_pred, Some(&flat))?;
        let problem = if classes.len() == 2 {
            ProblemType::Binary
        } else {
            ProblemType::Multiclass
        };
        (problem, ImageMetrics::SingleLabel(report))
    };
    let mut bad: Vec<ImageBadCase> = (0..ids.len())
        .filter(|&i| {
            let mut t = truth[i].clone();
            t.sort_unstable();
            t != predicted[i]
        })
        .map(|i| ImageBadCase {
            id: ids[i].clone(),
            truth: join(classes, &truth[i]),
            predicted: join(classes, &predicted[i]),
            score: f64::from(proba[i][argmax(&proba[i])]),
        })
        .collect();
    bad.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    bad.truncate(MAX_BAD_CASES);
    let top5_accuracy =
        (!multilabel && classes.len() > TOP_K).then(|| top_k_accuracy(proba, truth, TOP_K));
    Ok(ImageEvaluation {
        task: "image".into(),
        problem,
        metrics,
        top5_accuracy,
        bad_cases: bad,
        skipped: Vec::new(),
    })
}

/// Share of rows whose (first) true class scores among the `k` highest; ties count in the
/// class's favour (fewer than `k` other classes score strictly higher). 0 without rows.
pub fn top_k_accuracy(proba: &[Vec<f32>], truth: &[Vec<usize>], k: usize) -> f64 {
    let hits = proba
        .iter()
        .zip(truth)
        .filter(|(p, t)| {
            t.first().is_some_and(|&c| {
                let own = p.get(c).copied().unwrap_or(f32::NEG_INFINITY);
                p.iter().filter(|&&v| v > own).count() < k
            })
        })
        .count();
    ratio(hits, proba.len())
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Mean binary log loss of independent label probabilities over every (row, label) pair,
/// each probability clipped to `[floor, 1 − floor]`; 0 without pairs.
pub fn binary_log_loss(proba: &[Vec<f32>], labels: &[Vec<usize>], floor: f64) -> f64 {
    let (mut total, mut pairs) = (0.0, 0usize);
    for (p, l) in proba.iter().zip(labels) {
        for (c, &q) in p.iter().enumerate() {
            let q = f64::from(q).clamp(floor, 1.0 - floor);
            total -= if l.contains(&c) {
                q.ln()
            } else {
                (1.0 - q).ln()
            };
            pairs += 1;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        total / pairs as f64
    }
}

/// Per-label precision/recall/F1, micro and macro F1, subset accuracy and Hamming loss (no log
/// loss: it needs the probabilities, see [`binary_log_loss`]).
pub fn multilabel_report(
    classes: &[String],
    truth: &[Vec<usize>],
    predicted: &[Vec<usize>],
) -> MultilabelReport {
    let k = classes.len();
    let n = truth.len();
    let (mut tp, mut fp, mut fn_) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    let mut exact = 0;
    for (t, p) in truth.iter().zip(predicted) {
        for c in 0..k {
            match (t.contains(&c), p.contains(&c)) {
                (true, true) => tp[c] += 1,
                (false, true) => fp[c] += 1,
                (true, false) => fn_[c] += 1,
                (false, false) => {}
            }
        }
        if (0..k).all(|c| t.contains(&c) == p.contains(&c)) {
            exact += 1;
        }
    }
    let per: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let precision = ratio(tp[c], tp[c] + fp[c]);
            let recall = ratio(tp[c], tp[c] + fn_[c]);
            ClassMetrics {
                precision,
                recall,
                f1: f1(precision, recall),
                support: tp[c] + fn_[c],
            }
        })
        .collect();
    let (stp, sfp, sfn) = (
        tp.iter().sum::<usize>(),
        fp.iter().sum::<usize>(),
        fn_.iter().sum::<usize>(),
    );
    let support: usize = per.iter().map(|m| m.support).sum();
    MultilabelReport {
        n,
        accuracy: ratio(exact, n),
        hamming_loss: ratio(sfp + sfn, n * k),
        micro_f1: f1(ratio(stp, stp + sfp), ratio(stp, stp + sfn)),
        macro_f1: per.iter().map(|m| m.f1).sum::<f64>() / k.max(1) as f64,
        weighted_f1: per.iter().map(|m| m.f1 * m.support as f64).sum::<f64>()
            / support.max(1) as f64,
        per_class: classes.iter().cloned().zip(per).collect(),
        log_loss: None,
    }
}

/// Per-label thresholds that maximise each label's F1 on validation scores (0.5 without data).
pub fn tune_thresholds(truth: &[Vec<usize>], proba: &[Vec<f32>], k: usize) -> Vec<f32> {
    (0..k)
        .map(|c| {
            let mut best = (f64::NEG_INFINITY, 0.5f32);
            for step in 1..20 {
                let th = step as f32 * 0.05;
                let (mut tp, mut fp, mut fn_) = (0, 0, 0);
                for (t, p) in truth.iter().zip(proba) {
                    match (t.contains(&c), p[c] >= th) {
                        (true, true) => tp += 1,
                        (false, true) => fp += 1,
                        (true, false) => fn_ += 1,
                        _ => {}
                    }
                }
                let score = f1(ratio(tp, tp + fp), ratio(tp, tp + fn_));
                // Prefer thresholds near 0.5 on ties: they generalise better.
                let score = score - 1e-6 * f64::from((th - 0.5).abs());
                if score > best.0 {
                    best = (score, th);
                }
            }
            best.1
        })
        .collect()
}

/// Validation accuracy (or macro F1 for multi-label, at threshold 0.5) and mean loss.
pub(crate) fn validation_score(
    head: &crate::head::LinearHead,
    x: &candle_core::Tensor,
    labels: &[Vec<usize>],
    multilabel: bool,
) -> Result<(f64, f64)> {
    let proba: Vec<Vec<f32>> = head.proba(x)?.to_vec2().map_err(crate::nn::candle_error)?;
    Ok(proba_score(&proba, labels, multilabel))
}

/// [`validation_score`] of class probabilities: accuracy (or macro F1 for multi-label, at
/// threshold 0.5) and mean log loss.
pub(crate) fn proba_score(
    proba: &[Vec<f32>],
    labels: &[Vec<usize>],
    multilabel: bool,
) -> (f64, f64) {
    let n = labels.len().max(1) as f64;
    if multilabel {
        let k = proba.first().map_or(0, Vec::len);
        let predicted: Vec<Vec<usize>> = proba
            .iter()
            .map(|p| predicted_set(p, &vec![0.5; k]))
            .collect();
        let names: Vec<String> = (0..k).map(|c| c.to_string()).collect();
        let report = multilabel_report(&names, labels, &predicted);
        // Summed over the labels of an image, averaged over images.
        let loss = binary_log_loss(proba, labels, 1e-7) * k as f64;
        (report.macro_f1, loss)
    } else {
        let mut correct = 0usize;
        let mut loss = 0f64;
        for (p, l) in proba.iter().zip(labels) {
            let truth = l.first().copied().unwrap_or(0);
            if argmax(p) == truth {
                correct += 1;
            }
            loss -= f64::from(p[truth]).clamp(1e-7, 1.0).ln();
        }
        (correct as f64 / n, loss / n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn single_label_report_lists_wrong_images_most_confident_first() {
        let classes = names(&["cat", "dog"]);
        let ids = names(&["a.jpg", "b.jpg", "c.jpg"]);
        let truth = vec![vec![0], vec![1], vec![1]];
        let proba = vec![vec![0.9, 0.1], vec![0.6, 0.4], vec![0.8, 0.2]];
        let e = evaluate(&classes, false, &[], &ids, &truth, &proba).expect("eval");
        assert_eq!(e.problem, ProblemType::Binary);
        assert!((e.accuracy() - 1.0 / 3.0).abs() < 1e-12);
        let bad: Vec<&str> = e.bad_cases.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(bad, ["c.jpg", "b.jpg"]);
        let json = serde_json::to_value(&e).expect("json");
        assert!(json["confusion_matrix"]["matrix"].is_array());
        assert_eq!(json["bad_cases"][0]["true"], "dog");
        // Two classes: every true class is in the top five, so no top-5 accuracy is reported.
        assert!(json.get("top5_accuracy").is_none());
    }

    #[test]
    fn top_five_accuracy_counts_the_true_class_among_the_five_best_scores() {
        let classes = names(&["a", "b", "c", "d", "e", "f", "g"]);
        // Image 0: its class scores 2nd; image 1: 6th (five score higher); image 2: tied with
        // five others at the top (counts); image 3: last.
        let proba = vec![
            vec![0.3f32, 0.4, 0.1, 0.1, 0.05, 0.03, 0.02],
            vec![0.2, 0.2, 0.2, 0.15, 0.15, 0.05, 0.05],
            vec![0.16, 0.16, 0.16, 0.16, 0.16, 0.16, 0.04],
            vec![0.5, 0.2, 0.1, 0.1, 0.05, 0.04, 0.01],
        ];
        let truth = vec![vec![0], vec![5], vec![5], vec![6]];
        assert!((top_k_accuracy(&proba, &truth, 5) - 0.5).abs() < 1e-12);
        assert!((top_k_accuracy(&proba, &truth, 1) - 0.25).abs() < 1e-12);
        assert!((top_k_accuracy(&proba, &truth, 7) - 1.0).abs() < 1e-12);
        let ids = names(&["0", "1", "2", "3"]);
        let e = evaluate(&classes, false, &[], &ids, &truth, &proba).expect("eval");
        assert_eq!(e.top5_accuracy, Some(0.5));
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["top5_accuracy"], 0.5);
    }

    #[test]
    fn multilabel_report_counts_exact_sets_and_hamming_loss() {
        let classes = names(&["sky", "sea", "sand"]);
        let truth = vec![vec![0, 1], vec![2], vec![0]];
        let predicted = vec![vec![0, 1], vec![1, 2], vec![1]];
        let r = multilabel_report(&classes, &truth, &predicted);
        assert!((r.accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.hamming_loss - 3.0 / 9.0).abs() < 1e-12);
        assert_eq!(r.per_class["sea"].precision, 1.0 / 3.0);
        assert_eq!(r.per_class["sky"].recall, 0.5);
    }

    #[test]
    fn multilabel_evaluation_reports_the_mean_binary_log_loss() {
        let classes = names(&["sky", "sea"]);
        let truth = vec![vec![0, 1], vec![1]];
        let proba = vec![vec![0.8f32, 0.5], vec![0.25, 1.0]];
        let ids = names(&["a.png", "b.png"]);
        let e = evaluate(&classes, true, &[0.5, 0.5], &ids, &truth, &proba).expect("evaluate");
        let ImageMetrics::Multilabel(r) = e.metrics else {
            panic!("not multi-label")
        };
        // -(ln 0.8 + ln 0.5 + ln 0.75 + ln 1) / 4, the certain right answer costing nothing.
        let want = -(0.8f64.ln() + 0.5f64.ln() + 0.75f64.ln()) / 4.0;
        let got = r.log_loss.expect("log loss");
        assert!((got - want).abs() < 1e-7, "{got} against {want}");
        // A certain wrong answer is clipped to -ln ε, not infinite; no rows, no loss.
        let wrong = binary_log_loss(&[vec![0.0]], &[vec![0]], f64::EPSILON);
        assert!((wrong + f64::EPSILON.ln()).abs() < 1e-9, "{wrong}");
        assert_eq!(binary_log_loss(&[], &[], f64::EPSILON), 0.0);
    }

    #[test]
    fn predicted_set_falls_back_to_the_best_label() {
        assert_eq!(predicted_set(&[0.2, 0.4, 0.1], &[0.5, 0.5, 0.5]), vec![1]);
        assert_eq!(
            predicted_set(&[0.7, 0.4, 0.9], &[0.5, 0.5, 0.5]),
            vec![0, 2]
        );
    }

    #[test]
    fn thresholds_move_to_where_the_labels_separate() {
        let truth = vec![vec![0], vec![], vec![0], vec![]];
        let proba = vec![vec![0.3], vec![0.1], vec![0.35], vec![0.2]];
        let th = tune_thresholds(&truth, &proba, 1);
        assert!(th[0] > 0.2 && th[0] <= 0.3, "{th:?}");
    }
}
