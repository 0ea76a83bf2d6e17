"""Speed and memory benchmark: prints one JSON object.

    python benchmarks/run.py           # full (a few minutes on a 2-core CPU)
    python benchmarks/run.py --quick   # smaller counts, about a minute

All numbers come from one process, so ratios between them are meaningful even on a noisy
machine. Needs DGP_SNR_DATA (winered) like the library.
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
from typing import Callable, Dict

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
from dgp_snr.training import Trainer, TrainingConfig  # noqa: E402

FIGURE1_KS = [1] + list(range(5, 101, 5))


def _rate(fn: Callable[[], object], count: int, warmup: int = 2) -> float:
    """Calls per second of fn over `count` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - start)


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """float64 GEMM throughput of this machine, measured now."""
    a = tf.random.normal([n, n], dtype=tf.float64)
    mm = tf.function(lambda: tf.linalg.matmul(a, a))
    rate = _rate(lambda: mm().numpy(), repeats)
    return 2 * n**3 * rate / 1e9


def step_flops(model: DeepGP, batch_size: int, num_samples: int) -> float:
    """Estimated floating-point work of one training step: the dominant matrix products of
    every GP layer's forward and backward pass (kernel, triangular solve, quadratic forms)."""
    N = batch_size * num_samples
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


def bench_training(quick: bool) -> Dict[str, float]:
    """The paper's main configuration: winered, L1_G5, IWAE, K=50, batch 64, M=128, DReG,
    natural gradients on the final layer."""
    data = get_regression_data("winered", 0)
    model = build_model(
        "L1_G5", data.X_train, data.Y_train, num_samples=50, M=128, estimator="dreg", seed=0
    )
    config = TrainingConfig(estimator="dreg", minibatch_size=64, seed=0)
    trainer = Trainer(model, data.X_train, data.Y_train, config)
    compiled = _rate(trainer.train_step, 20 if quick else 100, warmup=3)
    traces = trainer.trace_count  # the eager calls below run the Python body, counting each
    eager = _rate(trainer._train_step, 3 if quick else 10, warmup=1)
    return {
        "train_it_per_s": compiled,
        "train_it_per_s_eager": eager,
        "train_compiled_over_eager": compiled / eager,
        "train_traces": traces,
        "train_step_gflop_estimate": step_flops(model, 64, 50) / 1e9,
        "train_gflops_achieved": step_flops(model, 64, 50) * compiled / 1e9,
    }


def _demo_model(configuration: str) -> tuple:
    data = get_regression_data("demo_normalized", 0)
    model = build_model(
        configuration, data.X_train, data.Y_train, num_samples=50, M=128, estimator="dreg"
    )
    return model, data


def bench_gradient_sampling(quick: bool) -> Dict[str, float]:
    """Encoder-gradient estimates per second for a depth-2 model at K=50, batch size 1:
    batched (EncoderGradientSampler) versus one compiled call per estimate."""
    model, data = _demo_model("L1_G5")
    X, Y = data.X_train[:1], data.Y_train[:1]
    sampler = EncoderGradientSampler(model, X, Y)
    n_batched = 1000 if quick else 5000
    batched = _rate(lambda: sampler.sample(50, n_batched, "dreg"), 1 if quick else 2, 1)
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
        "grad_samples_per_s_loop": loop,
        "grad_samples_batched_over_loop": batched * n_batched / loop,
    }


def bench_figure1(quick: bool) -> Dict[str, float]:
    """Wall time for Figure 1's gradient data from one checkpoint: REG and DReG, 21 values of
    K, 10 data points, 1000 samples each (quick: 3 values of K, 2 points)."""
    model, data = _demo_model("L1")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = tf.train.Checkpoint(model=model)
        path = checkpoint.save(os.path.join(tmp, "ckpt"))
        start = time.perf_counter()
        restored, _ = _demo_model("L1")
        tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
        ks = [1, 50, 100] if quick else FIGURE1_KS
        points = 2 if quick else 10
        count = 0
        for i in range(points):
            sampler = EncoderGradientSampler(
                restored, data.X_train[i : i + 1], data.Y_train[i : i + 1]
            )
            for estimator in ("reg", "dreg"):
                for K in ks:
                    samples = sampler.sample(K, 1000, estimator)
                    np.savez(os.path.join(tmp, f"{estimator}_{K}_{i}.npz"), **samples)
                    count += 1
        elapsed = time.perf_counter() - start
    return {"figure1_data_s": elapsed, "figure1_data_files": count}


_RSS_CHILD = """
import os, resource, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from dgp_snr.builder import build_model
from dgp_snr.data import get_regression_data
from dgp_snr.evaluation import Evaluator
data = get_regression_data("winered", 0)
model = build_model("L1_G5", data.X_train, data.Y_train, num_samples=50, M=128)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tll = Evaluator(model).test_log_likelihood(
    data.X_test, data.Y_test, num_samples=int(sys.argv[1]), repeats=1
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    args = parser.parse_args()
    result: Dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "tensorflow": tf.__version__,
        "quick": args.quick,
    }
    result["matmul_gflops"] = matmul_gflops()
    result.update(bench_training(args.quick))
    result["train_fraction_of_matmul"] = (
        result["train_gflops_achieved"] / result["matmul_gflops"]  # type: ignore[operator]
    )
    result.update(bench_gradient_sampling(args.quick))
    result.update(bench_figure1(args.quick))
    result.update(bench_test_ll_memory(args.quick))
    result["self_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
