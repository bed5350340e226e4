//! Masks that split a sample into a conditioning part A and a transformed part B.
//!
//! A coupling layer leaves the A part unchanged and transforms the B part elementwise with
//! parameters computed from A, so its Jacobian is triangular (after reordering) with the
//! elementwise derivatives on the diagonal. The masks of the NICE and RealNVP papers:
//!
//! | [`MaskKind`] | vectors `[D]` | images `[C, H, W]` |
//! |---|---|---|
//! | `Halves` | A = first `D/2` coordinates | A = first `C/2` channels |
//! | `OddEven` | A = even coordinates | A = even channels |
//! | `Checkerboard` | A = even coordinates | A = pixels with `h + w` even, all channels |
//! | `Channel` | as `Halves` | A = first `C/2` channels |
//!
//! `flip` swaps A and B, so alternating couplings transform each part in turn.
//!
//! A [`Partition`] says how the conditioner sees A and where its outputs land: for spatial
//! checkerboards the conditioner gets the whole image with B zeroed (`x * b`, RealNVP's form) and
//! returns full-size maps; otherwise it gets A gathered into a dense block and returns dense blocks.

use exactflow_kernels::{Error, Result};
use serde::{Deserialize, Serialize};

/// The pattern of a mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskKind {
    /// First half (of coordinates, or of channels for images) conditions.
    Halves,
    /// Even coordinates (or channels) condition.
    OddEven,
    /// Checkerboard: for images the pixels with `h + w` even condition (every channel); for
    /// vectors the same as `OddEven`.
    Checkerboard,
    /// Channel-wise: the first half of the channels conditions; for vectors the same as `Halves`.
    Channel,
}

/// A mask: a pattern and whether A and B are swapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mask {
    /// The pattern.
    pub kind: MaskKind,
    /// Swap the conditioning and transformed parts.
    pub flip: bool,
}

impl Mask {
    /// A mask of the given pattern; `flip` swaps the parts.
    pub fn new(kind: MaskKind, flip: bool) -> Self {
        Mask { kind, flip }
    }

    /// The partition of a sample of shape `[D]` or `[C, H, W]`, for an inner transform that
    /// needs `parts` values per transformed element (1 for additive, 2 for affine).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the shape has another rank, or either part would be empty.
    pub fn partition(&self, sample_shape: &[usize], parts: usize) -> Result<Partition> {
        let is_a: Vec<bool> = match *sample_shape {
            [d] => (0..d)
                .map(|i| match self.kind {
                    MaskKind::Halves | MaskKind::Channel => i < d / 2,
                    MaskKind::OddEven | MaskKind::Checkerboard => i % 2 == 0,
                })
                .collect(),
            [c, h, w] => {
                let mut v = Vec::with_capacity(c * h * w);
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            v.push(match self.kind {
                                MaskKind::Halves | MaskKind::Channel => ch < c / 2,
                                MaskKind::OddEven => ch % 2 == 0,
                                MaskKind::Checkerboard => (y + x) % 2 == 0,
                            });
                        }
                    }
                }
                v
            }
            _ => {
                return Err(Error::invalid(
                    "Mask::partition",
                    "configuration",
                    format!("a coupling mask needs a sample shape [D] or [C, H, W], found {sample_shape:?}"),
                ));
            }
        };
        let is_a: Vec<bool> = is_a.into_iter().map(|a| a != self.flip).collect();
        let a_idx: Vec<usize> = (0..is_a.len()).filter(|&i| is_a[i]).collect();
        let b_idx: Vec<usize> = (0..is_a.len()).filter(|&i| !is_a[i]).collect();
        if a_idx.is_empty() || b_idx.is_empty() {
            return Err(Error::invalid(
                "Mask::partition",
                "configuration",
                format!(
                    "mask {:?} on a sample of shape {sample_shape:?} leaves one part empty \
                 (a coupling needs at least one conditioning and one transformed element)",
                    self
                ),
            ));
        }
        let spatial = sample_shape.len() == 3 && self.kind == MaskKind::Checkerboard;
        let (cond_in_shape, a_src, cond_out_shape, out_idx) = if spatial {
            let (c, h, w) = (sample_shape[0], sample_shape[1], sample_shape[2]);
            let size = c * h * w;
            let out_idx = (0..parts)
                .flat_map(|p| b_idx.iter().map(move |&j| p * size + j))
                .collect();
            (
                sample_shape.to_vec(),
                a_idx.iter().map(|&i| (i, i)).collect(),
                vec![parts * c, h, w],
                out_idx,
            )
        } else if sample_shape.len() == 3 {
            let (h, w) = (sample_shape[1], sample_shape[2]);
            let ca = a_idx.len() / (h * w);
            let cb = b_idx.len() / (h * w);
            (
                vec![ca, h, w],
                a_idx.iter().enumerate().map(|(k, &i)| (k, i)).collect(),
                vec![parts * cb, h, w],
                (0..parts * b_idx.len()).collect(),
            )
        } else {
            (
                vec![a_idx.len()],
                a_idx.iter().enumerate().map(|(k, &i)| (k, i)).collect(),
                vec![parts * b_idx.len()],
                (0..parts * b_idx.len()).collect(),
            )
        };
        Ok(Partition {
            sample_shape: sample_shape.to_vec(),
            a_idx,
            b_idx,
            cond_in_shape,
            a_src,
            cond_out_shape,
            out_idx,
            parts,
        })
    }
}

/// Where A and B sit in a sample, and how the conditioner's input and output map onto them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// The sample shape the partition was made for.
    pub sample_shape: Vec<usize>,
    /// Flat positions of the conditioning part A.
    pub a_idx: Vec<usize>,
    /// Flat positions of the transformed part B.
    pub b_idx: Vec<usize>,
    /// Sample shape of the conditioner's input.
    pub cond_in_shape: Vec<usize>,
    /// `(position in the conditioner input, position in the sample)` for every A element; the
    /// other input positions are zero.
    pub a_src: Vec<(usize, usize)>,
    /// Sample shape of the conditioner's output.
    pub cond_out_shape: Vec<usize>,
    /// For part p and the j-th B element, its position in the conditioner output is
    /// `out_idx[p * b_idx.len() + j]`.
    pub out_idx: Vec<usize>,
    /// Values per transformed element (1 additive, 2 affine).
    pub parts: usize,
}
