//! Human-readable text of evaluations and leaderboards for the terminal.

use exeml_core::metrics::ClassificationReport;
use exeml_core::search::TrialRecord;
use exeml_tabular::evaluate::{Evaluation, Metrics};
use exeml_vision::evaluate::{ImageEvaluation, ImageMetrics};
use exeml_vision::search::ImageTrial;
use std::fmt::Write;

/// An evaluation as an aligned text report: metrics, per-class table, confusion matrix, bad cases.
pub fn evaluation_text(evaluation: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "task: {} ({})", evaluation.task, evaluation.problem);
    match &evaluation.metrics {
        Metrics::Regression(r) => {
            let _ = writeln!(out, "n: {}", r.n);
            let _ = writeln!(
                out,
                "rmse: {:.4}\nmae: {:.4}\nmse: {:.4}\nr2: {:.4}",
                r.rmse, r.mae, r.mse, r.r2
            );
        }
        Metrics::Classification(r) => classification_text(&mut out, r),
    }
    if !evaluation.bad_cases.is_empty() {
        let _ = writeln!(
            out,
            "\nbad cases (first 10 of {}):",
            evaluation.bad_cases.len()
        );
        for case in evaluation.bad_cases.iter().take(10) {
            let _ = writeln!(
                out,
                "  row {:>6}: true {}  predicted {}  ({:.3})",
                case.id, case.truth, case.predicted, case.score
            );
        }
    }
    out
}

/// Metrics, per-class table and confusion matrix of a single-label classification.
fn classification_text(out: &mut String, r: &ClassificationReport) {
    let _ = writeln!(out, "n: {}", r.n);
    let _ = writeln!(out, "accuracy: {:.4}", r.accuracy);
    let _ = writeln!(
        out,
        "macro F1: {:.4}   weighted F1: {:.4}",
        r.macro_f1, r.weighted_f1
    );
    if let Some(auc) = r.roc_auc {
        let _ = writeln!(out, "ROC AUC: {auc:.4}");
    }
    if let Some(ll) = r.log_loss {
        let _ = writeln!(out, "log loss: {ll:.4}");
    }
    let width = r
        .per_class
        .keys()
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "\n{:<width$}  precision  recall  f1      support",
        "class"
    );
    for (class, m) in &r.per_class {
        let _ = writeln!(
            out,
            "{class:<width$}  {:<9.4}  {:<6.4}  {:<6.4}  {}",
            m.precision, m.recall, m.f1, m.support
        );
    }
    let cm = &r.confusion_matrix;
    let _ = writeln!(out, "\nconfusion matrix (rows: true, columns: predicted)");
    let _ = write!(out, "{:<width$}", "");
    for l in &cm.labels {
        let _ = write!(out, "  {l:>8}");
    }
    let _ = writeln!(out);
    for (l, row) in cm.labels.iter().zip(&cm.matrix) {
        let _ = write!(out, "{l:<width$}");
        for v in row {
            let _ = write!(out, "  {v:>8}");
        }
        let _ = writeln!(out);
    }
}

/// An image evaluation as text: metrics, per-class table, confusion matrix (single-label), bad
/// cases by file.
pub fn image_evaluation_text(evaluation: &ImageEvaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "task: {} ({})", evaluation.task, evaluation.problem);
    match &evaluation.metrics {
        ImageMetrics::SingleLabel(r) => {
            classification_text(&mut out, r);
            if let Some(top5) = evaluation.top5_accuracy {
                let _ = writeln!(out, "top-5 accuracy: {top5:.4}");
            }
        }
        ImageMetrics::Multilabel(r) => {
            let _ = writeln!(out, "n: {}", r.n);
            let _ = writeln!(out, "exact-set accuracy: {:.4}", r.accuracy);
            let _ = writeln!(out, "hamming loss: {:.4}", r.hamming_loss);
            if let Some(log_loss) = r.log_loss {
                let _ = writeln!(out, "log loss (per label): {log_loss:.4}");
            }
            let _ = writeln!(
                out,
                "micro F1: {:.4}   macro F1: {:.4}   weighted F1: {:.4}",
                r.micro_f1, r.macro_f1, r.weighted_f1
            );
            let _ = writeln!(out, "\nlabel  precision  recall  f1      support");
            for (label, m) in &r.per_class {
                let _ = writeln!(
                    out,
                    "{label}  {:<9.4}  {:<6.4}  {:<6.4}  {}",
                    m.precision, m.recall, m.f1, m.support
                );
            }
        }
    }
    if !evaluation.bad_cases.is_empty() {
        let _ = writeln!(
            out,
            "\nbad cases (first 10 of {}):",
            evaluation.bad_cases.len()
        );
        for case in evaluation.bad_cases.iter().take(10) {
            let _ = writeln!(
                out,
                "  {}: true {}  predicted {}  ({:.3})",
                case.id, case.truth, case.predicted, case.score
            );
        }
    }
    if !evaluation.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\nleft out ({} unreadable image(s)):",
            evaluation.skipped.len()
        );
        for skipped in &evaluation.skipped {
            let _ = writeln!(out, "  {}: {}", skipped.id, skipped.reason);
        }
    }
    if !evaluation.skipped.is_empty() {
        let _ = writeln!(
            out,
            "\nleft out ({} unreadable image(s)):",
            evaluation.skipped.len()
        );
        for skipped in &evaluation.skipped {
            let _ = writeln!(out, "  {}: {}", skipped.id, skipped.reason);
        }
    }
    out
}

/// The leaderboard as a text table, best first.
pub fn leaderboard_text(rows: &[TrialRecord]) -> String {
    let mut out = String::from("rank  family   score       fit s    predict s  params\n");
    for (rank, r) in rows.iter().enumerate() {
        let score = r
            .outcome
            .score
            .map_or_else(|| "failed".to_string(), |s| format!("{s:.5}"));
        let params = serde_json::to_string(&r.trial.params).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<4}  {:<7}  {:<10}  {:<7.2}  {:<9.3}  {params}",
            rank + 1,
            r.trial.family,
            score,
            r.outcome.fit_secs,
            r.outcome.predict_secs
        );
    }
    out
}

/// An image model's leaderboard (every configuration tried, in the order tried) as a text
/// table: backbone, input size, augmented views, fine-tuning, validation score and loss,
/// latency, size and status.
pub fn image_leaderboard_text(rows: &[ImageTrial]) -> String {
    let mut out = String::from(
        "row  backbone            px   views  fine-tuning                      score    loss     ms      MB     status\n",
    );
    let number = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
    };
    for (i, r) in rows.iter().enumerate() {
        let tuning = match (&r.fine_tune, r.epochs) {
            _ if !r.members.is_empty() => format!(
                "ensemble of rows {}",
                r.members
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Some(p), epochs) => format!(
                "{}, {}/{} ep",
                p.short_description(),
                epochs.unwrap_or(0),
                p.max_epochs
            ),
            (None, _) => format!("linear probe (L2 {:.0e})", r.head.weight_decay),
        };
        let _ = writeln!(
            out,
            "{:<4} {:<19} {:<4} {:<6} {:<32} {:<8} {:<8} {:<7} {:<6} {}",
            i,
            r.candidate.backbone.to_string(),
            r.candidate.resolution,
            r.candidate.augmented_views,
            tuning,
            number(r.score, 4),
            number(r.loss, 4),
            number(r.latency_ms, 1),
            number(r.size_mb, 1),
            r.status
        );
    }
    out
}
