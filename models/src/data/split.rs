//! Seeded train / validation / test splits.

use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Dataset;
use super::random::{derive_seed, permutation};

/// Tag mixed into the seed of split permutations, so that they never share a stream with
/// [`super::epoch_order`] or the toy generators for the same user seed.
const SPLIT_TAG: u64 = 0x5350_4c49_5400_0000; // "SPLIT"

/// The three parts a model is trained, tuned and reported on.
#[derive(Clone, Debug, PartialEq)]
pub struct Splits {
    /// Training samples.
    pub train: Dataset,
    /// Validation samples (early stopping, model selection).
    pub val: Dataset,
    /// Held-out test samples (the reported numbers).
    pub test: Dataset,
}

fn check_fraction(what: &'static str, f: f64) -> Result<()> {
    if !(f.is_finite() && (0.0..1.0).contains(&f)) {
        return Err(Error::invalid(
            "split",
            what,
            format!("expected a fraction in [0, 1), found {f}"),
        ));
    }
    Ok(())
}

/// The number of samples a fraction `f > 0` of `n` gives: `round(f·n)`, at least 1.
fn part(n: usize, f: f64) -> usize {
    if f == 0.0 {
        0
    } else {
        ((f * n as f64).round() as usize).max(1)
    }
}

/// Sorted copies of consecutive chunks of a permutation (so each part keeps the data order).
fn chunks(perm: &[usize], sizes: &[usize]) -> Vec<Vec<usize>> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &s in sizes {
        let mut v = perm[start..start + s].to_vec();
        v.sort_unstable();
        out.push(v);
        start += s;
    }
    out
}

/// A seeded random split of `ds` into (train, validation): `round(val_fraction · N)` samples (at
/// least one when `val_fraction > 0`) go to validation, chosen by a permutation drawn from
/// `ChaCha8Rng::seed_from_u64(derive_seed(seed, SPLIT_TAG))`. Both parts keep the original order
/// and the labels.
///
/// # Errors
/// [`exactflow_kernels::Error::InvalidArgument`] when `val_fraction` is not in `[0, 1)` or the training part would be
/// empty.
pub fn split_train_val(ds: &Dataset, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    check_fraction("validation fraction", val_fraction)?;
    let n = ds.len();
    let n_val = part(n, val_fraction);
    if n_val >= n {
        return Err(Error::invalid(
            "split_train_val",
            "data set",
            format!(
                "{} has {n} samples: too few to hold out {val_fraction} for validation and keep a training set",
                ds.name
            ),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, SPLIT_TAG));
    let perm = permutation(&mut rng, n);
    let parts = chunks(&perm, &[n_val, n - n_val]);
    Ok((ds.subset(&parts[1])?, ds.subset(&parts[0])?))
}

/// A seeded random split of `ds` into train / validation / test, with `round(f · N)` samples (at
/// least one for a positive fraction) in validation and test and the rest in train; each part keeps
/// the original order. The permutation is drawn as in [`split_train_val`].
///
/// # Errors
/// [`exactflow_kernels::Error::InvalidArgument`] when a fraction is not in `[0, 1)` or the training part would be
/// empty.
pub fn split_train_val_test(ds: &Dataset, val_fraction: f64, test_fraction: f64, seed: u64) -> Result<Splits> {
    check_fraction("validation fraction", val_fraction)?;
    check_fraction("test fraction", test_fraction)?;
    let n = ds.len();
    let (n_val, n_test) = (part(n, val_fraction), part(n, test_fraction));
    if n_val + n_test >= n {
        return Err(Error::invalid(
            "split_train_val_test",
            "data set",
            format!(
                "{} has {n} samples: too few to hold out {val_fraction} for validation and {test_fraction} for test \
                 and keep a training set",
                ds.name
            ),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, SPLIT_TAG));
    let perm = permutation(&mut rng, n);
    let parts = chunks(&perm, &[n_test, n_val, n - n_val - n_test]);
    Ok(Splits {
        train: ds.subset(&parts[2])?,
        val: ds.subset(&parts[1])?,
        test: ds.subset(&parts[0])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use exactflow_layers::Tensor;

    fn numbered(n: usize) -> Dataset {
        let x = Tensor::from_fn(&[n, 1], |k| k as f64).unwrap();
        Dataset::new("numbered", x, None, Some((0..n as u32).collect())).unwrap()
    }

    fn ids(d: &Dataset) -> Vec<usize> {
        d.data.as_slice().iter().map(|&v| v as usize).collect()
    }

    #[test]
    fn train_val_is_a_seeded_partition() {
        let d = numbered(100);
        let (t, v) = split_train_val(&d, 0.1, 3).unwrap();
        assert_eq!((t.len(), v.len()), (90, 10));
        let mut all = [ids(&t), ids(&v)].concat();
        assert!(ids(&t).windows(2).all(|w| w[0] < w[1]), "order kept");
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(
            v.labels
                .as_ref()
                .unwrap()
                .iter()
                .map(|&l| l as usize)
                .collect::<Vec<_>>(),
            ids(&v)
        );
        let (_, v2) = split_train_val(&d, 0.1, 3).unwrap();
        assert_eq!(v, v2, "deterministic");
        let (_, v3) = split_train_val(&d, 0.1, 4).unwrap();
        assert_ne!(v, v3, "seed-dependent");
        assert_eq!(d.split(0.1, 3).unwrap().1, v);
        let (t0, v0) = split_train_val(&d, 0.0, 3).unwrap();
        assert_eq!((t0.len(), v0.len()), (100, 0));
    }

    #[test]
    fn three_way_split() {
        let d = numbered(1001);
        let s = split_train_val_test(&d, 0.1, 0.1, 9).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (801, 100, 100));
        let mut all = [ids(&s.train), ids(&s.val), ids(&s.test)].concat();
        all.sort_unstable();
        assert_eq!(all, (0..1001).collect::<Vec<_>>());
        let small = split_train_val_test(&numbered(3), 0.1, 0.1, 0).unwrap();
        assert_eq!((small.train.len(), small.val.len(), small.test.len()), (1, 1, 1));
    }

    #[test]
    fn rejects_bad_fractions_and_tiny_sets() {
        let d = numbered(10);
        for f in [-0.1, 1.0, 1.5, f64::NAN] {
            assert!(split_train_val(&d, f, 0).is_err(), "{f}");
            assert!(split_train_val_test(&d, 0.1, f, 0).is_err(), "{f}");
        }
        assert!(split_train_val(&numbered(1), 0.1, 0).is_err());
        assert!(split_train_val_test(&numbered(2), 0.1, 0.1, 0).is_err());
    }
}
