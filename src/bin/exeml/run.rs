//! Dispatch of the subcommands that work on files: train, predict, evaluate.

use crate::args::{
    Cli, Command, EmbedArgs, EvaluateArgs, ExportArgs, FitOptions, HeaderArg, PredictArgs,
    SpeedArgs, TaskArg, TrainArgs,
};
use crate::progress::Reporter;
use exeml::core::budget::parse_duration;
use exeml::core::{Budget, Device, Error, Preference, ProblemType, Result, TaskKind};
use exeml::tabular::{
    predict_file, BatchOptions, HeaderMode, ReadOptions, Table, TabularModel, TabularPredictor,
};
use std::path::Path;

/// Run one command line.
pub fn dispatch(cli: Cli) -> Result<()> {
    let workspace = cli.workspace.clone();
    match cli.command {
        Command::Train(args) => train(*args),
        Command::Predict(args) => predict(args),
        Command::Embed(args) => embed(&args),
        Command::Export(args) => export(&args),
        Command::Evaluate(args) => evaluate(args),
        Command::Speed(args) => speed(args),
        Command::Serve(args) => crate::serve::run(workspace, args),
        Command::Demo(args) => crate::demo::run(workspace, args),
        Command::Project(cmd) => crate::registry::project(workspace, cmd),
        Command::Dataset(cmd) => crate::registry::dataset(workspace, cmd),
        Command::Model(cmd) => crate::registry::model(workspace, cmd),
    }
}

/// The task as the library names it.
pub fn task_kind(task: TaskArg) -> TaskKind {
    match task {
        TaskArg::Tabular => TaskKind::Tabular,
        TaskArg::Image => TaskKind::Image,
        TaskArg::Detection => TaskKind::Detection,
        TaskArg::Sound => TaskKind::Sound,
        TaskArg::Text => TaskKind::Text,
    }
}

/// The task of a saved model folder, from its manifest.
pub fn model_task(dir: &Path) -> Result<TaskKind> {
    #[derive(serde::Deserialize)]
    struct Head {
        task: TaskKind,
    }
    let path = dir.join("manifest.json");
    if !path.exists() {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            message: "not an exeml model folder: no manifest.json".into(),
        });
    }
    let head: Head = exeml::core::fsio::read_json(&path)?;
    Ok(head.task)
}

/// Refuse the tasks this build cannot train yet, with a clear message.
pub fn require_tabular(task: TaskKind) -> Result<()> {
    if task == TaskKind::Tabular {
        Ok(())
    } else {
        Err(Error::invalid(
            "--task",
            format!(
                "`{task}` training is not available in exeml {} yet; `tabular` and `image` are",
                env!("CARGO_PKG_VERSION")
            ),
        ))
    }
}

/// The header mode of the library.
pub fn header_mode(header: HeaderArg) -> HeaderMode {
    match header {
        HeaderArg::Auto => HeaderMode::Auto,
        HeaderArg::Yes => HeaderMode::Present,
        HeaderArg::No => HeaderMode::Absent,
    }
}

/// A predictor configured from the shared fit options (validated here, once).
pub fn predictor(fit: &FitOptions) -> Result<(TabularPredictor, Budget)> {
    refuse_image_options(fit)?;
    let limit = parse_duration(&fit.time_limit)?;
    let preference: Preference = fit.preference.parse()?;
    let device: Device = fit.device.parse()?;
    device.check_available()?;
    let problem = fit
        .problem
        .as_deref()
        .map(str::parse::<ProblemType>)
        .transpose()?;
    let predictor = TabularPredictor {
        label: fit.label.clone(),
        problem,
        time_limit: limit,
        preference,
        seed: fit.seed,
        train_ratio: fit.train_ratio,
        device,
        header: header_mode(fit.header),
        warm_start: None,
        families: fit.families.clone(),
        constraints: fit.constraints()?,
        deterministic: fit.deterministic,
        search_rows: fit
            .search_rows
            .map(|r| usize::try_from(r).unwrap_or(usize::MAX)),
        bag_folds: fit.bag_folds.map(|k| usize::try_from(k).unwrap_or(0)),
        refit_full: fit.refit_full,
        stack: fit.stack,
        parallel_trials: fit.parallel_trials.map(|n| usize::try_from(n).unwrap_or(1)),
    };
    exeml::core::SplitSpec {
        train_ratio: fit.train_ratio,
        seed: fit.seed,
    }
    .check()?;
    Ok((predictor, Budget::new(limit)))
}

/// Image-only training options are an error for a table, not silently ignored.
fn refuse_image_options(fit: &FitOptions) -> Result<()> {
    let given = [
        (
            !fit.backbones.is_empty(),
            "--backbone",
            "tables are not read by a backbone (--family picks model families)",
        ),
        (
            fit.resolution.is_some(),
            "--resolution",
            "tables have no input size",
        ),
        (
            !fit.weights.is_empty(),
            "--weights",
            "tables are not read by a backbone",
        ),
        (
            fit.no_fine_tune,
            "--no-fine-tune",
            "no backbone is fine-tuned for a table",
        ),
        (
            fit.no_ensemble,
            "--no-ensemble",
            "it keeps one fine-tuned image model (tables: --bag-folds, --stack)",
        ),
        (
            fit.fine_tune_arms.is_some(),
            "--fine-tune-arms",
            "no backbone is fine-tuned for a table",
        ),
    ];
    match given.iter().find(|(given, _, _)| *given) {
        Some((_, flag, why)) => Err(Error::invalid(
            *flag,
            format!("is supported for images only: {why}"),
        )),
        None => Ok(()),
    }
}

fn train(args: TrainArgs) -> Result<()> {
    if task_kind(args.task) == TaskKind::Image {
        return crate::image::train(&args);
    }
    require_tabular(task_kind(args.task))?;
    let (mut predictor, budget) = predictor(&args.fit)?;
    if let Some(parent) = &args.from {
        let parent_model = TabularModel::load(parent)?;
        predictor = predictor.warm_start(parent.display().to_string(), &parent_model);
    }
    let table = Table::read(
        &args.data,
        ReadOptions {
            header: predictor.header,
        },
    )?;
    let reporter = Reporter::new();
    crate::interrupt::cancel_on_ctrl_c(&budget);
    let model = predictor.fit_with(&table, None, &budget, &reporter);
    reporter.finish();
    let model = model?;
    crate::interrupt::report_if_interrupted(&budget);
    print_findings(&model);
    model.save(&args.out)?;
    println!("model: {}", model.summary());
    println!("saved: {}", args.out.display());
    Ok(())
}

/// Print the data checks' warnings and notes.
pub fn print_findings(model: &TabularModel) {
    for finding in &model.manifest.checks.findings {
        eprintln!("{finding}");
    }
}

fn read_table(path: &Path, header: HeaderArg) -> Result<Table> {
    Table::read(
        path,
        ReadOptions {
            header: header_mode(header),
        },
    )
}

/// `exeml embed`: image models only.
fn embed(args: &EmbedArgs) -> Result<()> {
    match model_task(&args.model)? {
        TaskKind::Image => crate::image::embed(args),
        task => Err(Error::invalid(
            "--model",
            format!(
                "`{}` is a {task} model; embeddings are written by image models",
                args.model.display()
            ),
        )),
    }
}

/// `exeml export`: an image model as one ONNX file.
fn export(args: &ExportArgs) -> Result<()> {
    match model_task(&args.model)? {
        TaskKind::Image => {
            let model = exeml::vision::ImageModel::load(&args.model)?;
            let options = exeml::vision::onnx::OnnxOptions {
                int8_weights: args.int8,
            };
            model.export_onnx(&args.output, options)?;
            let side = model.manifest.resolution;
            println!(
                "wrote {} (ONNX opset {}{}): input `pixels` batch×3×{side}×{side} (RGB / 255, \
                 channels first), outputs `probabilities` ({} classes) and `embedding` ({})",
                args.output.display(),
                exeml::vision::onnx::OPSET,
                if args.int8 { ", int8 weights" } else { "" },
                model.classes().len(),
                model.embedding_dim(),
            );
            Ok(())
        }
        task => Err(Error::invalid(
            "--model",
            format!(
                "`{}` is a {task} model; ONNX export is for image models",
                args.model.display()
            ),
        )),
    }
}

fn predict(args: PredictArgs) -> Result<()> {
    if model_task(&args.model)? == TaskKind::Image {
        return crate::image::predict(&args);
    }
    let model = TabularModel::load(&args.model)?;
    // The CLI is stopped by a signal; the checkpoint of the last chunk makes it resumable.
    let options = BatchOptions {
        header: header_mode(args.header),
        chunk_rows: args.chunk_rows,
        resume: args.resume,
        budget: Budget::unlimited(),
    };
    let reporter = Reporter::new();
    let report = predict_file(&model, &args.data, &args.output, &options, &reporter);
    reporter.finish();
    let report = report?;
    if report.resumed_at > 0 {
        println!("resumed after {} rows", report.resumed_at);
    }
    println!(
        "wrote {} predictions to {}",
        report.predicted,
        args.output.display()
    );
    if let Some(errors) = &report.errors_file {
        eprintln!(
            "skipped {} bad rows; each is listed with its reason in {}",
            report.skipped,
            errors.display()
        );
    }
    Ok(())
}

fn evaluate(args: EvaluateArgs) -> Result<()> {
    if model_task(&args.model)? == TaskKind::Image {
        return crate::image::evaluate(&args);
    }
    let model = TabularModel::load(&args.model)?;
    let table = read_table(&args.data, args.header)?;
    let evaluation = model.evaluate(&table)?;
    if args.json {
        let text = serde_json::to_string(&evaluation)
            .map_err(|e| Error::data(&args.model, e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", exeml::report::evaluation_text(&evaluation));
    }
    Ok(())
}

fn speed(args: SpeedArgs) -> Result<()> {
    let options = exeml::core::SpeedOptions {
        single_runs: args.runs,
        batch_size: args.batch_size,
        batch_runs: args.batch_runs,
        ..exeml::core::SpeedOptions::default()
    };
    let (report, unit) = if model_task(&args.model)? == TaskKind::Image {
        (crate::image::speed(&args, options)?, "image")
    } else {
        let model = TabularModel::load(&args.model)?;
        (
            model.speed(&read_table(&args.data, args.header)?, options)?,
            "row",
        )
    };
    if args.json {
        let text =
            serde_json::to_string(&report).map_err(|e| Error::data(&args.model, e.to_string()))?;
        println!("{text}");
    } else {
        println!("{}", report.describe(unit));
    }
    Ok(())
}
