//! [`DataSpec`]: a data source named by a string, loaded into seeded train/validation/test splits.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

use super::random::derive_seed;
use super::sim::SimKind;
use super::split::{Splits, split_train_val, split_train_val_test};
use super::{cifar10, csv, digits, mnist, npy, toy};

/// Every accepted spelling, for error messages.
const VALID: &str = "moons, circles, 8gaussians, checkerboard, pinwheel, spirals, digits, digits-image, \
                     csv:PATH, npy:PATH, mnist:DIR, cifar10:DIR, sim:gaussian-linear, sim:gaussian-linear-10, \
                     sim:two-moons";

/// Fraction of the training data held out for validation by [`DataSpec::load`] when the source
/// has a fixed test set (digits, MNIST, CIFAR-10).
pub const VAL_FRACTION: f64 = 0.1;
/// Fractions of a user file (CSV, .npy) that [`DataSpec::load`] puts in validation and in test.
pub const FILE_HOLDOUT: f64 = 0.1;

/// One of the 2-D toy distributions of [`toy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToyKind {
    /// [`toy::moons`].
    Moons,
    /// [`toy::circles`].
    Circles,
    /// [`toy::eight_gaussians`].
    EightGaussians,
    /// [`toy::checkerboard`].
    Checkerboard,
    /// [`toy::pinwheel`].
    Pinwheel,
    /// [`toy::spirals`].
    Spirals,
}

impl ToyKind {
    /// Every toy distribution.
    pub const ALL: [ToyKind; 6] = [
        ToyKind::Moons,
        ToyKind::Circles,
        ToyKind::EightGaussians,
        ToyKind::Checkerboard,
        ToyKind::Pinwheel,
        ToyKind::Spirals,
    ];

    /// The name used in specs and data-set names (`moons`, `8gaussians`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ToyKind::Moons => "moons",
            ToyKind::Circles => "circles",
            ToyKind::EightGaussians => "8gaussians",
            ToyKind::Checkerboard => "checkerboard",
            ToyKind::Pinwheel => "pinwheel",
            ToyKind::Spirals => "spirals",
        }
    }

    /// `n` samples from `seed` (see the generator's documentation).
    pub fn generate(self, n: usize, seed: u64) -> super::Dataset {
        match self {
            ToyKind::Moons => toy::moons(n, seed),
            ToyKind::Circles => toy::circles(n, seed),
            ToyKind::EightGaussians => toy::eight_gaussians(n, seed),
            ToyKind::Checkerboard => toy::checkerboard(n, seed),
            ToyKind::Pinwheel => toy::pinwheel(n, seed),
            ToyKind::Spirals => toy::spirals(n, seed),
        }
    }
}

/// A data source, as written on a command line or in a config:
///
/// | spec | source |
/// |---|---|
/// | `moons`, `circles`, `8gaussians`, `checkerboard`, `pinwheel`, `spirals` | [`toy`] generators |
/// | `digits`, `digits-image` | the embedded 8x8 digits, `[N, 64]` or `[N, 1, 8, 8]` ([`digits`]) |
/// | `csv:PATH` | a CSV file of numbers ([`csv::read`]) |
/// | `npy:PATH` | a 2-D or 4-D `.npy` array ([`npy::read`]) |
/// | `mnist:DIR` | MNIST IDX files ([`mnist::read_dir`]) |
/// | `cifar10:DIR` | CIFAR-10 binary batches ([`cifar10::read_dir`]) |
/// | `sim:gaussian-linear`, `sim:gaussian-linear-10`, `sim:two-moons` | pairs (theta, x) of a [`super::sim`] simulator: theta the data, x the context |
///
/// `Display` writes the spec back in this form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSpec {
    /// A toy distribution.
    Toy(ToyKind),
    /// The embedded digits; `image` selects `[N, 1, 8, 8]` over `[N, 64]`.
    Digits {
        /// Whether samples are 1x8x8 images rather than 64-vectors.
        image: bool,
    },
    /// A CSV file.
    Csv(PathBuf),
    /// A `.npy` file.
    Npy(PathBuf),
    /// A directory of MNIST IDX files.
    Mnist(PathBuf),
    /// A directory of CIFAR-10 binary batches.
    Cifar10(PathBuf),
    /// A simulator's pairs (theta as the data, x as the context).
    Sim(SimKind),
}

impl FromStr for DataSpec {
    type Err = Error;

    /// Parses a spec (table in [`DataSpec`]); names are case-sensitive, `2spirals` is accepted for
    /// `spirals`.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(t) = ToyKind::ALL.iter().find(|t| t.name() == s) {
            return Ok(DataSpec::Toy(*t));
        }
        if s == "2spirals" {
            return Ok(DataSpec::Toy(ToyKind::Spirals));
        }
        if let Some(k) = s
            .strip_prefix("sim:")
            .and_then(|name| SimKind::ALL.iter().find(|k| k.name() == name))
        {
            return Ok(DataSpec::Sim(*k));
        }
        match s {
            "digits" => return Ok(DataSpec::Digits { image: false }),
            "digits-image" => return Ok(DataSpec::Digits { image: true }),
            _ => {}
        }
        if let Some((kind, path)) = s.split_once(':') {
            let make: Option<fn(PathBuf) -> DataSpec> = match kind {
                "csv" => Some(DataSpec::Csv),
                "npy" => Some(DataSpec::Npy),
                "mnist" => Some(DataSpec::Mnist),
                "cifar10" => Some(DataSpec::Cifar10),
                _ => None,
            };
            if let Some(make) = make {
                if path.is_empty() {
                    return Err(Error::invalid(
                        "DataSpec::from_str",
                        "data spec",
                        format!("'{s}' has an empty path: write {kind}:PATH"),
                    ));
                }
                return Ok(make(PathBuf::from(path)));
            }
        }
        Err(Error::invalid(
            "DataSpec::from_str",
            "data spec",
            format!("unknown data set '{s}': expected one of {VALID}"),
        ))
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Toy(t) => f.write_str(t.name()),
            DataSpec::Digits { image: false } => f.write_str("digits"),
            DataSpec::Digits { image: true } => f.write_str("digits-image"),
            DataSpec::Csv(p) => write!(f, "csv:{}", p.display()),
            DataSpec::Npy(p) => write!(f, "npy:{}", p.display()),
            DataSpec::Mnist(p) => write!(f, "mnist:{}", p.display()),
            DataSpec::Cifar10(p) => write!(f, "cifar10:{}", p.display()),
            DataSpec::Sim(k) => write!(f, "sim:{}", k.name()),
        }
    }
}

/// Training points drawn from a toy distribution when the caller does not say
/// ([`DataSpec::default_samples`]); validation and test get a quarter each.
pub const DEFAULT_TOY_SAMPLES: usize = 20_000;

/// Training pairs drawn from a simulator when the caller does not say
/// ([`DataSpec::default_samples`]); validation and test get a quarter each.
///
/// Ten times the toy default: a default run (2000 steps of 512) visits about a million pairs,
/// so with 200,000 it sees each pair about 5 times. With 20,000 (about 50 times each) the
/// default NSF memorized the pairs of the 10-D linear-Gaussian task: its training NLL fell below
/// the exact posterior's entropy and its exact-posterior KL stayed at 0.44 nats, against 0.11
/// with 200,000 (BENCHMARKS.md). Simulating is cheap next to training, so the default
/// spends the budget on data.
pub const DEFAULT_SIM_PAIRS: usize = 200_000;

impl DataSpec {
    /// The number of training samples [`DataSpec::load`] draws when the caller gives none:
    /// [`DEFAULT_SIM_PAIRS`] for a simulator, [`DEFAULT_TOY_SAMPLES`] otherwise (only toy and
    /// simulator sources use it).
    pub fn default_samples(&self) -> usize {
        match self {
            DataSpec::Sim(_) => DEFAULT_SIM_PAIRS,
            _ => DEFAULT_TOY_SAMPLES,
        }
    }

    /// Loads the source as seeded train / validation / test splits:
    ///
    /// - toy: three independent samples, `n_toy` training and `max(1, n_toy / 4)` validation and
    ///   test points, generated from `derive_seed(seed, 1)`, `derive_seed(seed, 2)` and
    ///   `derive_seed(seed, 3)`;
    /// - digits: the fixed 359-image test split; the 1438 training images split by
    ///   [`split_train_val`] with [`VAL_FRACTION`] = 10% (144) for validation;
    /// - `csv:` and `npy:`: a seeded 80/10/10 split ([`split_train_val_test`]);
    /// - `mnist:` and `cifar10:`: the official test set; the training set split by
    ///   [`split_train_val`] with 10% for validation.
    ///
    /// - `sim:`: as toy sources, `n_toy` training pairs and `max(1, n_toy / 4)` validation and
    ///   test pairs from the same derived seeds.
    ///
    /// `n_toy` is used by toy and simulator sources only.
    ///
    /// # Errors
    /// [`Error::Config`] when `n_toy` is 0 or above [`toy::MAX_SAMPLES`] for a toy source; every
    /// error of the underlying reader ([`Error::Io`], [`Error::Format`]); [`exactflow_kernels::Error::InvalidArgument`]
    /// when a file has too few rows to split.
    pub fn load(&self, seed: u64, n_toy: usize) -> Result<Splits> {
        match self {
            DataSpec::Toy(t) => {
                if n_toy == 0 || n_toy > toy::MAX_SAMPLES {
                    return Err(Error::Config(format!(
                        "toy data set {}: expected 1..={} training samples, found {n_toy}",
                        t.name(),
                        toy::MAX_SAMPLES
                    )));
                }
                let n_eval = (n_toy / 4).max(1);
                Ok(Splits {
                    train: t.generate(n_toy, derive_seed(seed, 1)),
                    val: t.generate(n_eval, derive_seed(seed, 2)),
                    test: t.generate(n_eval, derive_seed(seed, 3)),
                })
            }
            DataSpec::Sim(k) => {
                let n_eval = (n_toy / 4).max(1);
                Ok(Splits {
                    train: k.simulate(n_toy, derive_seed(seed, 1))?,
                    val: k.simulate(n_eval, derive_seed(seed, 2))?,
                    test: k.simulate(n_eval, derive_seed(seed, 3))?,
                })
            }
            DataSpec::Digits { image } => {
                let (train, test) = digits::load(*image)?;
                let (train, val) = split_train_val(&train, VAL_FRACTION, seed)?;
                Ok(Splits { train, val, test })
            }
            DataSpec::Csv(p) => split_train_val_test(&csv::read(p)?, FILE_HOLDOUT, FILE_HOLDOUT, seed),
            DataSpec::Npy(p) => split_train_val_test(&npy::read(p)?, FILE_HOLDOUT, FILE_HOLDOUT, seed),
            DataSpec::Mnist(d) => {
                let (train, test) = mnist::read_dir(d)?;
                let (train, val) = split_train_val(&train, VAL_FRACTION, seed)?;
                Ok(Splits { train, val, test })
            }
            DataSpec::Cifar10(d) => {
                let (train, test) = cifar10::read_dir(d)?;
                let (train, val) = split_train_val(&train, VAL_FRACTION, seed)?;
                Ok(Splits { train, val, test })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulators_default_to_ten_times_the_toy_samples() {
        let sim: DataSpec = "sim:gaussian-linear".parse().expect("spec");
        assert_eq!(sim.default_samples(), DEFAULT_SIM_PAIRS);
        assert_eq!(DEFAULT_SIM_PAIRS, 10 * DEFAULT_TOY_SAMPLES);
        for other in ["moons", "digits", "csv:x.csv"] {
            let spec: DataSpec = other.parse().expect("spec");
            assert_eq!(spec.default_samples(), DEFAULT_TOY_SAMPLES, "{other}");
        }
        let splits = sim.load(0, sim.default_samples()).expect("splits");
        assert_eq!(
            (splits.train.len(), splits.val.len(), splits.test.len()),
            (200_000, 50_000, 50_000)
        );
    }

    #[test]
    fn parses_and_displays_every_spec() {
        for s in [
            "moons",
            "circles",
            "8gaussians",
            "checkerboard",
            "pinwheel",
            "spirals",
            "digits",
            "digits-image",
            "csv:/tmp/a.csv",
            "npy:rel/b.npy",
            "mnist:/data/mnist",
            "cifar10:C:/cifar",
            "sim:gaussian-linear",
            "sim:gaussian-linear-10",
            "sim:two-moons",
        ] {
            let spec: DataSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        assert_eq!("2spirals".parse::<DataSpec>().unwrap(), DataSpec::Toy(ToyKind::Spirals));
        assert_eq!(" moons ".parse::<DataSpec>().unwrap(), DataSpec::Toy(ToyKind::Moons));
        assert_eq!(
            "cifar10:C:/cifar".parse::<DataSpec>().unwrap(),
            DataSpec::Cifar10(PathBuf::from("C:/cifar"))
        );
    }

    #[test]
    fn rejects_unknown_specs_listing_valid_ones() {
        for s in ["", "moon", "MNIST:/x", "csv:", "svhn:/x", "digits-images"] {
            let e = s.parse::<DataSpec>().unwrap_err().to_string();
            assert!(e.contains(s), "{e}");
            if s != "csv:" {
                assert!(e.contains("8gaussians") && e.contains("cifar10:DIR"), "{e}");
            }
        }
    }

    #[test]
    fn toy_splits_are_seeded_and_distinct() {
        let spec: DataSpec = "moons".parse().unwrap();
        let a = spec.load(1, 400).unwrap();
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (400, 100, 100));
        assert_eq!(a, spec.load(1, 400).unwrap());
        assert_ne!(a.train, spec.load(2, 400).unwrap().train);
        assert_ne!(a.val.data, a.test.data);
        assert_ne!(a.train.data.slice_batch(0..100).unwrap(), a.val.data);
        assert!(matches!(spec.load(1, 0), Err(Error::Config(_))));
        assert_eq!(spec.load(1, 2).unwrap().val.len(), 1);
    }

    #[test]
    fn digits_splits() {
        let s = DataSpec::Digits { image: true }.load(0, 0).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (1294, 144, 359));
        assert_eq!(s.train.sample_shape(), &[1, 8, 8]);
        assert_eq!(s.val.levels, Some(17));
        let t = DataSpec::Digits { image: true }.load(1, 0).unwrap();
        assert_eq!(s.test, t.test, "fixed test split");
        assert_ne!(s.val, t.val, "seeded validation split");
    }

    #[test]
    fn file_splits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.csv");
        let text: String = (0..50).map(|i| format!("{i},{}\n", i * 2)).collect();
        std::fs::write(&p, format!("a,b\n{text}")).unwrap();
        let s = DataSpec::Csv(p.clone()).load(3, 0).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (40, 5, 5));
        assert_eq!(s.train.name, "x");
        let x = exactflow_layers::Tensor::from_fn(&[20, 1, 2, 2], |k| (k % 256) as f64).unwrap();
        let q = dir.path().join("x.npy");
        npy::write_f64(&q, &x).unwrap();
        let s = DataSpec::Npy(q).load(3, 0).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (16, 2, 2));
        assert!(DataSpec::Csv(dir.path().join("absent.csv")).load(0, 0).is_err());
        assert!(matches!(
            DataSpec::Mnist(dir.path().to_path_buf()).load(0, 0),
            Err(Error::Io { .. })
        ));
        assert!(matches!(
            DataSpec::Cifar10(dir.path().to_path_buf()).load(0, 0),
            Err(Error::Io { .. })
        ));
    }
}
