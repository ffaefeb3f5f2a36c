//! The `exeml` command: a thin layer over the library crates (see docs/cli.md).

mod args;
mod demo;
mod progress;
mod registry;
mod run;
mod serve;

use clap::Parser;
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
