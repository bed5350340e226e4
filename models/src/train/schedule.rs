//! Learning-rate schedules: linear warmup, then constant, cosine or step decay.

use serde::{Deserialize, Serialize};

/// How the learning rate decays after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decay {
    /// Constant learning rate.
    Constant,
    /// `lr * (min + (1 - min) * (1 + cos(pi * p)) / 2)` with p the fraction of post-warmup steps
    /// done, decaying to `min_ratio * lr` at the last step.
    Cosine {
        /// Final learning rate as a fraction of the peak.
        min_ratio: f64,
    },
    /// `lr * gamma^floor(step / every)`.
    Step {
        /// Steps between decays.
        every: u64,
        /// Factor applied at each decay.
        gamma: f64,
    },
}

/// A learning-rate schedule over `total` steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of linear warmup from `lr / warmup` to `lr`.
    pub warmup: u64,
    /// The decay after warmup.
    pub decay: Decay,
}

impl Schedule {
    /// The learning rate at 0-based `step` of `total`.
    pub fn lr_at(&self, step: u64, total: u64) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        match self.decay {
            Decay::Constant => self.lr,
            Decay::Cosine { min_ratio } => {
                let span = total.saturating_sub(self.warmup).max(1) as f64;
                let p = ((step - self.warmup) as f64 / span).min(1.0);
                self.lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
            }
            Decay::Step { every, gamma } => self.lr * gamma.powi(((step - self.warmup) / every.max(1)) as i32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_the_floor() {
        let s = Schedule {
            lr: 1.0,
            warmup: 10,
            decay: Decay::Cosine { min_ratio: 0.1 },
        };
        assert!((s.lr_at(0, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(9, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(10, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr_at(110, 110) - 0.1).abs() < 1e-12);
        assert!(s.lr_at(60, 110) < 1.0 && s.lr_at(60, 110) > 0.1);
    }

    #[test]
    fn step_decay_halves_every_period() {
        let s = Schedule {
            lr: 1.0,
            warmup: 0,
            decay: Decay::Step { every: 5, gamma: 0.5 },
        };
        assert_eq!(s.lr_at(4, 100), 1.0);
        assert_eq!(s.lr_at(5, 100), 0.5);
        assert_eq!(s.lr_at(12, 100), 0.25);
    }
}
