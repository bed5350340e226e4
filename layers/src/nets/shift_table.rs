//! The nine shifts of a 3x3 "same" convolution as a gather table, built once per image size.
//!
//! # Formula
//! For an `H x W` image, kernel offset `r = 3 u + v` (u, v in 0..3) and output pixel
//! `q = i W + j`, `table[r H W + q]` is the input pixel `(i + u - 1) W + (j + v - 1)` when that
//! lies inside the image, and [`OUTSIDE`] otherwise. So for a `[C, H, W]` sample `z`,
//! `gather(z)[(c, r), q] = z[c, table[r, q]]` (0 at [`OUTSIDE`]) is its im2col matrix, and
//! `s_{8 - r} = -s_r` for the shift `s_r = (u - 1, v - 1)`: the transposed convolution reads the
//! same table with the kernel flipped.
//!
//! On the tiny images of the digit flows (8x8 down to 2x2), copying rows of 2 to 8 pixels with
//! their bounds logic cost more than the matrix products; one table lookup per element has no
//! per-row work and no branches beyond the bounds check of the lookup itself.

use std::fmt;

use exactflow_kernels::{Error, Real, Result};

/// The marker of a kernel tap that falls outside the image (read as 0).
pub(crate) const OUTSIDE: u32 = u32::MAX;

/// Kernel taps of a 3x3 kernel.
pub(crate) const TAPS: usize = 9;

/// `table[r * H W + q]`: the input pixel that kernel tap `r` reads for output pixel `q`, or
/// [`OUTSIDE`] (see the module documentation).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ShiftTable {
    table: Vec<u32>,
    hw: usize,
}

impl fmt::Debug for ShiftTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShiftTable({} entries)", self.table.len())
    }
}

impl ShiftTable {
    /// The table of an `h x w` image.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `h * w` pixels cannot be indexed by a `u32` below
    /// [`OUTSIDE`].
    pub(crate) fn new(h: usize, w: usize) -> Result<Self> {
        let hw = h.checked_mul(w).filter(|&hw| hw < OUTSIDE as usize).ok_or_else(|| {
            Error::invalid(
                "Conv2d::new",
                "shape",
                format!("an image of {h} x {w} pixels is too large"),
            )
        })?;
        let mut table = Vec::with_capacity(TAPS * hw);
        for u in 0..3 {
            for v in 0..3 {
                for i in 0..h {
                    for j in 0..w {
                        let (si, sj) = ((i + u).checked_sub(1), (j + v).checked_sub(1));
                        table.push(match (si, sj) {
                            // hw < OUTSIDE, so the index fits a u32 and is never the marker.
                            (Some(si), Some(sj)) if si < h && sj < w => (si * w + sj) as u32,
                            _ => OUTSIDE,
                        });
                    }
                }
            }
        }
        Ok(ShiftTable { table, hw })
    }

    /// The im2col matrix of `z` (`[C, H W]`): `out[(c * 9 + r) * H W + q] = z[c, table[r, q]]`,
    /// 0 at [`OUTSIDE`]. `out` holds `9 C H W` values, every one written.
    pub(crate) fn gather<T: Real>(&self, z: &[T], out: &mut [T]) {
        debug_assert_eq!(out.len(), TAPS * z.len());
        for (zc, oc) in z.chunks_exact(self.hw).zip(out.chunks_exact_mut(TAPS * self.hw)) {
            for (o, &t) in oc.iter_mut().zip(&self.table) {
                *o = zc.get(t as usize).copied().unwrap_or_else(T::zero);
            }
        }
    }

    /// The adjoint of [`ShiftTable::gather`]: `dz[c, table[r, q]] += dcol[(c * 9 + r) * H W + q]`
    /// (entries at [`OUTSIDE`] dropped), added tap by tap in the order of `r`, then `q`.
    pub(crate) fn scatter_add<T: Real>(&self, dcol: &[T], dz: &mut [T]) {
        debug_assert_eq!(dcol.len(), TAPS * dz.len());
        for (dc, gc) in dz.chunks_exact_mut(self.hw).zip(dcol.chunks_exact(TAPS * self.hw)) {
            for (&g, &t) in gc.iter().zip(&self.table) {
                if let Some(d) = dc.get_mut(t as usize) {
                    *d += g;
                }
            }
        }
    }

    /// The output side of a convolution: `y[o, q] += sum_r planes[(r * O + o), table[r, q]]`
    /// for the `9 O` planes of `H W` values (tap-major), `y` holding `O` planes; the taps are
    /// added in the order of `r`.
    pub(crate) fn gather_add_taps<T: Real>(&self, planes: &[T], y: &mut [T]) {
        debug_assert_eq!(planes.len(), TAPS * y.len());
        let per_tap = y.len();
        for (tap, taps) in self.table.chunks_exact(self.hw).zip(planes.chunks_exact(per_tap)) {
            for (yo, plane) in y.chunks_exact_mut(self.hw).zip(taps.chunks_exact(self.hw)) {
                for (e, &t) in yo.iter_mut().zip(tap) {
                    if let Some(&p) = plane.get(t as usize) {
                        *e += p;
                    }
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
                table.gather(&x, &mut a);
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
            table.gather(&x, &mut col);
            let mut dx = vec![1.0; x.len()];
            table.scatter_add(&d, &mut dx);
            let lhs: f64 = col.iter().zip(&d).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * (b - 1.0)).sum();
            assert!((lhs - rhs).abs() < 1e-12, "{h} x {w}: {lhs} against {rhs}");
        }
    }

    #[test]
    fn gather_add_taps_sums_the_shifted_planes() {
        // y[o, q] = 1 + sum_r planes[r, o][pixel q shifted by s_r], the shift written out with
        // signed arithmetic; each side adds the same terms in the same order, so exactly equal.
        for (h, w) in SIZES {
            let table = ShiftTable::new(h, w).unwrap();
            let outs = 2;
            let planes = values(9 * outs * h * w, 1.0);
            let mut y = vec![1.0; outs * h * w];
            table.gather_add_taps(&planes, &mut y);
            for o in 0..outs {
                for i in 0..h {
                    for j in 0..w {
                        let mut e = 1.0;
                        for r in 0..9 {
                            let (si, sj) = (i as isize + (r / 3) as isize - 1, j as isize + (r % 3) as isize - 1);
                            if si >= 0 && sj >= 0 && (si as usize) < h && (sj as usize) < w {
                                e += planes[((r * outs + o) * h + si as usize) * w + sj as usize];
                            }
                        }
                        assert_eq!(y[(o * h + i) * w + j], e, "{h} x {w}, ({o}, {i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn flipped_tap_is_the_opposite_shift() {
        // table[8 - r] undoes table[r]: where tap r reads pixel p for q, tap 8 - r reads q for p.
        for (h, w) in SIZES {
            let table = ShiftTable::new(h, w).unwrap();
            let hw = h * w;
            for r in 0..9 {
                for q in 0..hw {
                    let p = table.table[r * hw + q];
                    if p != OUTSIDE {
                        assert_eq!(table.table[(8 - r) * hw + p as usize], q as u32);
                    }
                }
            }
        }
    }

    #[test]
    fn huge_images_are_refused() {
        assert!(ShiftTable::new(1 << 16, 1 << 16).is_err());
        assert!(ShiftTable::new(usize::MAX, 2).is_err());
    }
}
