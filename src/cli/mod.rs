//! Argument parsing and dispatch. Every failure ends as one line `error: ...` on stderr and a
//! non-zero exit code (2 for usage errors, 1 for everything else); nothing panics on user input.

mod args;
mod audit;
mod bench;
mod certify;
mod eval;
mod logdet;
mod sample;
mod train;

use std::process::ExitCode;

use clap::Parser;

pub use args::{Cli, Command};

/// An error of a command: already worded for the user.
#[derive(Debug)]
pub struct CliError(pub String);

impl From<exactflow::Error> for CliError {
    fn from(e: exactflow::Error) -> Self {
        CliError(e.to_string())
    }
}

impl From<exactflow::kernels::Error> for CliError {
    fn from(e: exactflow::kernels::Error) -> Self {
        CliError(e.to_string())
    }
}

impl From<String> for CliError {
    fn from(s: String) -> Self {
        CliError(s)
    }
}

impl From<&str> for CliError {
    fn from(s: &str) -> Self {
        CliError(s.to_string())
    }
}

/// A command's result.
pub type CliResult<T> = std::result::Result<T, CliError>;

/// Parses the command line, runs the command and maps errors to exit codes.
pub fn main() -> ExitCode {
    // Training frees and reallocates the same large buffers every step; keeping them in the
    // process instead of page-faulting them in again is worth up to 1.5x (BENCHMARKS.md).
    exactflow::allocator::keep_freed_buffers();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // invariant: printing help to stdout; a closed pipe is not worth a panic.
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                let _ = e.print();
                return ExitCode::from(2);
            }
            eprintln!("{}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(msg)) => {
            eprintln!("error: {}", one_line(&msg));
            ExitCode::FAILURE
        }
    }
}

/// clap's multi-line messages folded into one line (the "For more information" hint dropped).
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(cli: Cli) -> CliResult<()> {
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Logdet(a) => logdet::run(a),
        Command::Bench(args::BenchCommand::Logdet(a)) => bench::run(a),
        Command::Audit(a) => audit::run(a),
    }
}

/// Writes `value` as pretty JSON to `path`, atomically.
fn write_json(path: &std::path::Path, value: &serde_json::Value) -> CliResult<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError(format!("JSON: {e}")))?;
    exactflow::models::atomic_write::write_atomic(path, format!("{text}\n").as_bytes())?;
    Ok(())
}
