//! The `exeml` command: a thin layer over the library crates (see docs/cli.md).

mod args;
mod demo;
mod image;
mod progress;
mod registry;
mod run;
mod serve;

use clap::Parser;

// mimalloc makes CNN training about 1.4x faster than the system allocator (ASSETS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match run::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the file and the problem (the CLI contract).
            let message = e.to_string().replace('\n', " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
