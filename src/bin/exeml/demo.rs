//! `exeml demo`: the whole workflow on the built-in churn table, printing each step.

use crate::args::DemoArgs;
use crate::progress::Reporter;
use crate::registry::open_store;
use exeml::core::budget::parse_duration;
use exeml::core::{Budget, Error, Result, SplitSpec, TaskKind};
use exeml::demo_data::churn_csv;
use exeml::report::{evaluation_text, leaderboard_text};
use exeml::tabular::{HeaderMode, ReadOptions, Table};
use exeml::{Project, TabularPredictor};
use std::path::PathBuf;

pub fn run(workspace: Option<PathBuf>, args: DemoArgs) -> Result<()> {
    let limit = parse_duration(&args.time_limit)?;
    let store = open_store(workspace)?;
    println!("workspace: {}", store.root().display());
    let scratch = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let train_csv = scratch.path().join("churn.csv");
    let new_csv = scratch.path().join("churn_new.csv");
    std::fs::write(&train_csv, churn_csv(2000, 1)).map_err(|e| Error::io(&train_csv, e))?;
    std::fs::write(&new_csv, churn_csv(500, 2)).map_err(|e| Error::io(&new_csv, e))?;

    println!("\n1. project");
    let project = Project::open_or_create(store, &args.project, TaskKind::Tabular)?;
    println!("   project `{}` (tabular)", project.name());

    println!("\n2. import data");
    let table = project.import_table(&train_csv, Some("churn"), HeaderMode::Auto)?;
    println!(
        "   imported churn.csv: {} rows × {} columns (a generated customer table with missing values, dates, an id and a constant column)",
        table.n_rows(),
        table.columns.len()
    );

    println!("\n3. check data");
    let report = project.check()?;
    for finding in &report.findings {
        println!("   {finding}");
    }

    println!("\n4. publish dataset version");
    let version = project.publish(SplitSpec::default())?;
    println!(
        "   {}: {} rows, {} train / {} validation, hash {}",
        version.name,
        version.n_samples,
        version.n_train,
        version.n_validation,
        &version.content_hash[..12.min(version.content_hash.len())]
    );

    println!("\n5. train (time limit {:.0} s)", limit.as_secs_f64());
    let predictor = TabularPredictor {
        time_limit: limit,
        ..TabularPredictor::default()
    };
    let reporter = Reporter::new();
    let registered = project.train(
        Some(&version.name),
        &predictor,
        None,
        &Budget::new(limit),
        &reporter,
    )?;
    reporter.finish();
    let model = project.load_model(&registered.version)?;
    print!("{}", indent(&leaderboard_text(&model.leaderboard())));
    println!("   chosen: {}", model.summary());

    println!("\n6. model version");
    println!(
        "   registered {} (dataset {}) in {}",
        registered.version,
        version.name,
        registered.artifact_dir.display()
    );

    println!("\n7. evaluate on 500 new customers");
    let new_table = Table::read(&new_csv, ReadOptions::default())?;
    let evaluation = model.evaluate(&new_table)?;
    print!("{}", indent(&evaluation_text(&evaluation)));

    println!("\n8. predict");
    let predictions = model.predict(&new_table)?;
    for row in 0..5.min(predictions.len()) {
        println!(
            "   customer {}: {}",
            row,
            exeml::response::tabular_row(&predictions, row, None)
        );
    }
    println!(
        "\ndone: try `exeml model show --project {} {}`",
        project.name(),
        registered.version
    );
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}
