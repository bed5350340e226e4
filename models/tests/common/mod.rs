//! Helpers shared by the model integration tests (each test file is its own crate and includes
//! this module with `mod common;`).

#![allow(dead_code)]

use exactflow_layers::Tensor;

/// A deterministic batch of `n` images of `shape` with values in [0.02, 0.98]; `salt` gives a
/// different batch.
pub fn batch(n: usize, shape: [usize; 3], salt: u64) -> Tensor<f64> {
    let mut dims = vec![n];
    dims.extend(shape);
    Tensor::from_fn(&dims, |k| {
        let v = ((k as u64 + 1) * 2_654_435_761 + salt * 97) % 1000;
        0.02 + 0.96 * v as f64 / 999.0
    })
    .expect("shape")
}
