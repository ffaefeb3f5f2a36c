//! Single-row prediction latency of a saved table model, whole and per member: where a bagged
//! ensemble spends its time (feature pipelines vs models). A development tool for the latency
//! targets of docs/benchmarks.md.
//!
//! usage: tabular_latency MODEL_DIR DATA.csv [CALLS]
//!
//! Prints the median over CALLS (default 500) one-row predictions (rows taken in turn from
//! DATA.csv) of the whole model, then each member's pipeline transform and model prediction.

use exeml::tabular::ReadOptions;
use exeml::{Table, TabularModel};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_micros(calls: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut times: Vec<f64> = (0..calls)
        .map(|i| {
            let started = Instant::now();
            f(i);
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_dir, data, rest @ ..] = args.as_slice() else {
        return Err("usage: tabular_latency MODEL_DIR DATA.csv [CALLS]".into());
    };
    let calls: usize = rest.first().map_or(Ok(500), |c| c.parse())?;
    let model = TabularModel::load(model_dir.as_ref())?;
    let table = Table::read(data.as_ref(), ReadOptions::default())?;
    let n = table.n_rows().clamp(1, 50);
    let rows: Vec<Table> = (0..n).map(|r| table.take(&[r])).collect();
    let whole = median_micros(calls, |i| {
        std::hint::black_box(model.predict(&rows[i % n]).expect("predict"));
    });
    println!(
        "whole model: {whole:.1} µs ({} members)",
        model.members().len()
    );
    for (m, member) in model.members().iter().enumerate() {
        let pipeline = &model.pipelines()[member.pipeline];
        let transform = median_micros(calls, |i| {
            std::hint::black_box(pipeline.transform(&rows[i % n]).expect("transform"));
        });
        // Each call predicts another row (one row again and again would flatter tree walks:
        // the branch predictor learns its path).
        let xs = rows
            .iter()
            .map(|row| pipeline.transform(row))
            .collect::<Result<Vec<_>, _>>()?;
        let x = &xs[0];
        let predict = median_micros(calls, |i| {
            std::hint::black_box(member.estimator.predict(&xs[i % n]));
        });
        println!(
            "member {m} {}: transform {transform:.1} µs, predict {predict:.1} µs ({} features)",
            member.estimator.family(),
            x.cols
        );
    }
    Ok(())
}
