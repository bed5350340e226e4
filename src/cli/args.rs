//! The command-line grammar (clap derive). Every flag's help text is its documentation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use exactflow::training;

/// exactflow: normalizing flows with verified log-determinants.
///
/// Train NICE, RealNVP, Glow, MAF, IAF and neural spline flows by maximum likelihood, evaluate
/// and sample them, and compute (and benchmark) log-determinants of matrices. Every command
/// writes machine-readable results as JSON and pictures as PNG.
///
/// Limits: input files must be regular files; sizes a file, a checkpoint or a flag asks for are
/// checked against this machine's memory (RAM and swap) before anything is allocated, and an
/// impossible one is refused ("needs X GiB"); a model has at most 1000 coupling layers (or Glow
/// steps per level) and 100 hidden layers or residual blocks per conditioner; checkpoints carry a
/// SHA-256 of every tensor, checked on loading.
#[derive(Debug, Parser)]
#[command(name = "exactflow", version, propagate_version = true)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a flow by maximum likelihood; writes the checkpoint, metrics.json and pictures.
    Train(TrainArgs),
    /// Evaluate a trained flow: mean NLL (and bits/dim for discrete data) on a data split.
    Eval(EvalArgs),
    /// Draw samples from a trained flow, as a PNG picture, a .npy array or a CSV file.
    Sample(SampleArgs),
    /// Sign and log|det| of the square matrix in a .npy or CSV file.
    Logdet(LogdetArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Audit a trained flow: per layer, invertibility, log-det against exact and finite-difference
    /// Jacobians, Jacobian conditioning and gradient checks; exits non-zero when a layer fails.
    Audit(AuditArgs),
}

/// `exactflow audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// A training output directory (holding model.safetensors) or a checkpoint file.
    pub dir: PathBuf,
    /// Audit at the first samples of this data set's test split (as for train; discrete data
    /// are dequantized with a fixed seed). Default: at samples drawn from the model itself.
    #[arg(long)]
    pub data: Option<String>,
    /// Number of samples to audit at, 1 to 1000 (each costs D forward passes per layer and a
    /// D x D Jacobian; more than the machine's memory holds is refused before it is allocated).
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    /// Print the full audit as one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Points drawn for a toy data set's or a simulator's splits (as in train; default 20000
    /// points, 200000 simulated pairs).
    #[arg(long)]
    pub toy_samples: Option<usize>,
}

/// `exactflow train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model family: nice, realnvp (vector RealNVP, or the multi-scale RealNVP on image data),
    /// glow (image data), maf (masked autoregressive flow), iaf (inverse autoregressive flow) or
    /// nsf (neural spline flow; --preset coupling or autoregressive).
    #[arg(long)]
    pub model: String,
    /// Data set: moons, circles, 8gaussians, checkerboard, pinwheel, spirals, digits (64-vectors),
    /// digits-image (1x8x8 images), csv:PATH, npy:PATH, mnist:DIR or cifar10:DIR; or a
    /// simulator for simulation-based inference, sim:gaussian-linear (2-D), sim:gaussian-linear-10
    /// or sim:two-moons, whose pairs (theta, x) train a conditional model of theta given x
    /// (--toy-samples pairs). Files must be regular files (not FIFOs or devices); a .gz MNIST
    /// file is read only up to the size its header declares.
    #[arg(long)]
    pub data: String,
    /// The context of a conditional model, paired row for row with the --data samples: a
    /// npy:PATH or csv:PATH file of shape [N, C] with as many rows as the data. The model is
    /// then built conditional on it (every family but nice), modelling p(data | context).
    #[arg(long, conflicts_with = "context_cols")]
    pub context: Option<String>,
    /// Take the last K columns of the --data file as the context of a conditional model (the
    /// first D - K columns are the modelled data).
    #[arg(long)]
    pub context_cols: Option<usize>,
    /// A context embedding for a conditional model, as sbi's embedding_net: an MLP of the given
    /// hidden widths and output width (HIDDEN,...:DIM, e.g. 64,64:16; DIM alone for one linear
    /// map) with the preset's activation, through which the context goes once before every
    /// conditioner reads its DIM outputs; trained with the flow and stored in the checkpoint as
    /// embedding.*. Default: none (the conditioners read the context itself).
    #[arg(long, value_name = "HIDDEN,...:DIM")]
    pub context_embedding: Option<String>,

    /// Architecture preset of the family (nice: paper, toy, digits; realnvp: toy, digits,
    /// digits-bn, digits-image, mnist, cifar10; glow: tiny, digits, mnist, cifar10; maf and iaf:
    /// toy, digits; nsf: coupling, autoregressive, digits, digits-autoregressive, sbi). Default:
    /// digits for the digits, mnist and cifar10 for those, toy otherwise (for nsf: coupling).
    #[arg(long)]
    pub preset: Option<String>,
    /// Passes over the training set (ignored when --steps is given).
    #[arg(long, conflicts_with = "steps")]
    pub epochs: Option<usize>,
    /// Optimizer steps. Default when neither --steps nor --epochs is given: 2000 for toy data,
    /// 40 epochs otherwise.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Samples per optimizer step.
    #[arg(long, default_value_t = training::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Peak learning rate of Adam (after a warmup of 2% of the steps, cosine decay to 1% of it).
    /// Training stops as diverged on a non-finite loss, or when the validation NLL gets worse
    /// than the initial model's by more than 1 nat per dimension; the checkpoint always holds the
    /// model of the best validation NLL.
    #[arg(long, default_value_t = training::DEFAULT_LR)]
    pub lr: f64,
    /// Seed of the initialization, the data splits, the batch order and the dequantization noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads, 1 to 1024: a model trains one shard of each minibatch per thread when
    /// every shard gets at least 128 rows (samples times pixels; a spline layer's row counts 4, an
    /// IAF layer's as many as its dimensions) and no layer couples a batch's samples (batch
    /// norm); otherwise (e.g. the digits presets at batch 64, or a batch-norm
    /// image model) it splits its matrix products, convolutions and optimizer updates over two
    /// threads, which gives the one-thread result bit for bit. A given count gives bit-for-bit
    /// reproducible runs.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Arithmetic of training and of the checkpoint's tensors: f32 (as PyTorch and every peer
    /// train) or f64. The metrics are computed in f64 on the trained parameters either way, as
    /// `eval` computes them. A resumed run keeps its checkpoint's precision.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f64"])]
    pub precision: String,
    /// Output directory (created if missing). Default: runs/MODEL-DATA.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Training points drawn from a toy distribution or pairs from a simulator, 1 to 100000000
    /// (validation and test get a quarter each). Default: 20000 points; 200000 pairs for a sim:
    /// data set (simulating is cheap, and with fewer pairs a default-length run memorizes them).
    #[arg(long)]
    pub toy_samples: Option<usize>,
    /// Stop after this many epochs without a better validation NLL (the best model is kept).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Continue the run whose checkpoint is in --out, exactly where it stopped. It reads and
    /// writes only files inside --out (OUT/model.safetensors), whatever paths the checkpoint
    /// names.
    #[arg(long)]
    pub resume: bool,
    /// Memory-efficient backward: recompute each layer's input from its output instead of
    /// keeping activations, so memory does not grow with depth (same gradients, more compute).
    #[arg(long)]
    pub memory_efficient: bool,
}

/// `exactflow eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A training output directory (holding model.safetensors) or a checkpoint file.
    pub dir: PathBuf,
    /// The data set (as for train); the seed stored in the checkpoint selects the same splits.
    #[arg(long)]
    pub data: String,
    /// Which split to evaluate: train, val or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// The context of a conditional model, paired row for row with the --data samples: a
    /// npy:PATH or csv:PATH file of shape [N, C] with as many rows as the data, C the context
    /// width the model was trained with. The model scores p(data | context).
    #[arg(long, conflicts_with = "context_cols")]
    pub context: Option<String>,
    /// Take the last K columns of the --data file as the context of a conditional model (the
    /// first D - K columns are the modelled data).
    #[arg(long)]
    pub context_cols: Option<usize>,
    /// For a model of a linear-Gaussian simulator (sim:gaussian-linear, sim:gaussian-linear-10):
    /// the exact-posterior check runs at this many held-out observations (the first x of the
    /// split), 1 to 10000.
    #[arg(long, default_value_t = 100)]
    pub observations: usize,
    /// Draws per observation for the exact-posterior check (from the exact posterior, and as
    /// many from the flow), 2 to 1000000.
    #[arg(long, default_value_t = 1000)]
    pub posterior_samples: usize,
    /// Also write log p(x) of every sample (nats, float64) to this .npy file.
    #[arg(long)]
    pub per_sample: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Points drawn for a toy data set's or a simulator's splits (must match training to get the
    /// same splits; default 20000 points, 200000 simulated pairs, as in train).
    #[arg(long)]
    pub toy_samples: Option<usize>,
    /// Also certify every sample: evaluate the flow in interval arithmetic and print, per sample,
    /// an interval [lo, hi] guaranteed to contain the exact log p(x) (and bits/dim) of the
    /// stored parameters, beside the f64 value and the width; then a summary (max and median
    /// relative width, samples that could not be certified and why) and the cost relative to the
    /// f64 evaluation. See README, "Certified evaluation", for what is assumed.
    #[arg(long)]
    pub certify: bool,
}

/// `exactflow sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A training output directory (holding model.safetensors) or a checkpoint file.
    pub dir: PathBuf,
    /// Number of samples. .npy and .csv output is drawn and written in chunks, so N is bounded
    /// by the disk, not by memory; a .png picture shows at most 10000.
    #[arg(short = 'n', long = "num", default_value_t = 1000)]
    pub n: usize,
    /// Sampling temperature: the base distribution's spread is multiplied by it (1 = the model,
    /// 0 = its mode).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file: .png (a scatter for 2-D data, a grid for images), .npy (float64) or .csv.
    #[arg(long)]
    pub out: PathBuf,
    /// The context of a conditional model, comma separated (C numbers, e.g. an observation x
    /// of a simulator: --context 0.3,-1.2): the samples are drawn from p(theta | x), the
    /// posterior.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub context: Option<Vec<f64>>,
    /// The simulator the model was trained on, for the exact posterior's contours (1, 2 and 3
    /// sigma) in a .png of a linear-Gaussian posterior. Default: the "data" of DIR/metrics.json.
    #[arg(long)]
    pub data: Option<String>,
}

/// `exactflow logdet`.
#[derive(Debug, Args)]
pub struct LogdetArgs {
    /// The matrix: a 2-D .npy (float32 or float64) or a CSV of numbers, one row per line.
    pub file: PathBuf,
    /// auto (triangular when the matrix is, LU otherwise), lu or triangular.
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// Print one JSON object with the keys n, sign, log_abs, method, seconds (and, with
    /// --audit, the audit under "audit").
    #[arg(long)]
    pub json: bool,
    /// Also audit the result: the LU's backward error (LAPACK ratio), a 1-norm condition
    /// estimate, an error bound on log|det|, an f64 recomputation for float32 input, and the exact
    /// determinant by fraction-free elimination for integer matrices.
    #[arg(long, conflicts_with = "certify")]
    pub audit: bool,
    /// Certify the result: an interval guaranteed to contain log|det A| and the certified sign
    /// (a verification method: LU, approximate inverses of the factors and a rigorous bound of
    /// the residual), or a statement that the sign cannot be certified (a singular or nearly
    /// singular matrix). JSON keys: certified, sign, log_abs_lo, log_abs_hi, width,
    /// relative_width, residual_bound, approx_sign, approx_log_abs, reason.
    #[arg(long)]
    pub certify: bool,
}

/// `exactflow bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time structured (triangular, O(n)) against dense (LU, O(n^3)) log-determinants.
    Logdet(BenchLogdetArgs),
}

/// `exactflow bench logdet`.
#[derive(Debug, Args)]
pub struct BenchLogdetArgs {
    /// Matrix sizes, comma separated, each 1 to 8192.
    #[arg(long, value_delimiter = ',', default_values_t = vec![4usize, 16, 64, 256, 1024])]
    pub sizes: Vec<usize>,
    /// Where to write bench.json and loglog.png (created if missing). Default: runs/bench-logdet.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Minimum measuring time per size and method, in seconds (0 to 60).
    #[arg(long, default_value_t = 0.2)]
    pub min_time: f64,
}
