//! Training progress on stderr: an indicatif bar on a terminal (step, loss, bits/dim, steps/s,
//! ETA), one line per epoch otherwise (logs stay readable when stderr is a file or a pipe).
//!
//! The command line's `train` and the Python package's `exactflow.train` show the same bar.

use std::io::IsTerminal;

use exactflow_models::train::{EpochReport, Observer, StepReport};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The training observer of the command line and the Python package: an [`Observer`] that draws
/// the bar (or prints the epoch lines).
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar of `total` steps when stderr is a terminal, plain epoch lines otherwise.
    pub fn new(total: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar: Some(bar) }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Observer for Progress {
    fn on_step(&mut self, r: &StepReport) {
        if let Some(b) = &self.bar {
            b.set_length(r.total_steps);
            b.set_position(r.step);
            let bpd = r.bits_per_dim.map(|v| format!("  {v:.3} bits/dim")).unwrap_or_default();
            b.set_message(format!("loss {:.4}{bpd}  {:.1} steps/s", r.loss, r.steps_per_sec));
        }
    }

    fn on_epoch(&mut self, r: &EpochReport) {
        let val = match (r.val_nll, r.val_bits_per_dim) {
            (Some(v), Some(b)) => format!(", validation NLL {v:.4} ({b:.4} bits/dim)"),
            (Some(v), None) => format!(", validation NLL {v:.4}"),
            _ => String::new(),
        };
        let line = format!(
            "epoch {} (step {}): train NLL {:.4}{val}{}",
            r.epoch + 1,
            r.step,
            r.train_nll,
            if r.improved { " *" } else { "" }
        );
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}
