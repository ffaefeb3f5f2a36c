//! The store subcommands: `exeml project|dataset|model …`.

use crate::args::{
    DatasetCommand, DeleteModeArg, ExportFormat, HeaderArg, LabelCommand, ModelCommand,
    ProjectCommand,
};
use crate::progress::Reporter;
use crate::run::{header_mode, predictor, task_kind};
use exeml::core::store::{DeleteLabelMode, ProjectFilter, SampleFilter, Store};
use exeml::core::{Budget, Error, Result, SplitSpec, TaskKind};
use exeml::report::{
    evaluation_text, image_evaluation_text, image_leaderboard_text, leaderboard_text,
};
use exeml::workflow::ImageImport;
use exeml::Project;
use std::path::{Path, PathBuf};

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
            json,
        } => {
            let project = Project::open(store, &project)?;
            if project.task()? == TaskKind::Image {
                if label.is_some() || header.is_some() {
                    return Err(Error::invalid(
                        if label.is_some() {
                            "--label"
                        } else {
                            "--header"
                        },
                        "is for tables: an image folder's labels come from its class folders, \
                         label files or manifest",
                    ));
                }
                let import = project.import_images(&data)?;
                print_image_import(&import, &data, project.name(), json)?;
            } else {
                let header = header_mode(header.unwrap_or(HeaderArg::Auto));
                let table = project.import_table(&data, label.as_deref(), header)?;
                println!(
                    "imported {} rows × {} columns from {} into {}",
                    table.n_rows(),
                    table.columns.len(),
                    data.display(),
                    project.name()
                );
            }
        }
        DatasetCommand::Samples {
            project,
            labelled,
            unlabelled,
            label,
            json,
        } => {
            let filter = match (labelled, unlabelled, label) {
                (_, _, Some(label)) => SampleFilter::WithLabel(label),
                (true, _, None) => SampleFilter::Labelled,
                (_, true, None) => SampleFilter::Unlabelled,
                _ => SampleFilter::All,
            };
            let samples = Project::open(store, &project)?.samples(filter)?;
            if json {
                println!("{}", to_json(&samples)?);
            } else {
                println!("{:<8} {:<40} labels", "id", "source");
                for s in &samples {
                    println!("{:<8} {:<40} {}", s.id, s.source, s.labels.join(","));
                }
                println!("{} sample(s)", samples.len());
            }
        }
        DatasetCommand::Label(command) => label(store, command)?,
        DatasetCommand::DeleteSamples {
            project,
            samples,
            yes,
        } => {
            let project = Project::open(store, &project)?;
            if !yes {
                return Err(Error::invalid(
                    "--yes",
                    format!(
                        "deleting {} sample(s) of `{}` cannot be undone; pass --yes to confirm",
                        samples.len(),
                        project.name()
                    ),
                ));
            }
            let n = project.delete_samples(&samples)?;
            println!("deleted {n} sample(s) of {}", project.name());
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

/// What an image import did, as text (skipped files one per line) or JSON.
fn print_image_import(import: &ImageImport, data: &Path, project: &str, json: bool) -> Result<()> {
    if json {
        println!("{}", to_json(import)?);
        return Ok(());
    }
    println!(
        "imported {} image(s) from {} into {project}: {} labelled, {} without a label",
        import.imported,
        data.display(),
        import.labelled,
        import.unlabelled
    );
    if import.already_present > 0 {
        println!(
            "{} image(s) were already in the project",
            import.already_present
        );
    }
    for (from, to) in &import.renamed {
        println!("{from}: stored as {to} (another file has its name)");
    }
    for skipped in &import.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    Ok(())
}

/// `exeml dataset label …`.
fn label(store: Store, command: LabelCommand) -> Result<()> {
    match command {
        LabelCommand::Add {
            project,
            label,
            samples,
        } => {
            let project = Project::open(store, &project)?;
            let added = project.add_label(&samples, &label)?;
            println!(
                "label `{label}` added to {added} sample(s) of {} ({} already had it)",
                project.name(),
                samples.len().saturating_sub(added)
            );
        }
        LabelCommand::Set {
            project,
            sample,
            labels,
        } => {
            let project = Project::open(store, &project)?;
            project.set_labels(sample, &labels)?;
            if labels.is_empty() {
                println!("sample {sample} of {} has no label now", project.name());
            } else {
                println!(
                    "sample {sample} of {} is labelled {}",
                    project.name(),
                    labels.join(", ")
                );
            }
        }
        LabelCommand::Rename { project, from, to } => {
            let project = Project::open(store, &project)?;
            let n = project.rename_label(&from, &to)?;
            println!(
                "renamed `{from}` to `{to}` on {n} sample(s) of {}",
                project.name()
            );
        }
        LabelCommand::Delete {
            project,
            label,
            mode,
            yes,
        } => {
            let project = Project::open(store, &project)?;
            let mode = match mode {
                DeleteModeArg::Label => DeleteLabelMode::LabelOnly,
                DeleteModeArg::Samples => DeleteLabelMode::LabelAndOnlyLabelledSamples,
                DeleteModeArg::Files => DeleteLabelMode::SamplesAndFiles,
            };
            if !yes {
                let plan = project.plan_delete_label(&label, mode)?;
                println!("would delete: {plan}");
                for sample in &plan.samples_deleted {
                    println!("  sample {} ({})", sample.id, sample.source);
                }
                for file in &plan.files_deleted {
                    println!("  file {}", file.display());
                }
                return Err(Error::invalid(
                    "--yes",
                    format!("deleting label `{label}` cannot be undone; nothing was deleted: pass --yes to confirm"),
                ));
            }
            let done = project.delete_label(&label, mode)?;
            println!("deleted: {done}");
        }
    }
    Ok(())
}

/// An image or tabular model of a project, loaded for `model show` / `compare`.
enum LoadedModel {
    Tabular(Box<exeml::TabularModel>),
    Image(Box<exeml::vision::ImageModel>),
}

fn load_model(project: &Project, version: &str) -> Result<LoadedModel> {
    Ok(match project.task()? {
        TaskKind::Image => LoadedModel::Image(Box::new(project.load_image_model(version)?)),
        _ => LoadedModel::Tabular(Box::new(project.load_model(version)?)),
    })
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
            let reporter = Reporter::new();
            let (model, budget) = match project.task()? {
                TaskKind::Image => {
                    exeml::allocator::keep_freed_memory();
                    let predictor = crate::image::predictor(&fit)?;
                    let budget = Budget::new(predictor.time_limit);
                    crate::interrupt::cancel_on_ctrl_c(&budget);
                    let model = project.train_images(
                        version.as_deref(),
                        &predictor,
                        from.as_deref(),
                        &budget,
                        &reporter,
                    );
                    (model, budget)
                }
                _ => {
                    let (predictor, budget) = predictor(&fit)?;
                    crate::interrupt::cancel_on_ctrl_c(&budget);
                    let model = project.train(
                        version.as_deref(),
                        &predictor,
                        from.as_deref(),
                        &budget,
                        &reporter,
                    );
                    (model, budget)
                }
            };
            reporter.finish();
            let model = model?;
            crate::interrupt::report_if_interrupted(&budget);
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
            let model = load_model(&Project::open(store, &project)?, &version)?;
            if json {
                let manifest = match &model {
                    LoadedModel::Tabular(m) => to_json(&m.manifest)?,
                    LoadedModel::Image(m) => to_json(&m.manifest)?,
                };
                println!("{manifest}");
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
                match &model {
                    LoadedModel::Tabular(m) => {
                        println!(
                            "chosen: {} {}",
                            m.manifest.family,
                            serde_json::to_string(&m.manifest.params).unwrap_or_default()
                        );
                        println!("\nleaderboard:\n{}", leaderboard_text(&m.leaderboard()));
                        println!("validation:\n{}", evaluation_text(m.validation()));
                    }
                    LoadedModel::Image(m) => {
                        println!(
                            "\nleaderboard:\n{}",
                            image_leaderboard_text(&m.manifest.leaderboard)
                        );
                        println!(
                            "validation:\n{}",
                            image_evaluation_text(&m.manifest.validation)
                        );
                    }
                }
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
                "{:<8} {:<24} {:<10} {:<10} {:<10} {:<10}",
                "version", "model", "accuracy", "macro_f1", "rmse", "r2"
            );
            for v in versions {
                let (kind, m) = match load_model(&project, &v)? {
                    LoadedModel::Tabular(model) => (
                        model.manifest.family.to_string(),
                        serde_json::to_value(model.validation()).unwrap_or_default(),
                    ),
                    LoadedModel::Image(model) => (
                        format!(
                            "{} {}px",
                            model.manifest.backbone, model.manifest.resolution
                        ),
                        serde_json::json!({
                            "accuracy": model.manifest.validation.accuracy(),
                            "macro_f1": model.manifest.validation.macro_f1(),
                        }),
                    ),
                };
                let num = |k: &str| {
                    m.get(k)
                        .and_then(|x| x.as_f64())
                        .map_or("-".to_string(), |x| format!("{x:.4}"))
                };
                println!(
                    "{:<8} {:<24} {:<10} {:<10} {:<10} {:<10}",
                    v,
                    kind,
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
            format,
            int8,
        } => {
            if int8 && format != ExportFormat::Onnx {
                return Err(Error::invalid(
                    "--int8",
                    "8-bit weights are an option of `--format onnx`",
                ));
            }
            match (
                load_model(&Project::open(store, &project)?, &version)?,
                format,
            ) {
                (LoadedModel::Tabular(model), ExportFormat::Folder) => model.save(&out)?,
                (LoadedModel::Image(model), ExportFormat::Folder) => {
                    model.save(&out)?;
                }
                (LoadedModel::Image(model), ExportFormat::Onnx) => {
                    let options = exeml::vision::onnx::OnnxOptions { int8_weights: int8 };
                    model.export_onnx(&out, options)?
                }
                (LoadedModel::Tabular(_), ExportFormat::Onnx) => {
                    return Err(Error::invalid(
                        "--format",
                        format!(
                            "version {version} is a table model; ONNX export is for image models \
                             (export the folder: --format folder)"
                        ),
                    ))
                }
            }
            println!("exported model version {version} to {}", out.display());
        }
    }
    Ok(())
}
