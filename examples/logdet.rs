//! Log-determinants: O(n) for triangular matrices, O(n^3) LU otherwise, with numpy's slogdet
//! conventions (sign 0 and log|det| = -inf for a singular matrix).
//!
//! Run with `cargo run --release --example logdet`.

use exactflow::kernels::{LogDetMethod, Lu, Matrix, log_det, log_det_with};

fn main() -> exactflow::Result<()> {
    let a = Matrix::new(3, 3, vec![4.0, 1.0, 2.0, 1.0, -3.0, 0.5, 2.0, 0.5, 5.0])?;
    let ld = log_det(&a)?; // dense LU with partial pivoting
    println!("sign {} log|det| {:.6} det {:.6}", ld.sign, ld.log_abs, ld.det());
    let l = Matrix::new(3, 3, vec![2.0, 0.0, 0.0, 7.0, -0.5, 0.0, 1.0, 3.0, 4.0])?;
    let (tri, method) = log_det_with(&l, LogDetMethod::Auto)?; // detects the triangle: O(n)
    println!("{}: sign {} log|det| {:.6}", method.name(), tri.sign, tri.log_abs);
    let lu = Lu::factor(&a)?; // reuse the factorization to solve A x = b
    println!("x = {:?}", lu.solve_vec(&[1.0, 2.0, 3.0])?);
    Ok(())
}
