//! Import of labelled image folders: a folder per class, a `.txt` label file beside each image
//! (several lines = several labels), or a JSON-lines manifest. Bad files are listed, not fatal.

use super::decode::{is_image_path, probe_file, unsupported_image_format};
use exeml_core::checks::CheckReport;
use exeml_core::store::{read_manifest, validate_label};
use exeml_core::{Dataset, Error, Result, TaskKind, Usage};
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The manifest file name recognised in a data folder.
pub const MANIFEST_FILE: &str = "manifest.jsonl";

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSample {
    /// The file on disk.
    pub path: PathBuf,
    /// Its path relative to the data folder, `/`-separated (absolute for manifest entries
    /// outside the folder).
    pub id: String,
    /// Its labels (one unless multi-label).
    pub labels: Vec<String>,
    /// Its part of the split when the data says (manifests).
    pub usage: Option<Usage>,
}

/// A file that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: String,
}

/// How a data folder is laid out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ImportFormat {
    /// Detect: a `manifest.jsonl`, else `.txt` files beside images, else class folders.
    #[default]
    Auto,
    /// `root/<label>/<image>`.
    ClassFolders,
    /// `name.jpg` + `name.txt` with one label per line.
    SideBySide,
    /// A JSON-lines manifest (`source`, `labels`, `usage`).
    Manifest(PathBuf),
}

/// Labelled images of one data folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// The data folder.
    pub root: PathBuf,
    /// The usable labelled images, sorted by id.
    pub samples: Vec<ImageSample>,
    /// The class names, sorted.
    pub classes: Vec<String>,
    /// Whether any image carries several labels.
    pub multilabel: bool,
    /// Files left out, with the reason.
    pub skipped: Vec<Skipped>,
    /// Images without a label.
    pub unlabelled: Vec<PathBuf>,
}

fn relative_id(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every file under `dir` (recursively, hidden entries skipped), sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Every image file under `root` (hidden entries skipped) with its relative id, sorted by id;
/// or, when `root` is one image file, that file with its name as id.
pub fn list_images(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    if root.is_file() {
        if !is_image_path(root) {
            return Err(Error::data(
                root,
                "neither a folder of images nor a JPG, PNG or BMP file",
            ));
        }
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Ok(vec![(name, root.to_path_buf())]);
    }
    Ok(list_files(root)?.0)
}

/// Image files with their relative ids.
type Listed = Vec<(String, PathBuf)>;

/// The readable images under `root` (as [`list_images`]) and the files in image formats exeml
/// does not read, with the reason.
fn list_files(root: &Path) -> Result<(Listed, Vec<Skipped>)> {
    if !root.is_dir() {
        return Err(Error::data(root, "not a folder of images"));
    }
    let mut files = Vec::new();
    walk(root, &mut files)?;
    let mut images = Vec::new();
    let mut unsupported = Vec::new();
    for path in files {
        if is_image_path(&path) {
            images.push((relative_id(root, &path), path));
        } else if let Some(format) = unsupported_image_format(&path) {
            unsupported.push(Skipped {
                path,
                reason: format!(
                    "unsupported image format ({format}): exeml reads JPG, JPEG, PNG and BMP"
                ),
            });
        }
    }
    images.sort();
    Ok((images, unsupported))
}

/// Labels of a label file: one per line, trimmed, blank lines ignored, duplicates collapsed.
fn read_label_file(path: &Path) -> std::result::Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("unreadable label file: {e}"))?;
    let mut labels: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let label = line.trim().trim_start_matches('\u{feff}');
        if label.is_empty() {
            continue;
        }
        validate_label(label).map_err(|e| format!("line {}: {e}", i + 1))?;
        if !labels.iter().any(|l| l == label) {
            labels.push(label.to_string());
        }
    }
    Ok(labels)
}

/// Whether `path` (after resolving symlinks) lies inside `root`.
fn inside(root: &Path, path: &Path) -> bool {
    match (root.canonicalize(), path.canonicalize()) {
        (Ok(r), Ok(p)) => p.starts_with(r),
        _ => false,
    }
}

impl ImageDataset {
    /// Import the folder `root` in `format`.
    pub fn import(root: &Path, format: ImportFormat) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::data(
                root,
                "not a folder: image data is a folder of images",
            ));
        }
        let format = match format {
            ImportFormat::Auto if root.join(MANIFEST_FILE).is_file() => {
                ImportFormat::Manifest(root.join(MANIFEST_FILE))
            }
            other => other,
        };
        let mut skipped = Vec::new();
        let mut unlabelled = Vec::new();
        let mut labelled: Vec<ImageSample> = Vec::new();
        if let ImportFormat::Manifest(manifest) = &format {
            labelled = from_manifest(root, manifest, &mut skipped)?;
        } else {
            let (images, unsupported) = list_files(root)?;
            skipped.extend(unsupported);
            let side_by_side = match format {
                ImportFormat::SideBySide => true,
                ImportFormat::ClassFolders => false,
                _ => images
                    .iter()
                    .any(|(_, p)| p.with_extension("txt").is_file()),
            };
            for (id, path) in images {
                if !inside(root, &path) {
                    skipped.push(Skipped {
                        path,
                        reason: "a link that points outside the data folder".into(),
                    });
                    continue;
                }
                let labels = if side_by_side {
                    let txt = path.with_extension("txt");
                    if !txt.is_file() {
                        unlabelled.push(path);
                        continue;
                    }
                    match read_label_file(&txt) {
                        Ok(labels) => labels,
                        Err(reason) => {
                            skipped.push(Skipped {
                                path,
                                reason: format!("{}: {reason}", txt.display()),
                            });
                            continue;
                        }
                    }
                } else {
                    match id.split_once('/') {
                        Some((folder, _)) => match validate_label(folder) {
                            Ok(()) => vec![folder.to_string()],
                            Err(e) => {
                                skipped.push(Skipped {
                                    path,
                                    reason: format!("class folder name: {e}"),
                                });
                                continue;
                            }
                        },
                        None => {
                            unlabelled.push(path);
                            continue;
                        }
                    }
                };
                if labels.is_empty() {
                    unlabelled.push(path);
                    continue;
                }
                labelled.push(ImageSample {
                    path,
                    id,
                    labels,
                    usage: None,
                });
            }
        }
        Ok(Self::from_samples(root, labelled, skipped, unlabelled))
    }

    /// A dataset of `labelled` images known by other means (e.g. a project's store): each file's
    /// header is read, and those that cannot be decoded join `skipped`; the samples are sorted
    /// by id and the classes gathered.
    pub fn from_samples(
        root: &Path,
        labelled: Vec<ImageSample>,
        mut skipped: Vec<Skipped>,
        unlabelled: Vec<PathBuf>,
    ) -> Self {
        // Headers only, in parallel: a full decode happens once, when features are extracted.
        let probes: Vec<Option<String>> = labelled
            .par_iter()
            .map(|s| probe_file(&s.path).err().map(|e| short_reason(&e)))
            .collect();
        let mut samples = Vec::with_capacity(labelled.len());
        for (sample, problem) in labelled.into_iter().zip(probes) {
            match problem {
                Some(reason) => skipped.push(Skipped {
                    path: sample.path,
                    reason,
                }),
                None => samples.push(sample),
            }
        }
        samples.sort_by(|a, b| a.id.cmp(&b.id));
        let classes: BTreeSet<String> = samples.iter().flat_map(|s| s.labels.clone()).collect();
        ImageDataset {
            root: root.to_path_buf(),
            multilabel: samples.iter().any(|s| s.labels.len() > 1),
            classes: classes.into_iter().collect(),
            samples,
            skipped,
            unlabelled,
        }
    }

    /// Per sample, the indices of its labels in [`Self::classes`].
    pub fn label_indices(&self) -> Vec<Vec<usize>> {
        self.samples
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .filter_map(|l| self.classes.binary_search(l).ok())
                    .collect()
            })
            .collect()
    }
}

/// An error's message without the file name the caller already shows.
fn short_reason(e: &Error) -> String {
    match e {
        Error::Data { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn from_manifest(
    root: &Path,
    manifest: &Path,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<ImageSample>> {
    let base = manifest.parent().unwrap_or(root);
    let mut samples = Vec::new();
    for entry in read_manifest(manifest)? {
        let source = Path::new(&entry.source);
        if source.is_relative() && source.components().any(|c| c == Component::ParentDir) {
            skipped.push(Skipped {
                path: source.to_path_buf(),
                reason: format!("{}: `..` leaves the manifest's folder", manifest.display()),
            });
            continue;
        }
        let path = base.join(source);
        if !path.is_file() {
            skipped.push(Skipped {
                path,
                reason: format!("listed in {} but missing", manifest.display()),
            });
            continue;
        }
        if source.is_relative() && !inside(base, &path) {
            skipped.push(Skipped {
                path,
                reason: "a link that points outside the manifest's folder".into(),
            });
            continue;
        }
        if let Some(bad) = entry.labels.iter().find_map(|l| validate_label(l).err()) {
            skipped.push(Skipped {
                path,
                reason: format!("{}: {bad}", manifest.display()),
            });
            continue;
        }
        let mut labels: Vec<String> = Vec::new();
        for l in entry.labels {
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        if labels.is_empty() {
            continue;
        }
        samples.push(ImageSample {
            id: relative_id(base, &path),
            path,
            labels,
            usage: Some(entry.usage),
        });
    }
    Ok(samples)
}

impl Dataset for ImageDataset {
    fn task(&self) -> TaskKind {
        TaskKind::Image
    }

    fn len(&self) -> usize {
        self.samples.len()
    }

    fn classes(&self) -> &[String] {
        &self.classes
    }

    fn check(&self) -> CheckReport {
        super::checks::check(self)
    }

    fn subset(&self, usage: &[Usage], keep: Usage) -> Result<Self> {
        if usage.len() != self.samples.len() {
            return Err(Error::invalid(
                "usage",
                format!("{} entries for {} images", usage.len(), self.samples.len()),
            ));
        }
        let mut out = self.clone();
        out.samples = self
            .samples
            .iter()
            .zip(usage)
            .filter(|(_, u)| **u == keep)
            .map(|(s, _)| s.clone())
            .collect();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    fn image(path: &Path) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        RgbImage::from_pixel(8, 6, image::Rgb([9, 99, 199]))
            .save(path)
            .expect("save");
    }

    #[test]
    fn a_listing_is_a_folders_images_or_one_image_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        image(&root.join("b/one.png"));
        image(&root.join("a.jpg"));
        std::fs::write(root.join("notes.txt"), b"not an image").expect("write");
        let ids: Vec<String> = list_images(root)
            .expect("folder")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["a.jpg", "b/one.png"]);
        let one = list_images(&root.join("b/one.png")).expect("one file");
        assert_eq!(one, vec![("one.png".to_string(), root.join("b/one.png"))]);
        let err = list_images(&root.join("notes.txt")).expect_err("not an image");
        assert!(
            err.to_string().contains("nor a JPG, PNG or BMP file"),
            "{err}"
        );
    }

    #[test]
    fn class_folders_with_chinese_labels_and_bad_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        image(&root.join("向日葵/a.jpg"));
        image(&root.join("tulip/b.PNG"));
        image(&root.join("tulip/c.bmp"));
        image(&root.join("loose.png"));
        std::fs::write(root.join("tulip/zero.jpg"), b"").expect("write");
        std::fs::write(root.join("tulip/text.png"), b"plain text").expect("write");
        std::fs::write(root.join("tulip/notes.md"), b"ignored").expect("write");
        std::fs::write(root.join("tulip/anim.GIF"), b"GIF89a").expect("write");
        let d = ImageDataset::import(root, ImportFormat::Auto).expect("import");
        assert_eq!(d.classes, ["tulip", "向日葵"]);
        let ids: Vec<&str> = d.samples.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["tulip/b.PNG", "tulip/c.bmp", "向日葵/a.jpg"]);
        assert_eq!(d.unlabelled.len(), 1);
        let reasons: Vec<String> = d.skipped.iter().map(|s| s.reason.clone()).collect();
        // The zero-byte and the text file by their content, the GIF by its format; the notes
        // file is not an image and passes unremarked.
        assert_eq!(d.skipped.len(), 3, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("zero-byte")),
            "{reasons:?}"
        );
        let gif = d
            .skipped
            .iter()
            .find(|s| s.path.ends_with("tulip/anim.GIF"));
        assert!(
            gif.is_some_and(|s| s.reason.contains("unsupported image format (GIF)")),
            "{:?}",
            d.skipped
        );
        assert!(!d.multilabel);
        assert_eq!(d.label_indices()[2], vec![1]);
    }

    #[test]
    fn side_by_side_label_files_with_several_lines_are_multilabel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for (name, labels) in [("1", "cat\ndog\n\ncat"), ("2", "dog"), ("3", "bad label!")] {
            image(&root.join(format!("{name}.jpg")));
            std::fs::write(root.join(format!("{name}.txt")), labels).expect("txt");
        }
        image(&root.join("4.jpg"));
        let d = ImageDataset::import(root, ImportFormat::Auto).expect("import");
        assert!(d.multilabel);
        assert_eq!(d.samples[0].labels, ["cat", "dog"]);
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.unlabelled.len(), 1);
        assert!(d.skipped[0].reason.contains("line 1"), "{:?}", d.skipped);
    }

    #[test]
    fn manifest_keeps_usage_and_refuses_escaping_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("data");
        image(&root.join("img/a.png"));
        image(&root.join("img/b.png"));
        image(&dir.path().join("outside.png"));
        let abs = root.join("img/b.png");
        let lines = [
            r#"{"source": "img/a.png", "labels": ["cat"], "usage": "train"}"#.to_string(),
            format!(
                r#"{{"source": {:?}, "labels": ["dog"], "usage": "validation"}}"#,
                abs.display().to_string()
            ),
            r#"{"source": "../outside.png", "labels": ["cat"], "usage": "train"}"#.to_string(),
            r#"{"source": "img/missing.png", "labels": ["cat"], "usage": "train"}"#.to_string(),
        ];
        std::fs::write(root.join(MANIFEST_FILE), lines.join("\n")).expect("manifest");
        let d = ImageDataset::import(&root, ImportFormat::Auto).expect("import");
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.samples[0].usage, Some(Usage::Train));
        assert_eq!(d.samples[1].id, "img/b.png");
        assert_eq!(d.samples[1].usage, Some(Usage::Validation));
        assert_eq!(d.skipped.len(), 2);
        assert!(d.skipped.iter().any(|s| s.reason.contains("..")));
    }

    #[test]
    fn a_file_is_not_a_data_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.csv");
        std::fs::write(&file, "a,b").expect("write");
        let err = ImageDataset::import(&file, ImportFormat::Auto).expect_err("not a folder");
        assert!(err.to_string().contains("x.csv"));
    }
}
