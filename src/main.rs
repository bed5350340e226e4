//! The `exactflow` command line: train, evaluate and sample flows; log-determinants of matrix
//! files; structured-against-dense log-det benchmarks. Run `exactflow --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
