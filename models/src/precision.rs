//! [`Precision`]: the floating-point type a model is trained in and its checkpoint stores.

use std::fmt;
use std::str::FromStr;

use exactflow_kernels::Real;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The floating-point type of a model's parameters and of its training arithmetic: IEEE 754
/// binary32 (`f32`, stored as safetensors F32) or binary64 (`f64`, F64).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// `f32`: what every peer (PyTorch, nflows, flowrs) trains in.
    F32,
    /// `f64`.
    F64,
}

impl Precision {
    /// The names [`Precision::from_str`] takes.
    pub const NAMES: [&'static str; 2] = ["f32", "f64"];

    /// `"f32"` or `"f64"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }

    /// The precision of the scalar `T`, when it is f32 or f64 (`None` for duals and intervals).
    pub fn of<T: Real>() -> Option<Self> {
        match T::NAME {
            "f32" => Some(Precision::F32),
            "f64" => Some(Precision::F64),
            _ => None,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f64" => Ok(Precision::F64),
            other => Err(Error::Config(format!(
                "unknown precision '{other}': expected {}",
                Precision::NAMES.join(" or ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_scalars_map_to_their_precision() {
        for p in [Precision::F32, Precision::F64] {
            assert_eq!(p.name().parse::<Precision>().expect("a name"), p);
            assert_eq!(serde_json::to_string(&p).expect("json"), format!("\"{p}\""));
        }
        assert_eq!(Precision::of::<f32>(), Some(Precision::F32));
        assert_eq!(Precision::of::<f64>(), Some(Precision::F64));
        assert_eq!(Precision::of::<exactflow_kernels::F1>(), None);
        let e = "f16".parse::<Precision>().expect_err("unknown");
        assert!(e.to_string().contains("expected f32 or f64"), "{e}");
    }
}
