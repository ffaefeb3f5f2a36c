//! The manifest of a dataset version: JSON lines, one sample each with its source, labels and
//! usage; exported to share a version and imported to add its samples to a project.

use super::{files, names, now, Store};
use crate::fsio::write_atomic;
use crate::split::Usage;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// One line of a manifest: one sample (or one table row) of a dataset version.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    /// The sample's file: relative to the project's data folder inside a version, absolute in an
    /// exported manifest.
    pub source: String,
    /// The 0-based data row, for samples that are rows of a table file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// Its labels.
    pub labels: Vec<String>,
    /// Its part of the split.
    pub usage: Usage,
}

/// Read a manifest; errors name the file and the 1-based line. Blank lines are skipped.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(line)
            .map_err(|e| Error::data(path, format!("line {}: {e}", i + 1)))?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Entries as JSON lines, each ending in a newline.
pub fn to_json_lines(entries: &[ManifestEntry]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for entry in entries {
        serde_json::to_writer(&mut bytes, entry)
            .map_err(|e| Error::data("<manifest>", format!("cannot serialize: {e}")))?;
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// A manifest line as imported: only the source is required (labels default to none, usage and
/// row are ignored since a new version is split again when published).
#[derive(Deserialize)]
struct ImportLine {
    source: String,
    #[serde(default)]
    labels: Vec<String>,
}

/// A file to import and what the manifest says about it.
struct Pending {
    line: usize,
    path: PathBuf,
    labels: BTreeSet<String>,
    base_name: String,
}

impl Store {
    /// Write a version's manifest to `out` (atomically) with absolute source paths, so it can be
    /// imported from anywhere. Returns the number of lines.
    pub fn export_manifest(&self, project: &str, version: &str, out: &Path) -> Result<usize> {
        let version = self.dataset_version(project, version)?;
        let mut entries = read_manifest(&version.manifest_path())?;
        for entry in &mut entries {
            let path = version.source_path(&entry.source);
            entry.source = path
                .to_str()
                .ok_or_else(|| Error::data(&path, "the path is not valid UTF-8"))?
                .to_string();
        }
        write_atomic(out, &to_json_lines(&entries)?)?;
        Ok(entries.len())
    }

    /// Add the samples a manifest lists: sources are resolved relative to the manifest's folder
    /// unless absolute, copied into the data folder (a relative source keeps its path there,
    /// others their file name, with `-2`, `-3`… added on a clash) and added with their labels.
    /// Lines naming the same file are one sample with the union of their labels. Errors name
    /// the manifest and the 1-based line. Returns how many samples were added.
    pub fn import_manifest(&self, project: &str, manifest: &Path) -> Result<usize> {
        let project_id = self.project_id(&self.conn, project)?;
        let pending = parse_import(manifest)?;
        let data_dir = self.data_dir(project);
        let mut copied = files::RemoveOnDrop::new(Vec::new());
        let mut taken = HashSet::new();
        let mut chosen = Vec::with_capacity(pending.len());
        for item in &pending {
            let at =
                |message: String| Error::data(manifest, format!("line {}: {message}", item.line));
            let mut found = None;
            for candidate in candidates(&item.base_name) {
                if taken.contains(&candidate) {
                    continue;
                }
                let target = data_dir.join(&candidate);
                let same = target.is_file() && files::same_content(&item.path, &target)?;
                if self
                    .sample_with_source(&self.conn, project_id, &candidate)?
                    .is_some()
                {
                    if same {
                        return Err(at(format!(
                            "{} is already in project `{project}` as sample `{candidate}`",
                            item.path.display()
                        )));
                    }
                    continue;
                }
                if target.exists() && !same {
                    continue;
                }
                if !same {
                    files::copy_atomic(&item.path, &target, None).map_err(|e| at(e.to_string()))?;
                    copied.push(target);
                }
                found = Some(candidate);
                break;
            }
            let rel = found.ok_or_else(|| at("no free file name in the data folder".into()))?;
            taken.insert(rel.clone());
            chosen.push((item, rel));
        }
        let tx = self.write_tx()?;
        let project_id = self.project_id(&tx, project)?;
        let t = now();
        for (item, rel) in &chosen {
            let labels: Vec<String> = item.labels.iter().cloned().collect();
            self.insert_sample(&tx, project_id, rel, &labels, &None, t)
                .map_err(|e| Error::data(manifest, format!("line {}: {e}", item.line)))?;
        }
        self.touch(&tx, project_id)?;
        tx.commit().map_err(self.sql())?;
        copied.disarm();
        Ok(chosen.len())
    }
}

/// Parse and check every line of a manifest to import, merging lines that name the same file.
fn parse_import(manifest: &Path) -> Result<Vec<Pending>> {
    let text = std::fs::read_to_string(manifest).map_err(|e| Error::io(manifest, e))?;
    let folder = std::path::absolute(manifest)
        .map_err(|e| Error::io(manifest, e))?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut by_path: HashMap<PathBuf, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let at = |message: String| Error::data(manifest, format!("line {n}: {message}"));
        if line.trim().is_empty() {
            continue;
        }
        let entry: ImportLine = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        for label in &entry.labels {
            names::validate_label(label).map_err(|e| at(e.to_string()))?;
        }
        let given = Path::new(&entry.source);
        let path = if given.is_absolute() {
            given.to_path_buf()
        } else {
            folder.join(given)
        };
        if !path.is_file() {
            return Err(at(format!(
                "source `{}` is not a file ({})",
                entry.source,
                path.display()
            )));
        }
        if let Some(&k) = by_path.get(&path) {
            pending[k].labels.extend(entry.labels);
            continue;
        }
        let base_name = match names::relative_path(&entry.source, "source") {
            Ok(rel) if !given.is_absolute() => rel,
            _ => path
                .file_name()
                .and_then(|name| name.to_str())
                .map(str::to_string)
                .ok_or_else(|| at(format!("source `{}` has no file name", entry.source)))?,
        };
        by_path.insert(path.clone(), pending.len());
        pending.push(Pending {
            line: n,
            path,
            labels: entry.labels.into_iter().collect(),
            base_name,
        });
    }
    Ok(pending)
}

/// `a/b.jpg`, then `a/b-2.jpg`, `a/b-3.jpg`, … (bounded, so a full folder is an error).
fn candidates(base: &str) -> impl Iterator<Item = String> + '_ {
    let (dir, file) = match base.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file),
        None => (String::new(), base),
    };
    let (stem, ext) = match file.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, format!(".{ext}")),
        _ => (file, String::new()),
    };
    std::iter::once(base.to_string())
        .chain((2..10_000).map(move |k| format!("{dir}{stem}-{k}{ext}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_names_get_numbered() {
        let names: Vec<String> = candidates("cats/1.jpg").take(3).collect();
        assert_eq!(names, ["cats/1.jpg", "cats/1-2.jpg", "cats/1-3.jpg"]);
        let names: Vec<String> = candidates(".hidden").take(2).collect();
        assert_eq!(names, [".hidden", ".hidden-2"]);
    }

    #[test]
    fn entries_round_trip_as_json_lines() {
        let entries = vec![
            ManifestEntry {
                source: "a.jpg".into(),
                row: None,
                labels: vec!["猫".into()],
                usage: Usage::Train,
            },
            ManifestEntry {
                source: "t.csv".into(),
                row: Some(7),
                labels: vec![],
                usage: Usage::Validation,
            },
        ];
        let bytes = to_json_lines(&entries).expect("serialize");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.starts_with(r#"{"source":"a.jpg","labels":["猫"],"usage":"train"}"#));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, format!("{text}\n")).expect("write");
        assert_eq!(read_manifest(&path).expect("read"), entries);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.jsonl");
        std::fs::write(
            &path,
            "{\"source\":\"a\",\"labels\":[],\"usage\":\"train\"}\n{oops\n",
        )
        .expect("write");
        let text = read_manifest(&path).expect_err("line 2 is bad").to_string();
        assert!(
            text.contains("m.jsonl") && text.contains("line 2"),
            "{text}"
        );
    }
}
