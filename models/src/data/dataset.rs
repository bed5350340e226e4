//! [`Dataset`]: samples plus what the likelihood needs to know about them.

use crate::error::{Error, Result};
use exactflow_layers::Tensor;

/// A data set: `N` samples of one shape, their number of discrete levels, their labels.
///
/// `data` has shape `[N, D]` (vectors) or `[N, C, H, W]` (images, NCHW). When `levels` is
/// `Some(K)` every value is an integer in `0..K` (for example raw pixels, K = 256) and a flow sees
/// it dequantized, `u = (x + U[0,1)) / K` (see [`super::dequantize`]); `None` means continuous
/// data, used as is. `labels`, when present, holds one class label per sample; the likelihood never
/// uses them. `context`, when present, is the conditioning input `[N, C]` of a conditional
/// model `p(x | c)`: row i is the context of sample i, and every subset, split and batch takes
/// the same rows of both.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// A short name for messages and reports (`moons`, `digits`, a file stem, ...).
    pub name: String,
    /// The samples: `[N, D]` or `[N, C, H, W]`, row-major.
    pub data: Tensor<f64>,
    /// Number of discrete levels K for integer data in `0..K`; `None` for continuous data.
    pub levels: Option<u32>,
    /// One class label per sample, when the source has labels.
    pub labels: Option<Vec<u32>>,
    /// The context `[N, C]` of a conditional model, one row per sample (see [`Dataset::with_context`]).
    pub context: Option<Tensor<f64>>,
}

impl Dataset {
    /// A data set, checked: `data` is `[N, D]` or `[N, C, H, W]` and finite, `levels` is at least 1,
    /// and `labels` (if any) has one entry per sample.
    ///
    /// Whether the values of discrete data really are integers in `0..K` is checked where they are
    /// used, by [`super::dequantize`].
    ///
    /// # Errors
    /// [`exactflow_kernels::Error::InvalidArgument`] for a rank other than 2 or 4 or `levels == Some(0)`;
    /// [`exactflow_kernels::Error::LengthMismatch`] for a label count other than N; [`exactflow_kernels::Error::NonFinite`] for NaN or
    /// an infinity in `data` (index = (sample, offset in the sample)).
    pub fn new(
        name: impl Into<String>,
        data: Tensor<f64>,
        levels: Option<u32>,
        labels: Option<Vec<u32>>,
    ) -> Result<Self> {
        if data.rank() != 2 && data.rank() != 4 {
            return Err(Error::invalid(
                "Dataset::new",
                "data",
                format!("expected shape [N, D] or [N, C, H, W], found {:?}", data.shape()),
            ));
        }
        if levels == Some(0) {
            return Err(Error::invalid(
                "Dataset::new",
                "levels",
                "discrete data need at least 1 level, found 0",
            ));
        }
        if let Some(l) = &labels
            && l.len() != data.batch()
        {
            return Err(exactflow_kernels::Error::LengthMismatch {
                op: "Dataset::new",
                what: "labels",
                expected: data.batch(),
                found: l.len(),
            }
            .into());
        }
        data.check_finite("Dataset::new", "data")?;
        Ok(Dataset {
            name: name.into(),
            data,
            levels,
            labels,
            context: None,
        })
    }

    /// The same samples paired with a context `[N, C]` (row i conditions sample i).
    ///
    /// # Errors
    /// [`exactflow_kernels::Error::ShapeMismatch`] for a context that is not `[N, C]` with
    /// `C >= 1`; [`exactflow_kernels::Error::LengthMismatch`] naming both counts when it has
    /// another number of rows than there are samples; [`exactflow_kernels::Error::NonFinite`]
    /// naming the row (and column) of the first NaN or infinity.
    pub fn with_context(mut self, context: Tensor<f64>) -> Result<Self> {
        if context.rank() != 2 || context.sample_len() == 0 {
            return Err(exactflow_kernels::Error::ShapeMismatch {
                op: "Dataset::with_context",
                expected: vec![self.len(), context.sample_len().max(1)],
                found: context.shape().to_vec(),
            }
            .into());
        }
        if context.batch() != self.len() {
            return Err(exactflow_kernels::Error::LengthMismatch {
                op: "Dataset::with_context",
                what: "context rows (the data's sample count is the expected length)",
                expected: self.len(),
                found: context.batch(),
            }
            .into());
        }
        context.check_finite("Dataset::with_context", "context")?;
        self.context = Some(context);
        Ok(self)
    }

    /// The context width C (0 without a context).
    pub fn context_dim(&self) -> usize {
        self.context.as_ref().map_or(0, Tensor::sample_len)
    }

    /// Number of samples N.
    pub fn len(&self) -> usize {
        self.data.batch()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements per sample: D for `[N, D]`, C·H·W for `[N, C, H, W]`.
    pub fn dim(&self) -> usize {
        self.data.sample_len()
    }

    /// The shape of one sample: `[D]` or `[C, H, W]`.
    pub fn sample_shape(&self) -> &[usize] {
        self.data.sample_shape()
    }

    /// Whether the samples are images (`[N, C, H, W]`).
    pub fn is_image(&self) -> bool {
        self.data.rank() == 4
    }

    /// The samples (and labels) at `indices`, in that order; name and levels are kept.
    ///
    /// # Errors
    /// [`exactflow_kernels::Error::InvalidArgument`] when an index is `>= len()`; [`exactflow_kernels::Error::LengthMismatch`] when the
    /// labels (a public field) no longer have one entry per sample.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let data = self.data.gather_batch(indices)?;
        let labels = match &self.labels {
            None => None,
            Some(l) => Some(
                indices
                    .iter()
                    .map(|&i| {
                        l.get(i).copied().ok_or(exactflow_kernels::Error::LengthMismatch {
                            op: "Dataset::subset",
                            what: "labels",
                            expected: self.len(),
                            found: l.len(),
                        })
                    })
                    .collect::<std::result::Result<Vec<u32>, _>>()?,
            ),
        };
        let context = self.context.as_ref().map(|c| c.gather_batch(indices)).transpose()?;
        Ok(Dataset {
            name: self.name.clone(),
            data,
            levels: self.levels,
            labels,
            context,
        })
    }

    /// A seeded split into (train, validation), `round(val_fraction · N)` samples going to
    /// validation; each part keeps the original order. Same as [`super::split_train_val`].
    ///
    /// # Errors
    /// As [`super::split_train_val`].
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        super::split_train_val(self, val_fraction, seed)
    }

    /// The data set under another name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Dataset {
        let x = Tensor::from_fn(&[4, 3], |k| k as f64).unwrap();
        Dataset::new("small", x, Some(12), Some(vec![0, 1, 2, 3])).unwrap()
    }

    #[test]
    fn accessors() {
        let d = small();
        assert_eq!(d.len(), 4);
        assert!(!d.is_empty());
        assert_eq!(d.dim(), 3);
        assert_eq!(d.sample_shape(), &[3]);
        assert!(!d.is_image());
        let img = Dataset::new("img", Tensor::zeros(&[2, 1, 2, 3]).unwrap(), None, None).unwrap();
        assert_eq!(img.dim(), 6);
        assert_eq!(img.sample_shape(), &[1, 2, 3]);
        assert!(img.is_image());
    }

    #[test]
    fn subset_keeps_labels_and_order() {
        let d = small();
        let s = d.subset(&[3, 1]).unwrap();
        assert_eq!(s.data.as_slice(), &[9.0, 10.0, 11.0, 3.0, 4.0, 5.0]);
        assert_eq!(s.labels, Some(vec![3, 1]));
        assert_eq!(s.levels, Some(12));
        assert!(d.subset(&[4]).is_err());
        let mut broken = d.clone();
        broken.labels = Some(vec![0]);
        assert!(matches!(
            broken.subset(&[2]),
            Err(Error::Numerical(exactflow_kernels::Error::LengthMismatch { .. }))
        ));
    }

    #[test]
    fn a_context_travels_with_its_rows_and_is_checked() {
        let c = Tensor::from_fn(&[4, 2], |k| 10.0 * k as f64).unwrap();
        let d = small().with_context(c).unwrap();
        assert_eq!(d.context_dim(), 2);
        let s = d.subset(&[3, 1]).unwrap();
        assert_eq!(s.context.unwrap().as_slice(), &[60.0, 70.0, 20.0, 30.0]);
        // Rows: the error names both counts.
        let e = small().with_context(Tensor::zeros(&[5, 2]).unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains('4') && msg.contains('5'), "{msg}");
        assert!(small().with_context(Tensor::zeros(&[4]).unwrap()).is_err());
        assert!(small().with_context(Tensor::zeros(&[4, 0]).unwrap()).is_err());
        // NaN: the error names its row.
        let mut bad = Tensor::<f64>::zeros(&[4, 2]).unwrap();
        bad.as_mut_slice()[5] = f64::NAN;
        match small().with_context(bad) {
            Err(Error::Numerical(exactflow_kernels::Error::NonFinite { index, .. })) => assert_eq!(index, (2, 1)),
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }

    #[test]
    fn new_validates() {
        let x = Tensor::zeros(&[2, 3]).unwrap();
        assert!(Dataset::new("a", x.clone(), None, Some(vec![0])).is_err());
        assert!(Dataset::new("a", x.clone(), Some(0), None).is_err());
        assert!(Dataset::new("a", Tensor::zeros(&[2, 3, 4]).unwrap(), None, None).is_err());
        let mut bad = x;
        bad.as_mut_slice()[4] = f64::NAN;
        match Dataset::new("a", bad, None, None) {
            Err(Error::Numerical(exactflow_kernels::Error::NonFinite { index, .. })) => assert_eq!(index, (1, 1)),
            other => panic!("expected NonFinite, got {other:?}"),
        }
    }
}
