//! The steps of an image project: import folders of images (any SPEC layout) as samples, check
//! the labelled images, publish a version that references them, train an [`ImagePredictor`] on
//! a version.

use super::{json_value, Project};
use exeml_core::checks::CheckReport;
use exeml_core::split::stratified_split;
use exeml_core::store::{
    DatasetVersion, ModelVersion, NewModelVersion, NewSample, ProjectStatus, PublishRequest,
    Sample, SampleFilter, WorkflowStep,
};
use exeml_core::{Budget, Error, Progress, Result, SplitSpec, TaskKind};
use exeml_vision::data::{check, probe_file, ImageSample};
use exeml_vision::{ImageDataset, ImageModel, ImagePredictor, ImportFormat};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What [`Project::import_images`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageImport {
    /// Images added as new samples.
    pub imported: usize,
    /// Of those, the ones that came with labels.
    pub labelled: usize,
    /// Of those, the ones without a label (to label in the project).
    pub unlabelled: usize,
    /// Images left out because the same file is already a sample of the project.
    pub already_present: usize,
    /// Images stored under another name because a different file already has theirs:
    /// `(name in the folder, name in the project)`.
    pub renamed: Vec<(String, String)>,
    /// Files left out, with the reason (damaged, unsupported format, bad label file…).
    pub skipped: Vec<SkippedFile>,
}

/// A file an import left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Where a new image goes in the project's data folder: its name in the imported folder, or —
/// when a different file already has that name — the name with `-2`, `-3`… before the
/// extension. `None` when the same file is already a sample under that name.
fn free_name(
    id: &str,
    file: &Path,
    data_dir: &Path,
    taken: &BTreeSet<String>,
) -> Result<Option<String>> {
    for n in 1u32.. {
        let name = match n {
            1 => id.to_string(),
            n => numbered(id, n),
        };
        let target = data_dir.join(&name);
        let is_sample = taken.contains(&name);
        if !is_sample && !target.exists() {
            return Ok(Some(name));
        }
        if same_content(file, &target)? {
            // A file without a sample is what an interrupted import left: reuse it.
            return Ok((!is_sample).then_some(name));
        }
    }
    unreachable!("an unbounded range always yields a name")
}

/// `dir/stem.ext` → `dir/stem-n.ext`.
fn numbered(id: &str, n: u32) -> String {
    let (dir, file) = match id.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file),
        None => (String::new(), id),
    };
    match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem}-{n}.{ext}"),
        _ => format!("{dir}{file}-{n}"),
    }
}

/// Whether two files hold the same bytes (`false` when the second does not exist).
fn same_content(a: &Path, b: &Path) -> Result<bool> {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return Ok(false);
    };
    if ma.len() != mb.len() || !mb.is_file() {
        return Ok(false);
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
    Ok(read(a)? == read(b)?)
}

/// The name of an imported image inside the project: its path relative to the imported folder;
/// a manifest entry that points outside the folder keeps only its file name.
fn project_name(sample_id: &str, path: &Path) -> String {
    let outside = Path::new(sample_id).is_absolute() || sample_id.contains("..");
    match (outside, path.file_name()) {
        (true, Some(name)) => name.to_string_lossy().into_owned(),
        _ => sample_id.to_string(),
    }
}

impl Project {
    /// Import the images of `folder` — class folders, `.txt` label files beside the images, or
    /// a `manifest.jsonl` (SPEC §3) — as samples of an image project, copied into the
    /// workspace. Images without a label become unlabelled samples to label in the project;
    /// damaged files, unsupported formats and unreadable label files are left out and listed
    /// with the reason. Importing the same folder again adds only what is new.
    pub fn import_images(&self, folder: &Path) -> Result<ImageImport> {
        self.require(TaskKind::Image, "importing images")?;
        let data = ImageDataset::import(folder, ImportFormat::Auto)?;
        let mut report = ImageImport {
            skipped: data
                .skipped
                .iter()
                .map(|s| SkippedFile {
                    path: s.path.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
            ..ImageImport::default()
        };
        let mut incoming: Vec<(String, PathBuf, Vec<String>)> = data
            .samples
            .iter()
            .map(|s| {
                (
                    project_name(&s.id, &s.path),
                    s.path.clone(),
                    s.labels.clone(),
                )
            })
            .collect();
        for path in &data.unlabelled {
            // Labelled images were probed by the import; unlabelled ones are probed here.
            match probe_file(path) {
                Ok(_) => {
                    let id = path
                        .strip_prefix(folder)
                        .unwrap_or(path)
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    incoming.push((project_name(&id, path), path.clone(), Vec::new()));
                }
                Err(e) => report.skipped.push(SkippedFile {
                    path: path.clone(),
                    reason: match e {
                        Error::Data { message, .. } => message,
                        other => other.to_string(),
                    },
                }),
            }
        }
        incoming.sort();
        let data_dir = self.store.data_dir(&self.name);
        let mut taken: BTreeSet<String> = self
            .store
            .samples(&self.name, SampleFilter::All)?
            .into_iter()
            .map(|s| s.source)
            .collect();
        let mut new_samples = Vec::new();
        for (id, path, labels) in incoming {
            let Some(name) = free_name(&id, &path, &data_dir, &taken)? else {
                report.already_present += 1;
                continue;
            };
            self.store.import_file(&self.name, &path, &name)?;
            if name != id {
                report.renamed.push((id, name.clone()));
            }
            taken.insert(name.clone());
            if labels.is_empty() {
                report.unlabelled += 1;
            } else {
                report.labelled += 1;
            }
            new_samples.push(NewSample::labelled(name, labels));
        }
        report.imported = new_samples.len();
        // One transaction for the samples: a killed import leaves copied files at most, which
        // the next import of the same folder reuses.
        self.store.add_samples(&self.name, &new_samples)?;
        self.labelled()?;
        Ok(report)
    }

    /// The project's labelled images as a dataset (files that can no longer be decoded are
    /// listed as skipped), and its unlabelled samples.
    fn labelled_images(&self) -> Result<(ImageDataset, Vec<Sample>)> {
        let data_dir = self.store.data_dir(&self.name);
        let (labelled, unlabelled): (Vec<Sample>, Vec<Sample>) = self
            .store
            .samples(&self.name, SampleFilter::All)?
            .into_iter()
            .partition(|s| !s.labels.is_empty());
        let samples = labelled
            .into_iter()
            .map(|s| ImageSample {
                path: data_dir.join(&s.source),
                id: s.source,
                labels: s.labels,
                usage: None,
            })
            .collect();
        let unlabelled_paths = unlabelled
            .iter()
            .map(|s| data_dir.join(&s.source))
            .collect();
        let dataset = ImageDataset::from_samples(&data_dir, samples, Vec::new(), unlabelled_paths);
        Ok((dataset, unlabelled))
    }

    /// The checks of SPEC §3 on the labelled images: the report, and the dataset it checked.
    pub(super) fn check_images(&self) -> Result<(CheckReport, ImageDataset)> {
        let (dataset, _) = self.labelled_images()?;
        Ok((check(&dataset), dataset))
    }

    /// Publish the labelled images that decode, split by label set (so every combination of
    /// labels keeps the training ratio).
    pub(super) fn publish_images(&self, split: SplitSpec) -> Result<DatasetVersion> {
        let split = split.check()?;
        let (report, dataset) = self.check_images()?;
        let report = report.into_result(&dataset.root)?;
        let strata: Vec<String> = dataset.samples.iter().map(|s| s.labels.join(",")).collect();
        let usages = stratified_split(&strata, split);
        let entries = dataset
            .samples
            .iter()
            .zip(usages)
            .map(|(s, usage)| exeml_core::store::ManifestEntry {
                source: s.id.clone(),
                row: None,
                labels: s.labels.clone(),
                usage,
            })
            .collect();
        let request = PublishRequest {
            checks: report,
            meta: serde_json::json!({ "task": "image", "multilabel": dataset.multilabel }),
            ..PublishRequest::new(entries, split)
        };
        let version = self.store.publish_version(&self.name, request)?;
        self.set_state(ProjectStatus::Created, WorkflowStep::Train)?;
        Ok(version)
    }

    /// The images of a dataset version of an image project, with the version's split.
    pub fn version_images(&self, version: &DatasetVersion) -> Result<ImageDataset> {
        self.require(TaskKind::Image, "reading a version's images")?;
        let samples = self
            .store
            .version_entries(&self.name, &version.name)?
            .into_iter()
            .map(|e| ImageSample {
                path: version.source_path(&e.source),
                id: e.source,
                labels: e.labels,
                usage: Some(e.usage),
            })
            .collect();
        let data_dir = self.store.data_dir(&self.name);
        Ok(ImageDataset::from_samples(
            &data_dir,
            samples,
            Vec::new(),
            Vec::new(),
        ))
    }

    /// Train a new model version of an image project on a dataset version (default: the
    /// labelled images as they are now, published unless the latest version holds them
    /// already, with that version's split — the predictor's for the first version),
    /// optionally warm-started from an earlier model version of the project (new classes
    /// allowed). The version's own split is used.
    ///
    /// The model is written into a staging folder and registered in one transaction: a run
    /// that fails or is killed registers nothing.
    pub fn train_images(
        &self,
        version: Option<&str>,
        predictor: &ImagePredictor,
        parent: Option<&str>,
        budget: &Budget,
        progress: &dyn Progress,
    ) -> Result<ModelVersion> {
        self.require(TaskKind::Image, "training an image predictor")?;
        let version = self.version_to_train(
            version,
            SplitSpec {
                train_ratio: predictor.train_ratio,
                seed: predictor.seed,
            },
        )?;
        let dataset = self.version_images(&version)?;
        let mut config = predictor.clone();
        if let Some(parent) = parent {
            let record = self.store.model_version(&self.name, parent)?;
            let parent_model = ImageModel::load_on(&record.artifact_dir, predictor.device)?;
            config = config.warm_start(parent, &parent_model);
        }
        let mut model = self.training(|| config.fit(&dataset, budget, progress))?;
        model.manifest.lineage.dataset_version = Some(version.name.clone());
        let at = self.store.project_dir(&self.name);
        let record = NewModelVersion {
            dataset_version: Some(version.name.clone()),
            parent: parent.map(str::to_string),
            params: serde_json::json!({
                "backbone": model.manifest.backbone,
                "resolution": model.manifest.resolution,
                "head": model.manifest.head,
                "fine_tune": model.manifest.fine_tune,
                "ensemble": model.manifest.ensemble,
                "preference": predictor.preference,
                "seed": predictor.seed,
                "time_limit_secs": budget.limit().as_secs_f64(),
            }),
            search_history: json_value(&model.manifest.leaderboard, &at)?,
            metrics: json_value(&model.manifest.validation, &at)?,
            duration_secs: model.manifest.lineage.fit_secs,
            summary: model.summary(),
        };
        self.register(|dir| model.write_into(dir), record)
    }

    /// Load a registered model version of an image project (onto the CPU).
    pub fn load_image_model(&self, version: &str) -> Result<ImageModel> {
        self.require(TaskKind::Image, "loading an image model")?;
        let record = self.store.model_version(&self.name, version)?;
        ImageModel::load(&record.artifact_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_name_is_numbered_before_its_extension() {
        assert_eq!(numbered("cat/1.jpg", 2), "cat/1-2.jpg");
        assert_eq!(numbered("a.b.png", 3), "a.b-3.png");
        assert_eq!(numbered("noext", 2), "noext-2");
        assert_eq!(numbered(".hidden", 2), ".hidden-2");
    }

    #[test]
    fn an_entry_outside_the_folder_keeps_its_file_name() {
        let path = Path::new("/elsewhere/x/7.jpg");
        assert_eq!(project_name("/elsewhere/x/7.jpg", path), "7.jpg");
        assert_eq!(
            project_name("cat/7.jpg", Path::new("/data/cat/7.jpg")),
            "cat/7.jpg"
        );
    }
}
