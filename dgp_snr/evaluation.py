"""Evaluating trained runs: the Monte Carlo test log-likelihood (with the predictive mean from
the same samples), the full-data train ELBO (and the bound per data point on any set) and
predictive samples, all compiled and chunked so that memory stays bounded, plus the paper's run
sets' evaluation (Table 1, Figure 4; which runs enter is dgp_snr.protocol's rule) and the
plain-text figure data files. train_run's final results and
in-training test logs use the same Evaluator.

Memory. One compiled call pushes B points x S samples ("rows") through the layers; a GP layer
with M inducing points and L latent GPs holds a few [L, M, rows] arrays. The Evaluator picks B
(and, when even one point's S samples are too many, a sample chunk) so that
rows * max_l(M_l * L_l) <= max_elements; 10,000 samples at 10,000 test points run in pieces.

Randomness. Every random draw is a stateless function of (seed, purpose, repeat, layer) and the
point's index in the data set, so a point's estimate does not depend on how the points (or the
samples) are chunked: one chunk and many chunks give the same numbers for the same seed.

Figure data files (``<results_path>/figure_data/*.txt``) are tab-separated text, one line per
run: ``dataset  flag  split  value_1 ... value_R`` with flag T or F (Figure 4: T = q(w) fixed
to the prior; Table 1: T = DReG) and the R repeated estimates, as the reference writes them.
Each line is preceded by a comment recording what made it (FigureDataRow.made: the run, the
checkpoint step it was evaluated at, the samples per estimate, the repeats and the seed), so a
file evaluated at an older checkpoint or with other settings is not taken as complete
(protocol.jobs.EvalJob.complete). Readers of the reference's format skip comments.
"""

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from scipy.special import logsumexp
from tqdm.auto import tqdm

from dgp_snr.io import describe_write_error, write_json
from dgp_snr.models import DeepGP
from dgp_snr.protocol import (
    ELBO_REPEATS,
    PAPER_ITERATIONS,
    TEST_REPEATS,
    TEST_SAMPLES,
    SplitSelection,
    missing_runs,
    select_splits,
    train_command,
)
from dgp_snr.runs import (
    CHECKPOINT_DIR,
    atomic_write_text,
    latest_checkpoint_step,
    load_config,
    load_run,
)
from dgp_snr.seeds import Stream, stream_keys

#: Elements (rows x M x latent GPs) per compiled call; about 128 MiB per float64 intermediate.
DEFAULT_MAX_ELEMENTS = 2**24
EVALUATION_FILE = "evaluation.json"
FIGURE_DATA_DIR = "figure_data"


# ------------------------------------------------------------------------------ the evaluator
def row_cost(model: DeepGP) -> int:
    """Elements per propagated row in the largest GP layer: max_l M_l * L_l."""
    return max(int(layer.Z.shape[0]) * layer.num_latent_gps for layer in model.gp_layers)


@dataclass
class TestLogLikelihood:
    """Repeated Monte Carlo estimates of the mean test log predictive density.

    values: [R], one per repeat (each the mean over test points of log (1/S) Σ_s p(y | s))."""

    values: np.ndarray
    num_predictive_samples: int  # S

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation over the repeats (0 for a single repeat)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


class Evaluator:
    """Compiled, memory-bounded evaluation of one model.

    max_elements bounds rows x M x L per compiled call (see the module docstring)."""

    def __init__(self, model: DeepGP, max_elements: int = DEFAULT_MAX_ELEMENTS):
        if max_elements < 1:
            raise ValueError(f"max_elements must be positive, got {max_elements}")
        self.model = model
        self.max_elements = int(max_elements)
        self.row_cost = row_cost(model)
        self.widths = [layer.noise_width for layer in model.layers[:-1]]
        self._joint = any(layer.samples_jointly for layer in model.layers[:-1])
        self._noise = tf.function(self._noise_impl, reduce_retracing=True)
        self._normal_per_point = tf.function(_normal_per_point, reduce_retracing=True)
        self._log_sum_density = tf.function(self._log_sum_density_impl, reduce_retracing=True)
        self._per_point_bound = tf.function(self._per_point_bound_impl, reduce_retracing=True)
        self._f_marginals = tf.function(self._f_marginals_impl, reduce_retracing=True)

    # -------------------------------------------------------------- chunking and noise
    def chunk_sizes(self, samples_per_point: int, num_points: int) -> Tuple[int, int]:
        """(points per call, samples per call) with points * samples * row_cost bounded."""
        rows = max(1, self.max_elements // self.row_cost)
        if samples_per_point <= rows or self._joint:
            return max(1, min(num_points, rows // samples_per_point)), samples_per_point
        return 1, rows

    def _noise_impl(
        self, idx: tf.Tensor, keys: tf.Tensor, samples_per_point: int
    ) -> List[tf.Tensor]:
        """Per layer, noise [B, S, width]: point idx[b]'s draw depends on (keys, idx[b]) only."""
        return [
            _normal_per_point(idx, keys[layer_i], [samples_per_point, width])
            for layer_i, width in enumerate(self.widths)
        ]

    def _point_noise(
        self, idx: np.ndarray, seed: int, purpose: int, repeat: int, samples_per_point: int
    ) -> List[Optional[tf.Tensor]]:
        keys = stream_keys(seed, purpose, repeat, len(self.widths) + 1)
        if not self.widths:
            return [None]
        idx_t = tf.constant(idx, dtype=tf.int64)
        return list(self._noise(idx_t, tf.constant(keys, dtype=tf.int64), samples_per_point)) + [
            None
        ]

    @staticmethod
    def _point_chunks(
        N: int, B: int, progress: bool = False, desc: str = ""
    ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """(rows [<= B], rows padded to B by repeating the last: fixed shapes, one trace) for
        consecutive chunks of N points."""
        for start in tqdm(range(0, N, B), disable=not progress, desc=desc, leave=False):
            rows = np.arange(start, min(start + B, N), dtype=np.int64)
            yield rows, np.concatenate([rows, np.full(B - len(rows), rows[-1], dtype=np.int64)])

    @staticmethod
    def _sample_chunks(
        noise: List[Optional[tf.Tensor]], samples_per_point: int, S_chunk: int
    ) -> Iterator[Tuple[List[Optional[tf.Tensor]], int]]:
        """(noise [B, s, ...] per layer, s) for consecutive chunks of the S samples."""
        for s0 in range(0, samples_per_point, S_chunk):
            s1 = min(s0 + S_chunk, samples_per_point)
            yield [None if n is None else n[:, s0:s1] for n in noise], s1 - s0

    # -------------------------------------------------------------- compiled pieces
    def _log_sum_density_impl(self, X, Y, noise, samples_per_point: int):
        """[B] log Σ_s N(y | m_s, v_s + σ²) and [B] Σ_s m_s over the S samples (w from the
        prior), from one pass."""
        prop = self.model.propagate(X, None, samples_per_point, noise=noise)
        log_dens = self.model.predictive_log_densities(prop, Y)  # [B, S]
        return tf.reduce_logsumexp(log_dens, axis=1), tf.reduce_sum(prop.f_mean[..., 0], axis=1)

    def _per_point_bound_impl(self, X, Y, noise, samples_per_point: int) -> tf.Tensor:
        """[B]: each point's term of the model's bound (w from q(w | x, y))."""
        prop = self.model.propagate(X, Y, samples_per_point, noise=noise)
        return self.model.per_point_bound(prop, Y)

    def _f_marginals_impl(self, X, noise, samples_per_point: int):
        prop = self.model.propagate(X, None, samples_per_point, noise=noise)
        return prop.f_mean[..., 0], prop.f_var[..., 0]  # [B, S]

    # -------------------------------------------------------------- public
    def log_predictive_density(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        repeat: int = 0,
        progress: bool = False,
    ) -> np.ndarray:
        """[N]: log (1/S) Σ_s N(y_n | m_s(x_n), v_s(x_n) + σ²) per point, X [N, D], Y [N, 1]."""
        return self.log_predictive_density_and_mean(
            X, Y, num_predictive_samples, seed, repeat, progress
        )[0]

    def log_predictive_density_and_mean(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        repeat: int = 0,
        progress: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Per point, from the same S samples: the log predictive density [N] (as
        log_predictive_density) and the predictive mean (1/S) Σ_s m_s(x_n) [N]."""
        X, Y = _check_xy(X, Y)
        if num_predictive_samples < 1:
            raise ValueError(
                f"num_predictive_samples must be at least 1, got {num_predictive_samples}"
            )
        N = X.shape[0]
        B, S_chunk = self.chunk_sizes(num_predictive_samples, N)
        lpd, mean = np.empty(N), np.empty(N)
        for idx, padded in self._point_chunks(N, B, progress, "test LL"):
            Xc, Yc = tf.constant(X[padded]), tf.constant(Y[padded])
            noise = self._point_noise(padded, seed, Stream.TEST_LL, repeat, num_predictive_samples)
            log_sums, mean_sums = [], []
            for piece, S in self._sample_chunks(noise, num_predictive_samples, S_chunk):
                log_sum, mean_sum = self._log_sum_density(Xc, Yc, piece, S)
                log_sums.append(log_sum.numpy())
                mean_sums.append(mean_sum.numpy())
            total = log_sums[0] if len(log_sums) == 1 else logsumexp(np.stack(log_sums), axis=0)
            lpd[idx] = total[: len(idx)] - math.log(num_predictive_samples)
            mean[idx] = np.sum(mean_sums, axis=0)[: len(idx)] / num_predictive_samples
        return lpd, mean

    def test_log_likelihood(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        repeats: int = TEST_REPEATS,
        seed: int = 0,
        progress: bool = False,
    ) -> TestLogLikelihood:
        """The mean test log predictive density, estimated `repeats` times independently."""
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        values = np.array(
            [
                self.log_predictive_density(X, Y, num_predictive_samples, seed, r, progress).mean()
                for r in range(repeats)
            ]
        )
        return TestLogLikelihood(values, num_predictive_samples)

    def _bound_sums(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_importance_samples: Optional[int],
        repeats: int,
        seed: int,
        progress: bool,
    ) -> Tuple[np.ndarray, float]:
        """([R] Σ_n per-point term of the model's bound over X [N, D], Y [N, 1], each repeat
        with fresh samples (K = num_importance_samples, default the model's); Σ KL[q(u) || p(u)]).
        """
        X, Y = _check_xy(X, Y)
        K = num_importance_samples
        K = self.model.num_importance_samples if K is None else int(K)
        if K < 1:
            raise ValueError(f"num_importance_samples must be at least 1, got {K}")
        N = X.shape[0]
        rows = max(1, self.max_elements // self.row_cost)
        B = max(1, min(N, rows // K))
        kl_u = float(tf.add_n([layer.prior_kl() for layer in self.model.gp_layers]).numpy())
        sums = []
        for r in range(repeats):
            total = 0.0
            for idx, padded in self._point_chunks(N, B, progress, "ELBO"):
                noise = self._point_noise(padded, seed, Stream.ELBO, r, K)
                terms = self._per_point_bound(
                    tf.constant(X[padded]), tf.constant(Y[padded]), noise, K
                ).numpy()
                total += float(np.sum(terms[: len(idx)]))
            sums.append(total)
        return np.array(sums), kl_u

    def train_elbo(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_importance_samples: Optional[int] = None,
        repeats: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> np.ndarray:
        """[R]: the model's bound (its mode: VI, IWVI or CIWAE; K = num_importance_samples,
        default the model's) on the whole of X [N, D], Y [N, 1], each repeat with fresh samples:
        Σ_n per-point term - Σ KL[q(u) || p(u)]. X should be the training set (num_data = N)."""
        sums, kl_u = self._bound_sums(X, Y, num_importance_samples, repeats, seed, progress)
        return sums - kl_u

    def mean_bound_per_point(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_importance_samples: Optional[int] = None,
        repeats: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> np.ndarray:
        """[R]: the bound per data point on any set X [N', D], Y [N', 1] (the training set or
        another): (1/N') Σ_n per-point term - Σ KL[q(u) || p(u)] / num_data, K and repeats as
        in train_elbo. On the training set it is train_elbo / N."""
        sums, kl_u = self._bound_sums(X, Y, num_importance_samples, repeats, seed, progress)
        return sums / len(X) - kl_u / self.model.num_data

    def predictive_samples(
        self,
        x: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        index: int = 0,
    ) -> np.ndarray:
        """[S]: samples of y from the predictive distribution at one input x [D] (or [1, D]).

        `index` names the point in its data set (it selects the random stream)."""
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        return self.predictive_samples_at(x, num_predictive_samples, seed, [index])[0]

    def predictive_samples_at(
        self,
        X: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        indices: Optional[Sequence[int]] = None,
    ) -> np.ndarray:
        """[N, S]: samples of y from the predictive distribution at each row of X [N, D].

        indices [N] (default 0 .. N-1) name the points in their data set: they select the
        random streams, so row n equals predictive_samples(X[n], S, seed, indices[n])."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"expected X [N, D] with N > 0, got {X.shape}")
        if num_predictive_samples < 1:
            raise ValueError(
                f"num_predictive_samples must be at least 1, got {num_predictive_samples}"
            )
        N = X.shape[0]
        indices = np.arange(N) if indices is None else np.asarray(indices).reshape(-1)
        if indices.shape != (N,):
            raise ValueError(f"expected {N} indices, got {indices.shape[0]}")
        indices = indices.astype(np.int64)
        B, S_chunk = self.chunk_sizes(num_predictive_samples, N)
        y_key = tf.constant(stream_keys(seed, Stream.PREDICT, 1, 1)[0], dtype=tf.int64)
        sigma2 = float(self.model.likelihood.variance.numpy())
        out = np.empty((N, num_predictive_samples))
        for rows, padded in self._point_chunks(N, B):
            Xc, idx = tf.constant(X[padded]), indices[padded]
            noise = self._point_noise(idx, seed, Stream.PREDICT, 0, num_predictive_samples)
            means, variances = [], []
            for piece, S in self._sample_chunks(noise, num_predictive_samples, S_chunk):
                mean, var = self._f_marginals(Xc, piece, S)
                means.append(mean.numpy())
                variances.append(var.numpy())
            mean, var = np.concatenate(means, axis=1), np.concatenate(variances, axis=1)
            y_noise = self._normal_per_point(
                tf.constant(idx), y_key, [num_predictive_samples]
            ).numpy()
            out[rows] = (mean + np.sqrt(var + sigma2) * y_noise)[: len(rows)]
        return out


def _normal_per_point(idx: tf.Tensor, key: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
    """[B, *shape] standard normals; row b is a stateless function of (key, idx[b]) only."""
    seeds = tf.stack([tf.fill(tf.shape(idx), key), idx], axis=1)  # [B, 2]
    return tf.map_fn(
        lambda s: tf.random.stateless_normal(shape, seed=s, dtype=tf.float64),
        seeds,
        fn_output_signature=tf.float64,
    )


def _check_xy(X: np.ndarray, Y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or Y.shape[1] != 1 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"expected X [N, D] and Y [N, 1], got {X.shape} and {Y.shape}")
    if X.shape[0] == 0:
        raise ValueError("no points to evaluate")
    return X, Y


# ------------------------------------------------------------------------------ runs
@dataclass
class RunEvaluation:
    """What evaluate_run computed (or found cached) for one run at one checkpoint.

    test_ll: [R] mean test log-likelihood per repeat (None when not asked for);
    train_elbo: [R] full-data train ELBO per repeat (None when not asked for)."""

    run_name: str
    step: int
    test_ll: Optional[np.ndarray] = None
    train_elbo: Optional[np.ndarray] = None
    cached: Dict[str, bool] = field(default_factory=dict)


def _cache_key(kind: str, step: int, samples: Optional[int], repeats: int, seed: int) -> str:
    # "S=": the samples per point (S or K); the key's spelling is evaluation.json's format.
    return f"{kind}:step={step}:S={samples}:R={repeats}:seed={seed}"


def _read_cache(run_dir: Path) -> Dict[str, dict]:
    path = run_dir / EVALUATION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"corrupt evaluation cache {path}: {err}; delete it to recompute"
        ) from err
    if not isinstance(data, dict):
        raise ValueError(f"corrupt evaluation cache {path}: expected a JSON object")
    return data


def _write_cache(run_dir: Path, data: Dict[str, dict]) -> None:
    """Caches results; a failed write (e.g. a read-only folder) only warns, since the results
    are returned anyway."""
    try:
        write_json(run_dir / EVALUATION_FILE, data, indent=2, sort_keys=True)
    except OSError as err:
        warnings.warn(f"results not cached: {describe_write_error(err)}", stacklevel=3)


def evaluate_run(
    run_dir: os.PathLike,
    test_ll: bool = True,
    elbo: bool = False,
    num_predictive_samples: int = TEST_SAMPLES,
    repeats: int = TEST_REPEATS,
    elbo_repeats: int = ELBO_REPEATS,
    seed: int = 0,
    step: Optional[int] = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    recompute: bool = False,
    progress: bool = False,
) -> RunEvaluation:
    """Test log-likelihood ([repeats] values, S = `num_predictive_samples` each) and/or the
    full-data train ELBO ([elbo_repeats] values, the run's K) of a run's checkpoint (default:
    latest).

    Results are cached in <run_dir>/evaluation.json, keyed by step, samples, repeats and seed;
    `recompute` ignores the cache. Raises FileNotFoundError for a run without a checkpoint."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    explicit_step = step is not None
    if step is None:
        step = latest_checkpoint_step(run_dir)
        if step is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint in {CHECKPOINT_DIR}/ yet")
    cache = {} if recompute else _read_cache(run_dir)
    keys = {
        "test_ll": _cache_key("test_ll", step, num_predictive_samples, repeats, seed),
        "train_elbo": _cache_key(
            "train_elbo", step, config.model.num_importance_samples, elbo_repeats, seed
        ),
    }
    wanted = [k for k, on in (("test_ll", test_ll), ("train_elbo", elbo)) if on]
    result = RunEvaluation(config.run_name, step)
    todo = []
    for kind in wanted:
        if keys[kind] in cache:
            setattr(result, kind, np.asarray(cache[keys[kind]]["values"], dtype=np.float64))
            result.cached[kind] = True
        else:
            todo.append(kind)
    if not todo:
        return result

    # Default: the newest readable checkpoint (a damaged newer one is passed over, warned).
    model, trainer, data, _ = load_run(run_dir, step if explicit_step else None)
    restored = int(trainer.step.numpy())
    if restored != step:
        return evaluate_run(
            run_dir, test_ll, elbo, num_predictive_samples, repeats, elbo_repeats, seed, restored,
            max_elements, recompute, progress,
        )  # fmt: skip
    evaluator = Evaluator(model, max_elements)
    if recompute:
        cache = _read_cache(run_dir)
    for kind in todo:
        if kind == "test_ll":
            values = evaluator.test_log_likelihood(
                data.X_test, data.Y_test, num_predictive_samples, repeats, seed, progress
            ).values
        else:
            values = evaluator.train_elbo(
                data.X_train, data.Y_train, None, elbo_repeats, seed, progress
            )
        if not np.all(np.isfinite(values)):
            raise FloatingPointError(f"{run_dir}: {kind} is not finite: {values}")
        setattr(result, kind, values)
        result.cached[kind] = False
        cache[keys[kind]] = {"values": values.tolist(), "step": step}
    _write_cache(run_dir, cache)
    return result


# ------------------------------------------------------------------------------ figure data
@dataclass
class FigureDataRow:
    """One line of a figure data file: dataset, flag (Figure 4: fixq; Table 1: DReG), split and
    the repeated values [R]; `made`: what made them (MADE_FIELDS; None when not recorded)."""

    dataset: str
    flag: bool
    split: int
    values: np.ndarray
    made: Optional[Dict[str, object]] = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))


def figure_data_path(results_path: os.PathLike, name: str) -> Path:
    """<results_path>/figure_data/<name>.txt"""
    return Path(results_path) / FIGURE_DATA_DIR / f"{name}.txt"


PREVIEW_MARKER = "PREVIEW: unfinished runs"
#: The comment before a data line that records what made it: "# made: {json}".
MADE_MARKER = "made:"
#: What a row's record holds: its run, the checkpoint step evaluated, S (samples per test
#: log-likelihood, or the run's K for the ELBO), the repeats R and the evaluation seed.
MADE_FIELDS = ("run", "step", "samples", "repeats", "seed")


def write_figure_data(
    path: os.PathLike, rows: Iterable[FigureDataRow], preview: bool = False
) -> Path:
    """Writes rows (tab-separated: dataset, T/F, split, values) atomically; `preview` marks the
    file (a comment line) as holding runs that had not reached the protocol's iterations."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {PREVIEW_MARKER}\n"] if preview else []
    for row in rows:
        if row.made is not None:
            lines.append(f"# {MADE_MARKER} {json.dumps(row.made, sort_keys=True)}\n")
        values = "\t".join(repr(float(v)) for v in np.atleast_1d(row.values))
        lines.append(f"{row.dataset}\t{'T' if row.flag else 'F'}\t{row.split}\t{values}\n")
    atomic_write_text(path, "".join(lines))
    return path


def read_figure_data(path: os.PathLike) -> List[FigureDataRow]:
    """Reads a figure data file (tabs or spaces); raises ValueError naming the file and line
    for a malformed line, FileNotFoundError when it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"figure data file {path} does not exist")
    rows = []
    made: Optional[Dict[str, object]] = None  # the record of the next data line
    for number, line in enumerate(path.read_text().splitlines(), 1):
        comment = line.lstrip()
        if comment.startswith("#"):
            text = comment[1:].strip()
            if text.startswith(MADE_MARKER):
                try:
                    made = json.loads(text[len(MADE_MARKER) :])
                except ValueError:
                    made = None  # an unreadable record counts as none
            continue
        if not line.strip():
            continue
        cols = line.split()
        try:
            if len(cols) < 4:
                raise ValueError("expected: dataset, T/F, split, one or more values")
            if cols[1] not in ("T", "F"):
                raise ValueError(f"flag must be T or F, got {cols[1]!r}")
            values = np.array([float(v) for v in cols[3:]])
            record = made if isinstance(made, dict) else None
            rows.append(FigureDataRow(cols[0], cols[1] == "T", int(cols[2]), values, record))
            made = None
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: malformed figure data ({err})") from None
    return rows


def figure_data_is_preview(path: os.PathLike) -> bool:
    """Whether a figure data file was written from unfinished runs (evaluate.py --preview)."""
    path = Path(path)
    return path.is_file() and any(
        line.strip() == f"# {PREVIEW_MARKER}" for line in path.read_text().splitlines()
    )


# ------------------------------------------------------------------------------ targets
def target_files(target: str, results_path: os.PathLike = "results") -> Dict[str, Path]:
    """The data files a target writes: metric -> path."""
    if target == "figure_4":
        return {"test_ll": figure_data_path(results_path, "figure_4")}
    if target == "table_1":
        return {
            "test_ll": figure_data_path(results_path, "table_1_tll"),
            "train_elbo": figure_data_path(results_path, "table_1_elbo"),
        }
    raise ValueError(f"unknown evaluation target {target!r}; known: figure_4, table_1")


@dataclass
class TargetReport:
    """What evaluate_target did: the files written, the runs evaluated, the split selection and
    the runs still to train (or finish) for the wanted number of splits."""

    written: Dict[str, Path]
    evaluated: List[RunEvaluation]
    selection: SplitSelection
    missing: list


def evaluate_target(
    target: str,
    results_path: os.PathLike = "results",
    datasets: Optional[Sequence[str]] = None,
    splits: Optional[int] = None,
    iterations: int = PAPER_ITERATIONS,
    preview: bool = False,
    num_predictive_samples: int = TEST_SAMPLES,
    repeats: int = TEST_REPEATS,
    elbo_repeats: int = ELBO_REPEATS,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    recompute: bool = False,
    progress: bool = False,
    log=print,
) -> TargetReport:
    """Evaluates the runs that enter `target` (figure_4: test LL; table_1: test LL and train
    ELBO) and writes its data files. Which runs enter is the reference's rule
    (protocol.select_splits): per dataset the first `splits` splits whose runs all reached
    `iterations`, each evaluated at that step; `preview` lets unfinished runs in at their latest
    checkpoint and marks the files "PREVIEW: unfinished runs". The splits used and skipped, and
    the runs still to train, are logged. Nothing is written when no split qualifies."""
    selection = select_splits(target, results_path, datasets, splits, iterations, preview)
    for line in selection.describe():
        log(line)
    files = target_files(target, results_path)
    rows: Dict[str, List[FigureDataRow]] = {metric: [] for metric in files}
    evaluated = []
    for i, run in enumerate(selection.runs):
        log(f"[{i + 1}/{len(selection.runs)}] {run.config.run_name} (step {run.step})")
        result = evaluate_run(
            run.config.run_dir(),
            test_ll=True,
            elbo="train_elbo" in files,
            num_predictive_samples=num_predictive_samples,
            repeats=repeats,
            elbo_repeats=elbo_repeats,
            seed=seed,
            step=run.step,
            max_elements=max_elements,
            recompute=recompute,
            progress=progress,
        )
        evaluated.append(result)
        for metric in files:
            values = getattr(result, metric)
            elbo = metric == "train_elbo"
            made = {
                "run": run.config.run_name,
                "step": result.step,
                "samples": (
                    run.config.model.num_importance_samples if elbo else num_predictive_samples
                ),
                "repeats": elbo_repeats if elbo else repeats,
                "seed": seed,
            }
            rows[metric].append(FigureDataRow(run.dataset, run.flag, run.split, values, made))
            log(f"    {metric}: mean {np.mean(values):.6g} over {len(values)} repeats")
    written = {}
    if evaluated:
        for metric, path in files.items():
            written[metric] = write_figure_data(path, rows[metric], preview=preview)
    missing = missing_runs(selection, results_path)
    if missing:
        log(f"{len(missing)} run(s) to train or finish for {selection.num_splits} splits each:")
        for run in missing:
            log(f"  {run.config.run_name}: {train_command(run.config)}")
    return TargetReport(written, evaluated, selection, missing)
