//! Certified log-likelihoods: per sample, an interval guaranteed to contain the exact `log p(x)`.
//!
//! # What "certified" means
//!
//! The *exact value* is what exact real arithmetic gives for the flow's formulas, applied to the
//! stored parameters and hyperparameters (each taken as the f64 number it is stored as, e.g. a
//! batch-norm epsilon of `1e-5` is the f64 nearest 1e-5) and to the given f64 input, with the
//! mathematical constants (pi in `ln(2 pi)`, `ln 2`, `ln K`) taken exactly. A *certified*
//! sample's interval contains that value: the flow ran on [`Interval`]s (`Flow::to_interval`),
//! every operation of which encloses its exact result, and no comparison or domain check was
//! left undecided on the way (see [`exactflow_kernels::interval`]). It assumes IEEE 754 binary64
//! arithmetic rounded to nearest without flush-to-zero, and the error bound of the elementary
//! functions' libm stated in maryada's conformance notes.
//!
//! A sample is *undecided* when the interval evaluation met a branch it could not decide (an
//! interval straddling 0 at a ReLU, a spline's bin edge, the domain of a logarithm): its interval
//! carries no guarantee, and the report names the operation and the stage. A sample *fails*
//! when its enclosure overflows.
//!
//! # Cost
//!
//! A batch is evaluated on intervals once; only when that batch left something undecided, or
//! overflowed, are its samples evaluated one by one to say which.

use exactflow_kernels::Interval;
use exactflow_kernels::interval::{Decisions, watch};
use exactflow_layers::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::eval::{EVAL_NOISE_SEED, model_context, model_input};
use crate::flow::Flow;

/// One sample's certified `log p(x)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Certified {
    /// The exact value lies in this interval.
    Enclosed(Interval),
    /// Interval arithmetic could not decide a branch (or a domain) for this sample: no
    /// guarantee. The interval it computed is kept for reference.
    Undecided {
        /// What was undecided, where.
        decisions: Decisions,
        /// The interval computed anyway (not a certificate).
        interval: Interval,
    },
    /// The enclosure could not be computed (it overflowed, or a stage failed on intervals).
    Failed(String),
}

impl Certified {
    /// The certified enclosure, if any.
    pub fn enclosure(&self) -> Option<Interval> {
        match self {
            Certified::Enclosed(i) => Some(*i),
            _ => None,
        }
    }

    /// Why the sample is not certified, in one line (`None` when it is).
    pub fn reason(&self) -> Option<String> {
        match self {
            Certified::Enclosed(_) => None,
            Certified::Undecided { decisions, .. } => Some(match decisions.first.first() {
                Some(u) if decisions.count > 1 => format!("{u} (and {} more)", decisions.count - 1),
                Some(u) => u.to_string(),
                None => "undecided".to_string(),
            }),
            Certified::Failed(why) => Some(why.clone()),
        }
    }
}

/// Whether an error of a whole batch may be one sample's (an overflow) rather than the
/// caller's (a wrong shape or context).
fn per_sample_error(e: &Error) -> bool {
    matches!(e, Error::NonFinite { .. })
}

/// `log p(x)` of every sample of `x`, certified (see the module documentation).
///
/// `flow` is an interval flow ([`Flow::to_interval`]); `x` and `context` are f64, taken exactly.
///
/// # Errors
/// A batch of the wrong shape or with NaN/inf; a context that does not fit the flow. A sample
/// that cannot be certified is not an error: see [`Certified`].
pub fn certify_log_prob(
    flow: &Flow<Interval>,
    x: &Tensor<f64>,
    context: Option<&Tensor<f64>>,
) -> Result<Vec<Certified>> {
    let xi: Tensor<Interval> = x.cast();
    let ci: Option<Tensor<Interval>> = context.map(|c| c.cast());
    let (batch, decisions) = watch(|| flow.log_prob(&xi, ci.as_ref()));
    match batch {
        Ok(lp) if decisions.all_decided() => return Ok(lp.into_iter().map(Certified::Enclosed).collect()),
        Err(e) if !per_sample_error(&e) => return Err(e),
        _ => {}
    }
    (0..x.batch())
        .map(|i| {
            let xs = x.gather_batch(&[i])?.cast::<Interval>();
            let cs = ci.as_ref().map(|c| c.gather_batch(&[i])).transpose()?;
            let (r, d) = watch(|| flow.log_prob(&xs, cs.as_ref()));
            Ok(match r {
                Ok(lp) if d.all_decided() => Certified::Enclosed(lp[0]),
                Ok(lp) => Certified::Undecided {
                    decisions: d,
                    interval: lp[0],
                },
                Err(e) => Certified::Failed(e.to_string()),
            })
        })
        .collect()
}

/// One sample of a certified evaluation of a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct CertifiedSample {
    /// The data log-likelihood (nats; `log p(u) - D ln K` for discrete data, as in
    /// [`crate::evaluate`]), certified or not.
    pub log_likelihood: Certified,
    /// Bits per dimension `-(log-likelihood) / (D ln 2)` for discrete data, enclosed whenever the
    /// log-likelihood is.
    pub bits_per_dim: Option<Interval>,
}

/// `log p(u)` turned into the data log-likelihood and bits/dim, in interval arithmetic (the
/// constants `ln K` and `ln 2` enclosed).
fn data_terms(lp: Interval, dim: usize, levels: Option<u32>) -> (Interval, Option<Interval>) {
    let d = Interval::point(dim as f64);
    match levels {
        Some(k) => {
            let ll = lp - d * Interval::point(f64::from(k)).ln();
            let bpd = -ll / (d * Interval::point(2.0).ln());
            (ll, Some(bpd))
        }
        None => (lp, None),
    }
}

/// Certified per-sample log-likelihoods of a data set, in batches of `batch`, on the very inputs
/// [`crate::evaluate`] scores (discrete data dequantized with the same fixed seed). `progress` is
/// called with the number of samples done after each batch.
///
/// # Errors
/// Data of the wrong shape. Samples that cannot be certified are reported in the result.
pub fn certify_dataset(
    flow: &Flow<f64>,
    ds: &Dataset,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<CertifiedSample>> {
    let iflow = flow.to_interval();
    let n = ds.data.batch();
    let dim = ds.data.sample_len();
    let mut rng = ChaCha8Rng::seed_from_u64(EVAL_NOISE_SEED);
    let mut out = Vec::with_capacity(n);
    let idx: Vec<usize> = (0..n).collect();
    for chunk in idx.chunks(batch.max(1)) {
        let x = model_input::<f64>(ds, chunk, &mut rng)?;
        let context = model_context::<f64>(ds, chunk)?;
        for c in certify_log_prob(&iflow, &x, context.as_ref())? {
            out.push(match c {
                Certified::Enclosed(lp) => {
                    let (ll, bpd) = data_terms(lp, dim, ds.levels);
                    CertifiedSample {
                        log_likelihood: Certified::Enclosed(ll),
                        bits_per_dim: bpd,
                    }
                }
                Certified::Undecided { decisions, interval } => CertifiedSample {
                    log_likelihood: Certified::Undecided {
                        decisions,
                        interval: data_terms(interval, dim, ds.levels).0,
                    },
                    bits_per_dim: None,
                },
                failed => CertifiedSample {
                    log_likelihood: failed,
                    bits_per_dim: None,
                },
            });
        }
        progress(out.len());
    }
    Ok(out)
}

/// The summary of a certified evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct CertifiedSummary {
    /// Samples evaluated.
    pub samples: usize,
    /// Samples whose log-likelihood is certified.
    pub certified: usize,
    /// The largest relative width `(hi - lo) / min |x|` of a certified log-likelihood.
    pub max_relative_width: f64,
    /// The median relative width over the certified samples.
    pub median_relative_width: f64,
    /// Every reason a sample was not certified, with how many samples it stopped (most common
    /// first). A reason is the operation and the stage, without the operands.
    pub uncertified: Vec<(String, usize)>,
}

/// Summarizes certified samples: widths over the certified ones, reasons over the others.
pub fn summarize(samples: &[CertifiedSample]) -> CertifiedSummary {
    let mut widths: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.log_likelihood.enclosure())
        .map(|i| i.relative_width())
        .collect();
    widths.sort_by(f64::total_cmp);
    let median = match widths.len() {
        0 => f64::NAN,
        m if m % 2 == 1 => widths[m / 2],
        m => 0.5 * (widths[m / 2 - 1] + widths[m / 2]),
    };
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for s in samples {
        let key = match &s.log_likelihood {
            Certified::Enclosed(_) => continue,
            Certified::Undecided { decisions, .. } => match decisions.first.first() {
                Some(u) => match &u.scope {
                    Some(scope) => format!("{scope}: {} undecided", u.op),
                    None => format!("{} undecided", u.op),
                },
                None => "undecided".to_string(),
            },
            Certified::Failed(why) => why.clone(),
        };
        match reasons.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += 1,
            None => reasons.push((key, 1)),
        }
    }
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    CertifiedSummary {
        samples: samples.len(),
        certified: widths.len(),
        max_relative_width: widths.last().copied().unwrap_or(f64::NAN),
        median_relative_width: median,
        uncertified: reasons,
    }
}
