//! The optional context embedding of a conditional vector flow (as sbi's `embedding_net`): an
//! MLP `e = E(c)` that maps the raw context `c` `[N, C]` once per pass to `e` `[N, E]`, which
//! every stage then reads in place of `c`.
//!
//! `E` is `Linear -> act -> ... -> Linear` ([`exactflow_layers::nets::Mlp`]) with the widths
//! `C -> hidden... -> dim`, the model's activation after every hidden layer and none after the
//! last. Its parameters are named `embedding.{j}.weight` (`[out, in]`) and `embedding.{j}.bias`
//! (see FORMAT.md, "Context embedding"). Since the stages all read `e`, the backward pass sums
//! `dL/de` over the stages and back-propagates it once through `E`, to `dL/dc` and `E`'s
//! parameter gradients.

use exactflow_kernels::Real;
use exactflow_layers::nets::{Activation, Mlp, MlpConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checks::{MAX_DEPTH, count};
use crate::error::{Error, Result};
use crate::flow::Flow;

/// The checkpoint prefix of the embedding's parameters (`embedding.0.weight`, ...).
pub const PREFIX: &str = "embedding";

/// The shape of a context embedding: `C -> hidden... -> dim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextEmbedding {
    /// Widths of the hidden layers (may be empty: one linear map `e = W c + b`).
    pub hidden: Vec<usize>,
    /// The width E of the embedded context, which the stages read.
    pub dim: usize,
}

impl ContextEmbedding {
    /// Checks the embedding of a model of `model` with a raw context of width `context_dim`.
    ///
    /// # Errors
    /// [`Error::Config`] for an embedding of an unconditional model (`context_dim = 0`), a zero
    /// width, or more than [`MAX_DEPTH`] hidden layers.
    pub fn validate(&self, model: &str, context_dim: usize) -> Result<()> {
        if context_dim == 0 {
            return Err(Error::Config(format!(
                "{model}: a context embedding needs a conditional model (context_dim > 0), found context_dim = 0"
            )));
        }
        if self.hidden.len() > MAX_DEPTH {
            return Err(Error::Config(format!(
                "{model}: context embedding: {} hidden layers, more than the limit of {MAX_DEPTH}",
                self.hidden.len()
            )));
        }
        if self.dim == 0 || self.hidden.contains(&0) {
            return Err(Error::Config(format!(
                "{model}: context embedding widths must be positive, found hidden {:?} and dim {}",
                self.hidden, self.dim
            )));
        }
        Ok(())
    }

    /// The embedding MLP for a raw context of width `context_dim`, initialized from `seed`
    /// (ChaCha8 stream 1 of the model's seed, so that the stages' parameters, drawn from stream
    /// 0, are those of the same model without an embedding). PyTorch's `nn.Linear` default
    /// initialization ranges; the last layer is not zeroed.
    ///
    /// # Errors
    /// As [`ContextEmbedding::validate`].
    pub fn build<T: Real>(&self, model: &str, context_dim: usize, activation: Activation, seed: u64) -> Result<Mlp<T>> {
        self.validate(model, context_dim)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        let config = MlpConfig {
            hidden: self.hidden.clone(),
            activation,
            zero_last: false,
        };
        Ok(Mlp::new(&config, context_dim, self.dim, &mut rng)?)
    }

    /// The number of the embedding's parameters (weights and biases of `C -> hidden... ->
    /// dim`); `None` on overflow.
    pub fn parameter_count(&self, context_dim: usize) -> Option<u64> {
        count::mlp(context_dim as u64, &self.hidden, self.dim as u64)
    }
}

impl std::str::FromStr for ContextEmbedding {
    type Err = Error;

    /// `H_1,H_2,...:E` (hidden widths, a colon, the embedded width), or `E` alone for one
    /// linear map: `64,64:16` is `C -> 64 -> 64 -> 16`. The form of `exactflow train
    /// --context-embedding`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::Config(format!(
                "context embedding {s:?}: {why}; expected HIDDEN,...:DIM such as 64,64:16, or DIM alone"
            ))
        };
        let width = |w: &str| {
            w.trim()
                .parse::<usize>()
                .map_err(|e| bad(format!("{:?} is not a width ({e})", w.trim())))
        };
        let (hidden, dim) = match s.split_once(':') {
            Some((h, d)) if h.trim().is_empty() => (Vec::new(), width(d)?),
            Some((h, d)) => (h.split(',').map(width).collect::<Result<Vec<_>>>()?, width(d)?),
            None => (Vec::new(), width(s)?),
        };
        if dim == 0 || hidden.contains(&0) {
            return Err(bad("widths must be positive".into()));
        }
        if hidden.len() > MAX_DEPTH {
            return Err(bad(format!("more than {MAX_DEPTH} hidden layers")));
        }
        Ok(ContextEmbedding { hidden, dim })
    }
}

/// The context width the stages of a model read: the embedding's `dim`, or the raw
/// `context_dim` without an embedding.
pub fn stage_context_dim(context_dim: usize, embedding: Option<&ContextEmbedding>) -> usize {
    embedding.map_or(context_dim, |e| e.dim)
}

/// The parameter count of an optional embedding (0 without one); `None` on overflow.
pub(crate) fn count_optional(context_dim: usize, embedding: Option<&ContextEmbedding>) -> Option<u64> {
    embedding.map_or(Some(0), |e| e.parameter_count(context_dim))
}

/// `flow` with the context embedding `embedding` (built for the flow's context width, see
/// [`ContextEmbedding::build`]), or `flow` itself without one.
///
/// # Errors
/// As [`ContextEmbedding::validate`].
pub(crate) fn finish<T: Real>(
    flow: Flow<T>,
    model: &str,
    embedding: Option<&ContextEmbedding>,
    activation: Activation,
    seed: u64,
) -> Result<Flow<T>> {
    match embedding {
        Some(e) => {
            let net = e.build(model, flow.context_dim(), activation, seed)?;
            flow.with_embedding(net)
        }
        None => Ok(flow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::flow::Flow;
    use exactflow_layers::Params;

    #[test]
    fn the_flag_form_parses_and_bad_ones_say_why() {
        let e: ContextEmbedding = "64,64:16".parse().expect("parses");
        assert_eq!(
            e,
            ContextEmbedding {
                hidden: vec![64, 64],
                dim: 16
            }
        );
        let e: ContextEmbedding = "8".parse().expect("parses");
        assert_eq!(e, ContextEmbedding { hidden: vec![], dim: 8 });
        let e: ContextEmbedding = ":8".parse().expect("parses");
        assert_eq!(e, ContextEmbedding { hidden: vec![], dim: 8 });
        for bad in ["", "64,:16", "64:0", "a:3", "64:16:2", "-1:3"] {
            let e = bad.parse::<ContextEmbedding>().expect_err(bad).to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    /// The embedding is drawn from its own stream: the stages of a model with an embedding
    /// start with the parameters of the same model whose conditioners read a context of width
    /// E directly, so adding an embedding changes nothing else.
    #[test]
    fn the_stages_start_as_without_an_embedding() {
        let mut with = ModelConfig::preset("maf", "toy", &[3], 9).expect("preset");
        with.set_context_dim(5).expect("conditional");
        let mut without = with.clone();
        without.set_context_dim(2).expect("conditional");
        with.set_context_embedding(Some(ContextEmbedding {
            hidden: vec![4],
            dim: 2,
        }))
        .expect("embedding");
        let (a, b): (Flow<f64>, Flow<f64>) = (with.build().expect("builds"), without.build().expect("builds"));
        let mut pa = Vec::new();
        a.visit_params("", &mut |n, p| pa.push((n.to_string(), p.value.as_slice().to_vec())));
        let mut pb = Vec::new();
        b.visit_params("", &mut |n, p| pb.push((n.to_string(), p.value.as_slice().to_vec())));
        let (stages, embedding): (Vec<_>, Vec<_>) = pa.into_iter().partition(|(n, _)| !n.starts_with("embedding."));
        assert_eq!(stages, pb);
        let names: Vec<&str> = embedding.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "embedding.0.weight",
                "embedding.0.bias",
                "embedding.1.weight",
                "embedding.1.bias"
            ]
        );
    }
}
