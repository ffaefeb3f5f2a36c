//! The data checks of SPEC §3 for image classification: errors refuse training, warnings train.

use super::import::ImageDataset;
use exeml_core::checks::{at, CheckReport};
use std::collections::BTreeMap;

/// Fewest images per class to train.
pub const MIN_PER_CLASS: usize = 5;
/// Below this many images per class, a warning.
pub const WARN_PER_CLASS: usize = 20;
/// Below this many labelled images in total, a warning.
pub const WARN_TOTAL: usize = 100;
/// Skipped files listed one by one before a summary.
const LISTED_SKIPS: usize = 20;

/// Check `data`: at least 2 classes and 5 images per class; warnings for small classes, a small
/// total, skipped and unlabelled files.
pub fn check(data: &ImageDataset) -> CheckReport {
    let mut report = CheckReport::new();
    let root = data.root.display().to_string();
    let mut counts: BTreeMap<&str, usize> = data.classes.iter().map(|c| (c.as_str(), 0)).collect();
    for s in &data.samples {
        for l in &s.labels {
            *counts.entry(l.as_str()).or_default() += 1;
        }
    }
    if data.samples.is_empty() {
        report.error(
            "no_labelled_images",
            "no labelled JPG, PNG or BMP image found",
            at().file(root.clone()),
        );
    } else if counts.len() < 2 {
        report.error(
            "too_few_classes",
            format!("found {} class(es); at least 2 are needed", counts.len()),
            at().file(root.clone()),
        );
    }
    for (class, &n) in &counts {
        if n < MIN_PER_CLASS {
            report.error(
                "class_too_small",
                format!("{n} images; at least {MIN_PER_CLASS} per class are needed (fewer than 5)"),
                at().label(*class),
            );
        } else if n < WARN_PER_CLASS {
            report.warn(
                "class_small",
                format!("{n} images; {WARN_PER_CLASS} or more per class give better models"),
                at().label(*class),
            );
        }
    }
    if !data.samples.is_empty() && data.samples.len() < WARN_TOTAL {
        report.warn(
            "few_images",
            format!(
                "{} labelled images; {WARN_TOTAL} or more give better models",
                data.samples.len()
            ),
            at().file(root.clone()),
        );
    }
    for s in data.skipped.iter().take(LISTED_SKIPS) {
        report.warn(
            "skipped_file",
            format!("left out: {}", s.reason),
            at().file(s.path.display().to_string()),
        );
    }
    if data.skipped.len() > LISTED_SKIPS {
        report.warn(
            "skipped_files",
            format!("{} more files left out", data.skipped.len() - LISTED_SKIPS),
            at().file(root.clone()),
        );
    }
    if !data.unlabelled.is_empty() {
        report.warn(
            "unlabelled_images",
            format!(
                "{} images have no label and are not used",
                data.unlabelled.len()
            ),
            at().file(root.clone()),
        );
    }
    if data.multilabel {
        report.info(
            "multilabel",
            "some images carry several labels: a multi-label model is trained",
            at().file(root.clone()),
        );
    }
    let summary: Vec<String> = counts.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    report.info("class_counts", summary.join(", "), at().file(root));
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageSample;
    use exeml_core::checks::Severity;
    use std::path::PathBuf;

    fn data(counts: &[(&str, usize)]) -> ImageDataset {
        let mut samples = Vec::new();
        for (class, n) in counts {
            for i in 0..*n {
                samples.push(ImageSample {
                    path: PathBuf::from(format!("{class}/{i}.png")),
                    id: format!("{class}/{i}.png"),
                    labels: vec![class.to_string()],
                    usage: None,
                });
            }
        }
        ImageDataset {
            root: PathBuf::from("data"),
            classes: counts.iter().map(|(c, _)| c.to_string()).collect(),
            multilabel: false,
            samples,
            skipped: Vec::new(),
            unlabelled: Vec::new(),
        }
    }

    fn codes(r: &CheckReport, s: Severity) -> Vec<String> {
        r.of(s).map(|f| f.code.clone()).collect()
    }

    #[test]
    fn one_class_is_refused() {
        let r = check(&data(&[("cat", 30)]));
        assert_eq!(codes(&r, Severity::Error), ["too_few_classes"]);
    }

    #[test]
    fn a_class_under_five_is_refused_and_under_twenty_warned() {
        let r = check(&data(&[("cat", 4), ("dog", 12), ("owl", 120)]));
        assert_eq!(codes(&r, Severity::Error), ["class_too_small"]);
        assert_eq!(codes(&r, Severity::Warning), ["class_small"]);
    }

    #[test]
    fn a_small_total_is_a_warning_only() {
        let r = check(&data(&[("cat", 25), ("dog", 25)]));
        assert!(!r.has_errors());
        assert_eq!(codes(&r, Severity::Warning), ["few_images"]);
        assert!(check(&data(&[])).has_errors());
    }
}
