//! Zero-sized proofs that the running CPU has an instruction set, in the manner of `pulp`.
//!
//! A token is made only by its `try_new`, which asks the CPU (std's cached feature detection);
//! the private field keeps every other module, of this crate too, from making one. The registers
//! of `avx2` and `avx512` are built only from a token and carry it, and the `#[target_feature]`
//! entry points are reached only through a token (`Vectorize`). So wherever an intrinsic runs, a
//! token exists, so `try_new` saw the features on this CPU: the `unsafe` around the intrinsics is
//! sound by construction, not by the convention of calling them after a check.

/// Proof that the CPU has AVX2 and FMA (the `avx2` registers use both).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx2Fma {
    _private: (),
}

impl Avx2Fma {
    /// The token, if the running CPU has AVX2 and FMA.
    #[inline]
    pub(crate) fn try_new() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2Fma { _private: () })
    }
}

/// Proof that the CPU has AVX-512F (the only AVX-512 subset the `avx512` registers use).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Avx512F {
    _private: (),
}

impl Avx512F {
    /// The token, if the running CPU has AVX-512F.
    #[inline]
    pub(crate) fn try_new() -> Option<Self> {
        is_x86_feature_detected!("avx512f").then_some(Avx512F { _private: () })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_exist_exactly_when_the_cpu_has_the_features() {
        assert_eq!(
            Avx2Fma::try_new().is_some(),
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        );
        assert_eq!(Avx512F::try_new().is_some(), is_x86_feature_detected!("avx512f"));
        // Zero-sized: carrying one in every register costs nothing.
        assert_eq!(std::mem::size_of::<Avx2Fma>(), 0);
        assert_eq!(std::mem::size_of::<Avx512F>(), 0);
    }
}
