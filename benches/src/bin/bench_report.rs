//! `bench_report`: prints the Markdown tables of `BENCHMARKS.md` from criterion's results.
//!
//! ```text
//! cargo bench -p exactflow-benches                          # logdet, coupling, gemm
//! cargo run -p exactflow-benches --release --bin bench_report [-- [--all] [DIR]]
//! ```
//!
//! `DIR` is criterion's output folder; by default `$CRITERION_HOME`, else
//! `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion` (where `cargo bench`
//! wrote it). `--all` appends every measurement found. The report goes to stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use exactflow_benches::report::{Machine, Results, criterion_dir, render};

/// Parses the arguments, loads the results and prints the report; exit code 1 when no result
/// was found or the folder could not be read, 2 for a bad argument.
fn main() -> ExitCode {
    let mut all = false;
    let mut dir: Option<PathBuf> = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--all" => all = true,
            "-h" | "--help" => {
                println!(
                    "usage: bench_report [--all] [CRITERION_DIR]\n(default dir: {})",
                    criterion_dir().display()
                );
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => {
                eprintln!("bench_report: unknown option {a} (expected --all, --help or a folder)");
                return ExitCode::from(2);
            }
            a => dir = Some(PathBuf::from(a)),
        }
    }
    let dir = dir.unwrap_or_else(criterion_dir);
    let results = match Results::load(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "bench_report: cannot read criterion results in {}: {e}\n\
                 (run `cargo bench -p exactflow-benches` first, with the same CARGO_TARGET_DIR)",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if results.is_empty() {
        eprintln!("bench_report: no benchmark results under {}", dir.display());
        return ExitCode::FAILURE;
    }
    print!("{}", render(&results, &Machine::detect(), &dir, all));
    ExitCode::SUCCESS
}
