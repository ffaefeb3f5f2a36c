//! The store subcommands: `exeml project|dataset|model …`.

use crate::args::{DatasetCommand, ModelCommand, ProjectCommand};
use crate::progress::Reporter;
use crate::run::{header_mode, predictor, task_kind};
use exeml::core::store::{ProjectFilter, SampleFilter, Store};
use exeml::core::{Error, Result, SplitSpec};
use exeml::report::{evaluation_text, leaderboard_text};
use exeml::Project;
use std::path::PathBuf;

/// Open the workspace given by `--workspace`/`EXEML_HOME`, or the default one.
pub fn open_store(workspace: Option<PathBuf>) -> Result<Store> {
    Store::open(&workspace.unwrap_or_else(Store::default_root))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| Error::data("<stdout>", e.to_string()))
}

pub fn project(workspace: Option<PathBuf>, command: ProjectCommand) -> Result<()> {
    let store = open_store(workspace)?;
    match command {
        ProjectCommand::Create {
            name,
            task,
            description,
        } => {
            let project = Project::create(store, &name, task_kind(task), &description)?;
            println!("created project {} ({})", project.name(), task_kind(task));
        }
        ProjectCommand::List {
            name,
            task,
            status,
            step,
            json,
        } => {
            let filter = ProjectFilter {
                name_contains: name,
                task: task.map(task_kind),
                status: status.as_deref().map(str::parse).transpose()?,
                step: step.as_deref().map(str::parse).transpose()?,
            };
            let projects = store.list_projects(&filter)?;
            if json {
                println!("{}", to_json(&projects)?);
            } else {
                println!(
                    "{:<24} {:<10} {:<10} {:<10} description",
                    "name", "task", "status", "step"
                );
                for p in projects {
                    println!(
                        "{:<24} {:<10} {:<10} {:<10} {}",
                        p.name,
                        p.task.as_str(),
                        p.status.as_str(),
                        p.step.as_str(),
                        p.description
                    );
                }
            }
        }
        ProjectCommand::Show { name } => {
            let info = store.project(&name)?;
            println!("{}", to_json(&info)?);
            let counts = store.label_counts(&name)?;
            println!("labels: {counts:?}");
            for v in store.dataset_versions(&name)? {
                println!(
                    "dataset version {}: {} samples ({} train / {} validation), hash {}",
                    v.name,
                    v.n_samples,
                    v.n_train,
                    v.n_validation,
                    &v.content_hash[..12.min(v.content_hash.len())]
                );
            }
            for m in store.model_versions(&name)? {
                println!(
                    "model version {}: {}{}",
                    m.version,
                    m.summary,
                    if m.deployed { " [deployed]" } else { "" }
                );
            }
        }
        ProjectCommand::Delete { name, yes } => {
            if !yes {
                return Err(Error::invalid(
                    "--yes",
                    format!("deleting project `{name}` removes its data, versions and models for good; pass --yes to confirm"),
                ));
            }
            store.delete_project(&name)?;
            println!("deleted project {name}");
        }
    }
    Ok(())
}

pub fn dataset(workspace: Option<PathBuf>, command: DatasetCommand) -> Result<()> {
    let store = open_store(workspace)?;
    match command {
        DatasetCommand::Import {
            project,
            data,
            label,
            header,
        } => {
            let project = Project::open(store, &project)?;
            let table = project.import_table(&data, label.as_deref(), header_mode(header))?;
            println!(
                "imported {} rows × {} columns from {} into {}",
                table.n_rows(),
                table.columns.len(),
                data.display(),
                project.name()
            );
        }
        DatasetCommand::Check { project, json } => {
            let project = Project::open(store, &project)?;
            let report = project.check()?;
            if json {
                println!("{}", to_json(&report)?);
            } else if report.findings.is_empty() {
                println!("no findings: the data is ready to train");
            } else {
                print!("{report}");
            }
            if report.has_errors() {
                return Err(Error::CheckFailed {
                    path: project.store().data_dir(project.name()),
                    summary: "see the findings above".into(),
                });
            }
        }
        DatasetCommand::Publish {
            project,
            train_ratio,
            seed,
        } => {
            let project = Project::open(store, &project)?;
            let version = project.publish(SplitSpec { train_ratio, seed })?;
            println!(
                "published dataset version {}: {} samples ({} train / {} validation)",
                version.name, version.n_samples, version.n_train, version.n_validation
            );
        }
        DatasetCommand::Versions { project, json } => {
            let versions = store.dataset_versions(&project)?;
            if json {
                println!("{}", to_json(&versions)?);
            } else {
                for v in versions {
                    println!(
                        "{}  {} samples  {} train / {} validation  ratio {}  seed {}  {}",
                        v.name,
                        v.n_samples,
                        v.n_train,
                        v.n_validation,
                        v.split.train_ratio,
                        v.split.seed,
                        &v.content_hash[..12.min(v.content_hash.len())]
                    );
                }
            }
        }
        DatasetCommand::Export {
            project,
            version,
            out,
        } => {
            let n = store.export_manifest(&project, &version, &out)?;
            println!("wrote {n} manifest lines to {}", out.display());
        }
        DatasetCommand::Labels { project } => {
            let labelled = store.samples(&project, SampleFilter::Labelled)?.len();
            let unlabelled = store.samples(&project, SampleFilter::Unlabelled)?.len();
            println!("labelled samples: {labelled}\nunlabelled samples: {unlabelled}");
            for (label, count) in store.label_counts(&project)? {
                println!("  {label}: {count}");
            }
            if let Some(v) = store.dataset_versions(&project)?.last() {
                println!("latest version {} label counts:", v.name);
                for (label, count) in &v.label_counts {
                    println!("  {label}: {count}");
                }
            }
        }
    }
    Ok(())
}

pub fn model(workspace: Option<PathBuf>, command: ModelCommand) -> Result<()> {
    let store = open_store(workspace)?;
    match command {
        ModelCommand::Train {
            project,
            version,
            from,
            fit,
        } => {
            let project = Project::open(store, &project)?;
            let (predictor, budget) = predictor(&fit)?;
            let reporter = Reporter::new();
            let model = project.train(
                version.as_deref(),
                &predictor,
                from.as_deref(),
                &budget,
                &reporter,
            )?;
            reporter.finish();
            println!(
                "model version {} of {} (dataset {}): {}",
                model.version,
                project.name(),
                model.dataset_version.unwrap_or_default(),
                model.summary
            );
        }
        ModelCommand::List { project, json } => {
            let versions = store.model_versions(&project)?;
            if json {
                println!("{}", to_json(&versions)?);
            } else {
                for m in versions {
                    println!(
                        "{:<8} dataset {:<5} {:>7.1}s  {}{}",
                        m.version,
                        m.dataset_version.unwrap_or_default(),
                        m.duration_secs,
                        m.summary,
                        if m.deployed { " [deployed]" } else { "" }
                    );
                }
            }
        }
        ModelCommand::Show {
            project,
            version,
            json,
        } => {
            let record = store.model_version(&project, &version)?;
            let model = Project::open(store, &project)?.load_model(&version)?;
            if json {
                println!("{}", to_json(&model.manifest)?);
            } else {
                println!(
                    "model version {} of {}: {}",
                    record.version, project, record.summary
                );
                println!(
                    "dataset version: {}",
                    record.dataset_version.unwrap_or_default()
                );
                if let Some(parent) = record.parent {
                    println!("parent: {parent}");
                }
                println!("folder: {}", record.artifact_dir.display());
                println!(
                    "chosen: {} {}",
                    model.manifest.family,
                    serde_json::to_string(&model.manifest.params).unwrap_or_default()
                );
                println!("\nleaderboard:\n{}", leaderboard_text(&model.leaderboard()));
                println!("validation:\n{}", evaluation_text(model.validation()));
            }
        }
        ModelCommand::Compare { project, versions } => {
            let versions = if versions.is_empty() {
                store
                    .model_versions(&project)?
                    .into_iter()
                    .map(|m| m.version)
                    .collect()
            } else {
                versions
            };
            let project = Project::open(store, &project)?;
            println!(
                "{:<8} {:<7} {:<10} {:<10} {:<10} {:<10}",
                "version", "family", "accuracy", "macro_f1", "rmse", "r2"
            );
            for v in versions {
                let model = project.load_model(&v)?;
                let m = serde_json::to_value(model.validation()).unwrap_or_default();
                let num = |k: &str| {
                    m.get(k)
                        .and_then(|x| x.as_f64())
                        .map_or("-".to_string(), |x| format!("{x:.4}"))
                };
                println!(
                    "{:<8} {:<7} {:<10} {:<10} {:<10} {:<10}",
                    v,
                    model.manifest.family,
                    num("accuracy"),
                    num("macro_f1"),
                    num("rmse"),
                    num("r2")
                );
            }
        }
        ModelCommand::Deploy { project, version } => {
            store.set_deployed(&project, &version, true)?;
            println!("model version {version} of {project} is marked deployed");
        }
        ModelCommand::Undeploy { project, version } => {
            store.set_deployed(&project, &version, false)?;
            println!("model version {version} of {project} is no longer marked deployed");
        }
        ModelCommand::Delete {
            project,
            version,
            yes,
        } => {
            if !yes {
                return Err(Error::invalid(
                    "--yes",
                    format!("deleting model version {version} of `{project}` cannot be undone; pass --yes to confirm"),
                ));
            }
            store.delete_model_version(&project, &version)?;
            println!("deleted model version {version} of {project}");
        }
        ModelCommand::Export {
            project,
            version,
            out,
        } => {
            let record = store.model_version(&project, &version)?;
            let model = exeml::TabularModel::load(&record.artifact_dir)?;
            model.save(&out)?;
            println!("exported model version {version} to {}", out.display());
        }
    }
    Ok(())
}
