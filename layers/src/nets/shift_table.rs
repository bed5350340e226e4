//! The nine shifts of a 3x3 "same" convolution as a table of nine copies, built once per image
//! size.
//!
//! # Formula
//! For an `H x W` image, kernel tap `r = 3 u + v` (u, v in 0..3) reads, for output pixel
//! `q = i W + j`, the input pixel `q + s_r` with `s_r = (u - 1) W + (v - 1)`, when
//! `(i + u - 1, j + v - 1)` lies inside the image, and 0 otherwise. So for a `[C, H, W]`
//! sample `z`, `gather(z)[(c, r), q] = z[c, q + s_r]` is its im2col matrix; and `s_{8 - r} =
//! -s_r`, so the transposed convolution is the same gather with the kernel flipped.
//!
//! Since the layout is row-major, the output pixels a tap reads from inside the image form one
//! contiguous range `[lo, hi)` (the rows `i` with `i + u - 1` inside), read from
//! `[lo + s_r, hi + s_r)`, except one column (`j = 0` for `v = 0`, `j = W - 1` for `v = 2`),
//! whose reads wrap to the neighbouring row and must be 0. Each tap is thus one contiguous copy,
//! two zero fills and one zeroed column: on the tiny images of the digit flows (8x8 down to 2x2)
//! the row-by-row im2col (a copy and its bounds logic per row of 2 to 8 pixels) cost more than
//! the matrix products, and a lookup per element (a first version of this table) still took a
//! quarter of a multi-scale RealNVP step.

use exactflow_kernels::{Error, Real, Result};

/// Kernel taps of a 3x3 kernel.
pub(crate) const TAPS: usize = 9;

/// One tap: output pixels `[lo, hi)` read input pixels `[src, src + hi - lo)`, except the
/// output column `edge` (every row), which is outside the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tap {
    lo: usize,
    hi: usize,
    src: usize,
    /// The output column whose reads wrap (`v != 1`), and the input column no inside read of
    /// this tap touches (`W - 1 - edge`).
    edge: Option<usize>,
}

/// The nine taps of an `H x W` image (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ShiftTable {
    taps: [Tap; TAPS],
    w: usize,
    hw: usize,
}

impl ShiftTable {
    /// The table of an `h x w` image.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty image or one whose pixel count overflows.
    pub(crate) fn new(h: usize, w: usize) -> Result<Self> {
        let hw = h
            .checked_mul(w)
            .filter(|&hw| hw > 0 && hw < isize::MAX as usize / TAPS)
            .ok_or_else(|| {
                Error::invalid(
                    "Conv2d",
                    "shape",
                    format!("cannot convolve an image of {h} x {w} pixels"),
                )
            })?;
        let tap = |r: usize| {
            let (u, v) = (r / 3, r % 3);
            // Output rows [i0, i1) read input rows inside the image.
            let i0 = usize::from(u == 0);
            let i1 = if u == 2 { h - 1 } else { h };
            let lo = (i0 * w + usize::from(v == 0)).min(hw);
            let hi = (i1 * w).saturating_sub(usize::from(v == 2)).clamp(lo, hw);
            // lo + s_r >= 0 and hi + s_r <= H W whenever lo < hi (the first read is row
            // i0 + u - 1 >= 0, column >= 0; the last is row i1 + u - 2 <= H - 1, column <= W - 1).
            let src = if lo < hi { (lo + u * w + v) - (w + 1) } else { 0 };
            let edge = match v {
                0 => Some(0),
                2 => Some(w - 1),
                _ => None,
            };
            Tap { lo, hi, src, edge }
        };
        Ok(ShiftTable {
            taps: std::array::from_fn(tap),
            w,
            hw,
        })
    }

    /// The input pixel tap `r` reads for output pixel `q`, if inside the image (the formula, for
    /// the tests).
    #[cfg(test)]
    fn source(&self, r: usize, q: usize) -> Option<usize> {
        let (h, w) = (self.hw / self.w, self.w);
        let (si, sj) = ((q / w + r / 3).checked_sub(1)?, (q % w + r % 3).checked_sub(1)?);
        (si < h && sj < w).then_some(si * w + sj)
    }

    /// The im2col matrix of the sample `z` (`[C, H W]`) into the columns of sample `at` of a
    /// `[9 C, cols]` matrix of several samples side by side:
    /// `out[(c * 9 + r) * cols + at H W + q] = z[c, q + s_r]`, 0 outside the image; every one
    /// of these entries is written.
    pub(crate) fn gather<T: Real>(&self, z: &[T], out: &mut [T], cols: usize, at: usize) {
        debug_assert!(out.len() >= TAPS * z.len() / self.hw * cols);
        for (zc, oc) in z.chunks_exact(self.hw).zip(out.chunks_exact_mut(TAPS * cols)) {
            for (tap, o) in self.taps.iter().zip(oc.chunks_exact_mut(cols)) {
                let o = &mut o[at * self.hw..(at + 1) * self.hw];
                o[..tap.lo].fill(T::zero());
                o[tap.lo..tap.hi].copy_from_slice(&zc[tap.src..tap.src + tap.hi - tap.lo]);
                o[tap.hi..].fill(T::zero());
                if let Some(j) = tap.edge {
                    o[j..].iter_mut().step_by(self.w).for_each(|e| *e = T::zero());
                }
            }
        }
    }

    /// The adjoint of [`ShiftTable::gather`]:
    /// `dz[c, q + s_r] += dcol[(c * 9 + r) * cols + at H W + q]` for the reads inside the
    /// image, tap by tap in the order of `r`. `dcol` is scratch: its entries outside the image
    /// are set to 0 and added as such (so a `-0` in `dz` may become `+0`, no other value
    /// changes).
    pub(crate) fn scatter_add<T: Real>(&self, dcol: &mut [T], cols: usize, at: usize, dz: &mut [T]) {
        debug_assert!(dcol.len() >= TAPS * dz.len() / self.hw * cols);
        for (dc, gc) in dz.chunks_exact_mut(self.hw).zip(dcol.chunks_exact_mut(TAPS * cols)) {
            for (tap, g) in self.taps.iter().zip(gc.chunks_exact_mut(cols)) {
                let g = &mut g[at * self.hw..(at + 1) * self.hw];
                if let Some(j) = tap.edge {
                    g[j..].iter_mut().step_by(self.w).for_each(|e| *e = T::zero());
                }
                let dst = &mut dc[tap.src..tap.src + tap.hi - tap.lo];
                for (d, &e) in dst.iter_mut().zip(&g[tap.lo..tap.hi]) {
                    *d += e;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-by-row im2col the table replaced (slices of each image row, zero padding by
    /// hand), kept as the reference.
    fn im2col_by_rows(h: usize, w: usize, x: &[f64], col: &mut [f64]) {
        let hw = h * w;
        let p = 1;
        for (c, xc) in x.chunks_exact(hw).enumerate() {
            for u in 0..3 {
                for v in 0..3 {
                    let row = &mut col[((c * 3 + u) * 3 + v) * hw..][..hw];
                    let j0 = p - v.min(p);
                    let j1 = (w + p).saturating_sub(v).min(w);
                    for i in 0..h {
                        let out = &mut row[i * w..(i + 1) * w];
                        let si = i + u;
                        if si < p || si - p >= h || j0 >= j1 {
                            out.iter_mut().for_each(|e| *e = 0.0);
                            continue;
                        }
                        let src = &xc[(si - p) * w..(si - p + 1) * w];
                        out[..j0].iter_mut().for_each(|e| *e = 0.0);
                        out[j0..j1].copy_from_slice(&src[j0 + v - p..j1 + v - p]);
                        out[j1..].iter_mut().for_each(|e| *e = 0.0);
                    }
                }
            }
        }
    }

    const SIZES: [(usize, usize); 10] = [
        (1, 1),
        (1, 2),
        (2, 1),
        (1, 5),
        (5, 1),
        (2, 2),
        (3, 5),
        (4, 4),
        (7, 6),
        (8, 8),
    ];

    fn values(len: usize, seed: f64) -> Vec<f64> {
        (0..len).map(|k| ((k as f64 + seed) * 0.731).sin()).collect()
    }

    #[test]
    fn gather_is_the_row_by_row_im2col() {
        // Exact equality: both only copy values and write zeros.
        for (h, w) in SIZES {
            for c in [1, 3] {
                let table = ShiftTable::new(h, w).unwrap();
                let x = values(c * h * w, 0.5);
                let (mut a, mut b) = (vec![f64::NAN; 9 * x.len()], vec![f64::NAN; 9 * x.len()]);
                table.gather(&x, &mut a, h * w, 0);
                im2col_by_rows(h, w, &x, &mut b);
                assert_eq!(a, b, "{c} x {h} x {w}");
            }
        }
    }

    #[test]
    fn scatter_add_is_the_adjoint_of_gather() {
        // <gather(x), d> = <x, scatter_add(d)>, to the rounding of a dot product of <= 9 * 3 * 64
        // terms of magnitude <= 1 (1e-12 leaves a margin of 50x over 1728 ulps of 1).
        for (h, w) in SIZES {
            let table = ShiftTable::new(h, w).unwrap();
            let x = values(3 * h * w, 0.25);
            let d = values(27 * h * w, 2.0);
            let mut col = vec![0.0; d.len()];
            table.gather(&x, &mut col, h * w, 0);
            let mut dx = vec![1.0; x.len()];
            table.scatter_add(&mut d.clone(), h * w, 0, &mut dx);
            let lhs: f64 = col.iter().zip(&d).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * (b - 1.0)).sum();
            assert!((lhs - rhs).abs() < 1e-12, "{h} x {w}: {lhs} against {rhs}");
        }
    }

    #[test]
    fn taps_are_the_shifts_and_flipped_taps_undo_them() {
        // Every output pixel inside a tap's copy range reads q + s_r, and inside the image
        // unless it is the tap's edge column; every read inside the image is in the range; and
        // tap 8 - r reads q where tap r reads p for q.
        for (h, w) in SIZES {
            let table = ShiftTable::new(h, w).unwrap();
            for (r, tap) in table.taps.iter().enumerate() {
                for q in 0..h * w {
                    let source = table.source(r, q);
                    let in_range = (tap.lo..tap.hi).contains(&q);
                    let on_edge = tap.edge == Some(q % w);
                    assert_eq!(source.is_some(), in_range && !on_edge, "{h} x {w}, tap {r}, pixel {q}");
                    if let Some(p) = source {
                        assert_eq!(p, tap.src + q - tap.lo);
                        assert_eq!(table.source(8 - r, p), Some(q));
                    }
                }
            }
        }
    }

    #[test]
    fn samples_side_by_side_match_one_at_a_time() {
        // Three samples in the columns of one matrix give, column block by column block, what
        // each gives alone (exact: the same operations on the same values), and touch nothing
        // outside their block.
        for (h, w) in SIZES {
            let (hw, c) = (h * w, 2);
            let table = ShiftTable::new(h, w).unwrap();
            let cols = 3 * hw;
            let xs: Vec<Vec<f64>> = (0..3).map(|s| values(c * hw, s as f64)).collect();
            let mut wide = vec![f64::NAN; 9 * c * cols];
            for (s, x) in xs.iter().enumerate() {
                table.gather(x, &mut wide, cols, s);
            }
            let dwide = values(9 * c * cols, 7.0);
            for (s, x) in xs.iter().enumerate() {
                let mut one = vec![0.0; 9 * c * hw];
                table.gather(x, &mut one, hw, 0);
                let done: Vec<f64> = (0..9 * c)
                    .flat_map(|row| dwide[row * cols + s * hw..][..hw].to_vec())
                    .collect();
                for (row, block) in one.chunks_exact(hw).enumerate() {
                    assert_eq!(block, &wide[row * cols + s * hw..][..hw], "gather, {h} x {w}");
                }
                let (mut dz_one, mut dz_wide) = (x.clone(), x.clone());
                table.scatter_add(&mut done.clone(), hw, 0, &mut dz_one);
                table.scatter_add(&mut dwide.clone(), cols, s, &mut dz_wide);
                assert_eq!(dz_one, dz_wide, "scatter_add, {h} x {w}");
            }
        }
    }

    #[test]
    fn empty_and_huge_images_are_refused() {
        assert!(ShiftTable::new(0, 3).is_err());
        assert!(ShiftTable::new(usize::MAX, 2).is_err());
        assert!(ShiftTable::new(1 << 62, 1).is_err());
    }
}
