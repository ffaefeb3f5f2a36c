//! The `exeml` command: a thin layer over the library crates (see docs/cli.md).

mod args;
mod demo;
mod image;
mod interrupt;
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
    // Before any thread exists (it sets an environment variable candle reads once).
    exeml::vision::nn::shorten_candle_spins();
    let cli = args::Cli::parse();
    // Not for the server: a client that hangs up must cost one connection, not the process.
    if !matches!(cli.command, args::Command::Serve(_)) {
        restore_default_sigpipe();
    }
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

/// End quietly, like other Unix tools, when the reader of stdout goes away (`exeml evaluate
/// --json | head`). Rust ignores SIGPIPE, so `println!` panicked on the broken pipe instead.
#[cfg(unix)]
#[allow(unsafe_code)]
fn restore_default_sigpipe() {
    // SAFETY: called at the start of `main`, before any other thread exists; it only resets the
    // signal's disposition to the system default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_default_sigpipe() {}
