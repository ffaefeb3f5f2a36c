//! The file commands for image models: train on a folder, predict, embed or evaluate a folder.

use crate::args::{EmbedArgs, EvaluateArgs, FitOptions, PredictArgs, TrainArgs};
use crate::progress::Reporter;
use exeml::core::budget::parse_duration;
use exeml::core::{Budget, Error, Result};
use exeml::vision::finetune::FineTuneParams;
use exeml::vision::{
    embed_folder, predict_folder, BackboneKind, ImageBatchOptions, ImageBatchReport, ImageDataset,
    ImageModel, ImagePredictor, ImportFormat,
};
use std::path::{Path, PathBuf};

/// The image predictor the shared fit options describe.
pub fn predictor(fit: &FitOptions) -> Result<ImagePredictor> {
    if fit.deterministic {
        return Err(Error::invalid(
            "--deterministic",
            "is supported for tables only: image training is seeded, but how far it gets depends on the time limit",
        ));
    }
    if fit.search_rows.is_some() {
        return Err(Error::invalid(
            "--search-rows",
            "is supported for tables only: image training uses every image",
        ));
    }
    if fit.bag_folds.is_some() {
        return Err(Error::invalid(
            "--bag-folds",
            "is supported for tables only: image models are chosen on their validation part",
        ));
    }
    if fit.parallel_trials.is_some() {
        return Err(Error::invalid(
            "--parallel-trials",
            "is supported for tables only: image trials share the backbone's cached features",
        ));
    }
    if fit.stack.is_some() {
        return Err(Error::invalid(
            "--stack",
            "is supported for tables only: image models are not bagged",
        ));
    }
    if !fit.families.is_empty() {
        return Err(Error::invalid(
            "--family",
            "is supported for tables only: image training searches backbones (--backbone)",
        ));
    }
    let device: exeml::core::Device = fit.device.parse()?;
    device.check_available()?;
    let backbones = fit
        .backbones
        .iter()
        .map(|b| b.parse::<BackboneKind>())
        .collect::<Result<Vec<_>>>()?;
    let weights = fit
        .weights
        .iter()
        .map(|spec| {
            let (name, path) = spec.split_once('=').ok_or_else(|| {
                Error::invalid("--weights", format!("`{spec}`: expected BACKBONE=PATH"))
            })?;
            Ok((name.parse::<BackboneKind>()?, PathBuf::from(path)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ImagePredictor {
        time_limit: parse_duration(&fit.time_limit)?,
        preference: fit.preference.parse()?,
        seed: fit.seed,
        train_ratio: fit.train_ratio,
        device,
        backbones,
        resolution: fit.resolution,
        weights,
        format: ImportFormat::Auto,
        fine_tune: !fit.no_fine_tune,
        ensemble: !fit.no_ensemble,
        fine_tune_arms: fit
            .fine_tune_arms
            .as_deref()
            .map(read_fine_tune_arms)
            .transpose()?,
        warm_start: None,
        constraints: fit.constraints()?,
        refit_full: fit.refit_full,
    })
}

/// The arms of a `--fine-tune-arms` file (see [`FineTuneParams::list_from_json`]); errors name
/// the file.
fn read_fine_tune_arms(path: &Path) -> Result<Vec<FineTuneParams>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    FineTuneParams::list_from_json(&text).map_err(|e| Error::data(path, e.to_string()))
}

/// `exeml train --task image`.
pub fn train(args: &TrainArgs) -> Result<()> {
    exeml::allocator::keep_freed_memory();
    let mut predictor = predictor(&args.fit)?;
    if let Some(parent) = &args.from {
        let parent_model = ImageModel::load_on(parent, predictor.device)?;
        predictor = predictor.warm_start(parent.display().to_string(), &parent_model);
    }
    let data = ImageDataset::import(&args.data, ImportFormat::Auto)?;
    let budget = Budget::new(predictor.time_limit);
    let reporter = Reporter::new();
    crate::interrupt::cancel_on_ctrl_c(&budget);
    let model = predictor.fit(&data, &budget, &reporter);
    reporter.finish();
    let model = model?;
    crate::interrupt::report_if_interrupted(&budget);
    for finding in &model.manifest.checks.findings {
        eprintln!("{finding}");
    }
    model.save(&args.out)?;
    // The white box: every configuration tried, with its score and why it stopped.
    println!(
        "search:\n{}",
        exeml::report::image_leaderboard_text(&model.manifest.leaderboard)
    );
    println!("model: {}", model.summary());
    println!("saved: {}", args.out.display());
    Ok(())
}

/// `exeml predict` with an image model: every image under `--data`.
pub fn predict(args: &PredictArgs) -> Result<()> {
    let (model, data, output) = (&args.model, &args.data, &args.output);
    run_folder(
        model,
        data,
        output,
        args.resume,
        predict_folder,
        "predictions",
    )
}

/// `exeml embed`: the embedding of every image under `--data`.
pub fn embed(args: &EmbedArgs) -> Result<()> {
    let (model, data, output) = (&args.model, &args.data, &args.output);
    run_folder(model, data, output, args.resume, embed_folder, "embeddings")
}

/// The library's signature of a checkpointed run over a folder of images.
type FolderJob = fn(
    &ImageModel,
    &Path,
    &Path,
    &ImageBatchOptions,
    &dyn exeml::core::Progress,
) -> Result<ImageBatchReport>;

/// Run `job` with the model folder `model` over the images under `data` into `output`
/// (resuming if asked), with a progress bar, and say what it wrote (`what`: its rows).
fn run_folder(
    model: &Path,
    data: &Path,
    output: &Path,
    resume: bool,
    job: FolderJob,
    what: &str,
) -> Result<()> {
    exeml::allocator::keep_freed_memory();
    let model = ImageModel::load(model)?;
    let reporter = Reporter::new();
    let options = ImageBatchOptions {
        resume,
        ..ImageBatchOptions::default()
    };
    let report = job(&model, data, output, &options, &reporter);
    reporter.finish();
    print_folder_report(&report?, what, output);
    Ok(())
}

/// What a folder run wrote (`what`: its rows) and where the unreadable images are listed.
fn print_folder_report(report: &ImageBatchReport, what: &str, output: &Path) {
    if report.resumed_at > 0 {
        println!("resumed after {} images", report.resumed_at);
    }
    println!("wrote {} {what} to {}", report.predicted, output.display());
    if let Some(errors) = &report.errors_file {
        eprintln!(
            "skipped {} unreadable images; each is listed with its reason in {}",
            report.skipped,
            errors.display()
        );
    }
}

/// `exeml evaluate` with an image model on a labelled folder.
pub fn evaluate(args: &EvaluateArgs) -> Result<()> {
    exeml::allocator::keep_freed_memory();
    let model = ImageModel::load(&args.model)?;
    let data = ImageDataset::import(&args.data, ImportFormat::Auto)?;
    for skipped in &data.skipped {
        eprintln!("skipped {}: {}", skipped.path.display(), skipped.reason);
    }
    let evaluation = model.evaluate(&data)?;
    if args.json {
        let text = serde_json::to_string(&evaluation)
            .map_err(|e| Error::data(&args.model, e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", exeml::report::image_evaluation_text(&evaluation));
    }
    Ok(())
}

/// `exeml speed` with an image model: the images under `--data`.
pub fn speed(
    args: &crate::args::SpeedArgs,
    options: exeml::core::SpeedOptions,
) -> Result<exeml::core::SpeedReport> {
    let model = ImageModel::load(&args.model)?;
    let paths: Vec<std::path::PathBuf> = exeml::vision::data::list_images(&args.data)?
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    if paths.is_empty() {
        return Err(Error::data(&args.data, "no JPG, PNG or BMP image found"));
    }
    model.speed(&paths, options)
}
