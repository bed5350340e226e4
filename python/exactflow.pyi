"""exactflow: normalizing flows whose mathematics is verified, not trusted.

Log-determinants with numpy's slogdet semantics, the numerical audit of a log-determinant,
trained flows (NICE, RealNVP, Glow and every family exactflow builds) and their training, on
NumPy arrays. Inputs are float32 or float64 arrays of any memory order, copied once; every
computation releases the GIL.

Errors: ValueError for shapes, dtypes, non-finite input and impossible options; OSError for
files that cannot be read or written or are not what they claim; RuntimeError for a training
run that diverged (and for an internal error, which is a bug).
"""

from __future__ import annotations

import os
from typing import Any, Literal, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike
Method = Literal["auto", "lu", "triangular"]
PathLike = Union[str, "os.PathLike[str]"]

def slogdet(a: ArrayLike, method: Method = "auto") -> Tuple[Any, Any]:
    """Sign and natural log of the absolute value of the determinant, with numpy.linalg.slogdet's
    semantics.

    Parameters
    ----------
    a : array_like, shape (..., n, n), float32 or float64
        One square matrix or a stack of them, in any memory order and strides (C, Fortran,
        sliced, transposed). It is copied once; the GIL is released while computing.
    method : {"auto", "lu", "triangular"}
        "auto" (default) reads a triangular matrix's diagonal in O(n) and factors any other by LU
        with partial pivoting in O(n^3); "lu" always factors; "triangular" requires a triangular
        matrix.

    Returns
    -------
    (sign, logabsdet)
        For one matrix, NumPy scalars of the input's precision; for a stack, arrays of shape
        (...). sign is -1, 0 or 1; a singular matrix gives (0, -inf); the 0 x 0 matrix (1, 0).
        det = sign * exp(logabsdet), which never overflows as det itself does.

    Raises
    ------
    ValueError
        Not square, fewer than two axes, another dtype, or a NaN or infinite entry (named by its
        position); "triangular" on a matrix that is not.
    """

def audit_matrix(a: ArrayLike, method: Method = "auto") -> dict[str, Any]:
    """The log-determinant of a square matrix with a numerical audit: the document
    `exactflow logdet --audit --json` prints, as a dict with the same keys.

    Parameters
    ----------
    a : array_like, shape (n, n), float32 or float64
        The matrix, in any memory order. float32 input is computed in float32 and recomputed in
        float64.
    method : {"auto", "lu", "triangular"}
        As for slogdet.

    Returns
    -------
    dict
        "n", "sign", "log_abs", "method" ("lu", "triangular-lower" or "triangular-upper"),
        "seconds", and "audit": "precision", "backward_error" (||PA - LU||_1 / (n ||A||_1 eps)),
        "cond1_estimate" (Hager-Higham), "perturbation", "log_abs_error_bound", "bound_valid",
        "f64_recompute" (float32 input), "exact" (the exact determinant of an integer matrix, by
        Bareiss elimination: "digits", "agrees", ...) and "exact_note". Where the JSON writes a
        non-finite number as "inf", "-inf" or "NaN", the dict holds the float.

    Raises
    ------
    ValueError
        Not square, empty, another dtype, or a NaN or infinite entry.
    """

class Flow:
    """A trained normalizing flow, in float64: NICE, RealNVP, Glow or any family exactflow builds.

    Load one with Flow.load(path), or get one from exactflow.train(...). Every method takes the
    context of a conditional flow as context= (an array (N, C), one row per sample); an
    unconditional flow refuses one with ValueError. The GIL is released while computing.
    """

    @staticmethod
    def load(path: PathLike) -> Flow:
        """Loads a flow from a checkpoint: a training run directory (holding model.safetensors) or
        a checkpoint file.

        Raises OSError when the file cannot be read or is not a valid checkpoint. An older
        checkpoint without checksums loads with a UserWarning saying so.
        """

    def save(self, path: PathLike) -> None:
        """Writes the flow as a model-only checkpoint (safetensors, the format FORMAT.md
        specifies), atomically. Flow.load reads it back bit for bit.

        Raises OSError when the file cannot be written.
        """

    def log_prob(self, x: ArrayLike, context: Optional[ArrayLike] = None) -> npt.NDArray[np.float64]:
        """log p(x) of each sample, in nats: an array of shape (N,).

        x is an array (N, *data_shape) of float32 or float64 (a single sample of shape
        data_shape counts as N = 1). It is evaluated in batches of 1024 rows, as `exactflow eval`
        does, so that on the same continuous data the values equal those of
        `exactflow eval --per-sample` bit for bit (a batch of another size may differ in the last
        bits: matrix products sum in another order).

        Raises ValueError for a wrong shape or dtype, NaN or infinite input, or a context that
        does not fit the flow.
        """

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        seed: int = 0,
        context: Optional[ArrayLike] = None,
    ) -> npt.NDArray[np.float64]:
        """n samples of the model, an array (n, *data_shape). temperature scales the base
        distribution's spread (1: the model, 0: its mode). The same seed gives the same samples
        as `exactflow sample --seed`.

        Raises ValueError for n < 1, a negative or non-finite temperature, or more than 2**32
        values in all.
        """

    def encode(self, x: ArrayLike, context: Optional[ArrayLike] = None) -> npt.NDArray[np.float64]:
        """The latents of x, flattened to an array (N, D) with D = prod(data_shape): the final
        latent first, then each factored-out latent of a multi-scale flow in the order it left
        the flow. decode inverts it.

        Raises ValueError as log_prob does.
        """

    def decode(self, z: ArrayLike, context: Optional[ArrayLike] = None) -> npt.NDArray[np.float64]:
        """The data a set of latents maps back to (the inverse of encode): z is an array (N, D) as
        encode returns; the result has shape (N, *data_shape).

        Raises ValueError for a wrong shape, NaN or infinite latents, or a stage whose inverse
        overflows (named).
        """

    def audit(self, x: ArrayLike, context: Optional[ArrayLike] = None) -> dict[str, Any]:
        """The numerical audit of the flow at the samples x, stage by stage: the report
        `exactflow audit --json` prints, as a dict ("precision", "samples", "tolerances",
        "stages", "flow", "pass"). Each stage reports its inverse's error, its log-det against
        the exact (dual-number) and finite-difference Jacobians, the Jacobian's conditioning and
        a gradient check. Each sample costs D forward passes per stage: audit a few.

        Raises ValueError as log_prob does.
        """

    @property
    def config(self) -> dict[str, Any]:
        """The model configuration as a dict: the JSON a checkpoint stores, with the family under
        "model"; it determines the architecture and, with its seed, the initial parameters."""

    @property
    def family(self) -> str:
        """The model family: "nice", "realnvp", "glow", ..."""

    @property
    def data_shape(self) -> Tuple[int, ...]:
        """The shape of one sample, (D,) or (C, H, W)."""

    @property
    def context_dim(self) -> int:
        """The width C of the context a conditional flow takes (0: unconditional)."""

def train(
    model: str,
    data: Union[str, ArrayLike],
    preset: Optional[str] = None,
    steps: Optional[int] = None,
    *,
    epochs: Optional[int] = None,
    batch_size: int = 512,
    lr: float = 1e-3,
    seed: int = 0,
    threads: int = 1,
    precision: str = "f32",
    out: Optional[PathLike] = None,
    toy_samples: Optional[int] = None,
    patience: Optional[int] = None,
    resume: bool = False,
    memory_efficient: bool = False,
    context: Optional[ArrayLike] = None,
    context_embedding: Optional[str] = None,
    progress: bool = True,
) -> Tuple[Flow, dict[str, Any]]:
    """Trains a flow by maximum likelihood, as `exactflow train` does: the same options with the
    same defaults, the same metrics. Returns (flow, metrics).

    Parameters
    ----------
    model : str
        The model family: "nice", "realnvp" (vector RealNVP, or the multi-scale RealNVP on image
        data) or "glow" (image data).
    data : str or array
        A data spec ("moons", "circles", "8gaussians", "checkerboard", "pinwheel", "spirals",
        "digits", "digits-image", "csv:PATH", "npy:PATH", "mnist:DIR", "cifar10:DIR"), or the
        samples themselves: an array (N, D) or (N, C, H, W), float32/float64 (continuous) or uint8
        (256 levels, dequantized), split 80/10/10 by the seed exactly as "npy:PATH" splits the
        same array saved by numpy.save.
    preset : str, optional
        The family's architecture preset; default "digits" for the digits, "mnist" and "cifar10"
        for those, "toy" otherwise.
    steps : int, optional
        Optimizer steps; when neither steps nor epochs is given, 2000 for toy data and 40 epochs
        otherwise.
    epochs : int, optional
        Passes over the training set (not together with steps).
    batch_size : int
        Samples per step (512).
    lr : float
        Peak learning rate of Adam (1e-3), after a warmup of 2% of the steps, cosine decay to 1%
        of it.
    seed : int
        Seed of the initialization, the splits, the batch order and the noise (0).
    threads : int
        Threads of the run (1): one shard of each minibatch per thread where every shard gets
        at least 128 rows (a spline row counts 4, an IAF row one per dimension) and no batch
        norm couples the samples, else split matrix products over
        two threads, as `exactflow train --threads` describes.
        A given count is bit-for-bit reproducible.
    precision : str
        "f32" (the default, as PyTorch and every peer train) or "f64": the arithmetic of training
        and of the checkpoint's tensors. The returned flow holds the trained parameters in f64
        (exactly widened from f32), and the metrics are computed in f64, as the command line's
        eval computes them. A resumed run keeps its checkpoint's precision.
    out : str or path, optional
        Run directory for the checkpoint (written after every epoch), the pictures and
        metrics.json, as the command line writes them. The command line defaults it to
        runs/MODEL-DATA; here the default None writes nothing.
    toy_samples : int, optional
        Training points drawn from a toy distribution, or pairs from a simulator (default 20000
        points, 200000 simulated pairs; validation and test get a quarter each).
    patience : int, optional
        Stop after this many epochs without a better validation NLL (the best model is kept).
    resume : bool
        Continue the run whose checkpoint is in out, exactly where it stopped.
    memory_efficient : bool
        Recompute each layer's input from its output in the backward pass, so memory does not
        grow with depth.
    context : array, optional
        The conditioning input (N, C) of a conditional model, one row per sample of an array
        data; an unconditional model refuses it (ValueError).
    context_embedding : str, optional
        A learned embedding of the context before every conditioner reads it (as sbi's
        embedding_net), in the command line's --context-embedding form: "64,64:16" is an MLP
        C -> 64 -> 64 -> 16 with the preset's activation, "16" one linear map. Needs a
        conditional model; not with resume (ValueError).
    progress : bool
        Show the command line's progress bar on stderr when it is a terminal (one line per epoch
        otherwise). True by default.

    Returns
    -------
    (Flow, dict)
        The trained flow and the metrics of metrics.json: "model", "preset", "data", "seed",
        "threads", "precision", "train", "validation" and "test" (each "nll" in nats and "bits_per_dim" for
        discrete data), "steps", "epochs", "best_epoch", "stopped_early", "samples_per_sec",
        "wall_seconds", "config", "train_config", "pictures".

    Raises
    ------
    ValueError
        An unknown model, preset or data spec, an impossible option, data of the wrong shape or
        dtype, NaN in the data.
    OSError
        A data file or checkpoint that cannot be read or written.
    RuntimeError
        Training diverged (the message names the step, the stage and the last good
        checkpoint).
    """

def load_data(spec: str, seed: int = 0, toy_samples: Optional[int] = None) -> dict[str, Any]:
    """The train / validation / test splits the command line (train, eval, audit) uses for a data
    spec and seed: a dict with "train", "validation" and "test" (float64 arrays, raw values:
    discrete data are not dequantized), "levels" (the number of discrete levels, or None) and
    "name".

    Raises ValueError for an unknown spec, OSError for a file that cannot be read.
    """
