"""Speed and memory benchmark: prints one JSON object.

    python benchmarks/run.py           # full (about 30 minutes on a 2-core CPU)
    python benchmarks/run.py --quick   # smaller counts, a few minutes

All numbers come from one process, so ratios between them are meaningful even on a noisy
machine; float64 and mixed precision (dgp_snr.precision) are timed in alternating rounds. Runs
unchanged on a GPU (TensorFlow places the ops there); "device" names what it ran on. Needs
DGP_SNR_DATA (winered, demo_normalized) like the library.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The offline UCI copies beside the checkout, as in the tests, unless DGP_SNR_DATA says otherwise.
_SHARED = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "uci"
)
if os.path.isdir(_SHARED):
    os.environ.setdefault("DGP_SNR_DATA", os.path.normpath(_SHARED))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgp_snr.builder import build_model  # noqa: E402
from dgp_snr.data import get_regression_data  # noqa: E402
from dgp_snr.gradients import EncoderGradientSampler  # noqa: E402
from dgp_snr.layers import GPLayer  # noqa: E402
from dgp_snr.models import DeepGP  # noqa: E402
from dgp_snr.precision import MIXED  # noqa: E402
from dgp_snr.training import Trainer, TrainingConfig  # noqa: E402

FIGURE1_KS = [1] + list(range(5, 101, 5))
FIGURE3_KS = [1, 10, 100, 1000]
PRECISIONS = ("float64", "mixed")


def device_name() -> str:
    """The accelerator TensorFlow uses (its first GPU's name), else the CPU's model name."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} (x{len(gpus)})"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores"


def _rate(fn: Callable[[], object], count: int, warmup: int = 2) -> float:
    """Calls per second of fn over `count` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def _interleaved_rates(
    fns: Dict[str, Callable[[], object]], count: int, rounds: int = 4, warmup: int = 2
) -> Dict[str, float]:
    """Calls per second of each fn over `count` calls, timed in `rounds` alternating blocks, so
    that a change in the machine's load hits every fn alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    elapsed = {name: 0.0 for name in fns}
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(per_round):
                fn()
            elapsed[name] += time.perf_counter() - start
    return {name: per_round * rounds / t for name, t in elapsed.items()}


def matmul_gflops(
    n: int = 1024, repeats: int = 10, dtype: tf.DType = tf.float64, shape: Sequence[int] = ()
) -> float:
    """GEMM throughput of this device in `dtype`, measured now: [n, n] @ [n, n], or
    [m, k] @ [k, n] for shape = (m, k, n)."""
    m, k, n = shape or (n, n, n)
    a = tf.random.normal([m, k], dtype=dtype)
    b = tf.random.normal([k, n], dtype=dtype)
    mm = tf.function(lambda: tf.reduce_sum(tf.linalg.matmul(a, b)[:1, :1]))
    rate = _rate(lambda: mm().numpy(), repeats)
    return 2 * m * k * n * rate / 1e9


def bench_gemm() -> Dict[str, float]:
    """TensorFlow's float64 and float32 GEMM rates: 1024² and the hidden layer's quadratic-form
    shape (5 x 128 rows of q_sqrt times the 128 x 3,200 projection). Full float32, as mixed
    precision runs it (TensorFloat-32 off on GPUs)."""
    MIXED.require_full_float32()
    out = {}
    for dtype in (tf.float64, tf.float32):
        out[f"gemm_gflops_{dtype.name}"] = matmul_gflops(dtype=dtype)
        out[f"gemm_gflops_{dtype.name}_640x128x3200"] = matmul_gflops(
            dtype=dtype, shape=(640, 128, 3200), repeats=20
        )
    out["matmul_gflops"] = out["gemm_gflops_float64"]  # the name earlier runs reported
    return out


def step_flops(model: DeepGP, batch_size: int, num_importance_samples: int) -> float:
    """Estimated floating-point work of one training step: the dominant matrix products of
    every GP layer's forward and backward pass (kernel, triangular solve, quadratic forms)."""
    N = batch_size * num_importance_samples
    total = 0.0
    for layer in model.layers:
        if not isinstance(layer, GPLayer):
            continue
        M, D_in = layer.Z.shape
        L = layer.num_latent_gps
        forward = 2 * M * N * D_in + M * M * N + 2 * M * N * L + 2 * L * M * M * N
        backward = 4 * M * N * D_in + 3 * M * M * N + 4 * M * N * L + 2 * L * M * M * N
        total += forward + backward
    return float(total)


def _paper_trainer(precision: str) -> Trainer:
    data = get_regression_data("winered", 0)
    model = build_model(
        "L1_G5",
        data.X_train,
        data.Y_train,
        num_importance_samples=50,
        M=128,
        estimator="dreg",
        seed=0,
        precision=precision,
    )
    config = TrainingConfig(estimator="dreg", minibatch_size=64)
    return Trainer(model, data.X_train, data.Y_train, config, seed=0)


def bench_training(quick: bool) -> Dict[str, float]:
    """The paper's main configuration: winered, L1_G5, IWAE, K=50, batch 64, M=128, DReG,
    natural gradients on the final layer; float64 and mixed precision in alternating rounds."""
    trainers = {p: _paper_trainer(p) for p in PRECISIONS}
    rates = _interleaved_rates(
        {p: t.train_step for p, t in trainers.items()}, 20 if quick else 120, warmup=3
    )
    trainer, compiled = trainers["float64"], rates["float64"]
    model = trainer.model
    traces = trainer.trace_count  # the eager calls below run the Python body, counting each
    eager = _rate(trainer._train_step, 3 if quick else 10, warmup=1)
    return {
        "train_it_per_s": compiled,
        "train_it_per_s_mixed": rates["mixed"],
        "train_mixed_over_float64": rates["mixed"] / compiled,
        "paper_run_hours": 300_000 / compiled / 3600,
        "paper_run_hours_mixed": 300_000 / rates["mixed"] / 3600,
        "train_it_per_s_eager": eager,
        "train_compiled_over_eager": compiled / eager,
        "train_traces": traces,
        "train_step_gflop_estimate": step_flops(model, 64, 50) / 1e9,
        "train_gflops_achieved": step_flops(model, 64, 50) * compiled / 1e9,
    }


def _demo_model(
    configuration: str, dataset: str = "demo_normalized", precision: str = "float64"
) -> tuple:
    data = get_regression_data(dataset, 0)
    model = build_model(
        configuration,
        data.X_train,
        data.Y_train,
        num_importance_samples=50,
        M=128,
        estimator="dreg",
        precision=precision,
    )
    return model, data


def bench_gradient_sampling(quick: bool) -> Dict[str, float]:
    """Encoder-gradient estimates per second for a depth-2 model at K=50, batch size 1:
    batched (EncoderGradientSampler, float64 and mixed) versus one compiled call per estimate."""
    n_batched = 1000 if quick else 5000
    samplers = {}
    for precision in PRECISIONS:
        model, data = _demo_model("L1_G5", precision=precision)
        X, Y = data.X_train[:1], data.Y_train[:1]
        samplers[precision] = EncoderGradientSampler(model, X, Y)
    rates = _interleaved_rates(
        {p: (lambda s=s: s.sample(50, n_batched, "dreg")) for p, s in samplers.items()},
        2 if quick else 4,
        rounds=2,
        warmup=1,
    )
    batched = rates["float64"]
    model = samplers["float64"].model
    Xt, Yt = tf.constant(X), tf.constant(Y)

    @tf.function
    def one_estimate():
        with tf.GradientTape() as tape:
            prop = model.propagate(Xt, Yt, 50)
            surrogate = model.encoder_surrogate(prop, Yt, "dreg")
        return tape.gradient(surrogate, model.encoder_variables)

    loop = _rate(lambda: [g.numpy() for g in one_estimate()], 50 if quick else 200, 3)
    return {
        "grad_samples_per_s_batched": batched * n_batched,
        "grad_samples_per_s_mixed": rates["mixed"] * n_batched,
        "grad_samples_per_s_loop": loop,
        "grad_samples_batched_over_loop": batched * n_batched / loop,
    }


def gradient_data_seconds(
    configuration: str,
    dataset: str,
    ks: Sequence[int],
    points: int,
    estimates: int,
    precision: str,
) -> List[float]:
    """Wall time of one run's gradient data, as experiments/sample_gradients.py makes it:
    restore a checkpoint, then `estimates` REG and DReG estimates at each K for training points
    0 .. points-1 (batch size 1), each written as an .npz. Returns [seconds, files]."""
    model, data = _demo_model(configuration, dataset, precision)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = tf.train.Checkpoint(model=model)
        path = checkpoint.save(os.path.join(tmp, "ckpt"))
        start = time.perf_counter()
        restored, _ = _demo_model(configuration, dataset, precision)
        tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
        count = 0
        for i in range(points):
            sampler = EncoderGradientSampler(
                restored, data.X_train[i : i + 1], data.Y_train[i : i + 1]
            )
            for estimator in ("reg", "dreg"):
                for K in ks:
                    samples = sampler.sample(K, estimates, estimator)
                    np.savez(os.path.join(tmp, f"{estimator}_{K}_{i}.npz"), **samples)
                    count += 1
        return [time.perf_counter() - start, count]


def _warm_up(configuration: str, dataset: str) -> None:
    """A tiny untimed gradient-data run in each precision first: autograph converts the code
    once per process, so without it whichever precision runs first pays for both."""
    for precision in PRECISIONS:
        gradient_data_seconds(configuration, dataset, [2], 1, 10, precision)


def bench_figure1(quick: bool) -> Dict[str, float]:
    """Wall time for Figure 1's gradient data from one checkpoint (demo_normalized, L1): REG and
    DReG, 21 values of K, 10 data points, 1000 samples each (quick: 3 values of K, 2 points),
    in float64 and in mixed precision."""
    ks = [1, 50, 100] if quick else FIGURE1_KS
    points = 2 if quick else 10
    out: Dict[str, float] = {}
    _warm_up("L1", "demo_normalized")
    for precision in PRECISIONS:
        suffix = "" if precision == "float64" else f"_{precision}"
        seconds, files = gradient_data_seconds(
            "L1", "demo_normalized", ks, points, 1000, precision
        )
        out[f"figure1_data_s{suffix}"] = seconds
    out["figure1_data_files"] = files
    out["figure1_mixed_over_float64"] = out["figure1_data_s_mixed"] / out["figure1_data_s"]
    return out


def bench_figure3(quick: bool) -> Dict[str, float]:
    """Wall time for one Figure 3 run's gradient data (winered, L1_G5, the depth-2 bar): REG and
    DReG, K in 1, 10, 100, 1000, 10 data points, 1000 estimates each (quick: 1 point, 100
    estimates), in float64 and in mixed precision."""
    points, estimates = (1, 100) if quick else (10, 1000)
    out: Dict[str, float] = {}
    _warm_up("L1_G5", "winered")
    for precision in PRECISIONS:
        suffix = "" if precision == "float64" else f"_{precision}"
        seconds, files = gradient_data_seconds(
            "L1_G5", "winered", FIGURE3_KS, points, estimates, precision
        )
        out[f"figure3_run_data_s{suffix}"] = seconds
    out["figure3_run_data_files"] = files
    out["figure3_mixed_over_float64"] = out["figure3_run_data_s_mixed"] / out["figure3_run_data_s"]
    return out


_RSS_CHILD = """
import os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from dgp_snr.builder import build_model
from dgp_snr.data import get_regression_data
from dgp_snr.evaluation import Evaluator
data = get_regression_data("winered", 0)
model = build_model("L1_G5", data.X_train, data.Y_train, num_importance_samples=50, M=128)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tll = Evaluator(model).test_log_likelihood(
    data.X_test, data.Y_test, num_predictive_samples=int(sys.argv[1]), repeats=1
).mean
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before / 1024, after / 1024, float(tll))
"""


def bench_test_ll_memory(quick: bool) -> Dict[str, float]:
    """Peak resident memory of the Monte Carlo test log-likelihood on winered's test set at
    10,000 samples, in a fresh process (so the peak is this evaluation's)."""
    samples = 2000 if quick else 10000
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(samples)],
        check=True,
        capture_output=True,
        text=True,
    )
    before, after, tll = (float(x) for x in out.stdout.split()[-3:])
    return {
        "peak_rss_mb": after,
        "peak_rss_mb_before_eval": before,
        "test_ll_samples": samples,
        "test_ll_s": time.perf_counter() - start,
        "test_ll_untrained": tll,
    }


def _logged(bench: Callable[..., Dict], *args: object) -> Dict:
    """Runs one benchmark section, noting its start and wall time on stderr (progress for a
    run of many minutes; the JSON on stdout stays clean)."""
    print(f"{bench.__name__} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    out = bench(*args)
    print(f"{bench.__name__}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a few minutes)")
    args = parser.parse_args()
    result: Dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "device": device_name(),
        "tensorflow": tf.__version__,
        "quick": args.quick,
    }
    result.update(
        _logged(
            bench_gemm,
        )
    )
    result.update(_logged(bench_training, args.quick))
    result["train_fraction_of_matmul"] = (
        result["train_gflops_achieved"] / result["matmul_gflops"]  # type: ignore[operator]
    )
    result.update(_logged(bench_gradient_sampling, args.quick))
    result.update(_logged(bench_figure1, args.quick))
    result.update(_logged(bench_figure3, args.quick))
    result.update(_logged(bench_test_ll_memory, args.quick))
    result["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
