"""Two trainings with one thread each at once, or one training with two threads at a time?
Prints one JSON object (training rates and the projected hours for a campaign of runs).

    python benchmarks/thread_layout.py [--steps 300] [--dataset wilson_solar] [--precision mixed]

Each layout runs in fresh processes (TensorFlow fixes its thread pools at start): "one_x2" is
one REG training with 2 intra-op threads; "two_x1" is a REG and a DReG training at once with 1
thread each. The model is the Table 1 / Figure 4 one (L1_G5, K = 50, batch 64).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

_SHARED = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "uci"
)
if os.path.isdir(_SHARED):
    os.environ.setdefault("DGP_SNR_DATA", os.path.normpath(_SHARED))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _child(dataset: str, estimator: str, precision: str, steps: int, warmup: int) -> None:
    import tensorflow as tf

    threads = int(os.environ["TF_NUM_INTRAOP_THREADS"])
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from dgp_snr.configs import RunConfig
    from dgp_snr.runs import build_run

    config = RunConfig.from_flat(
        dataset=dataset, split=0, configuration="L1_G5", num_IW_samples=50,
        minibatch_size=64, estimator=estimator, precision=precision,
    )  # fmt: skip
    _, trainer, _ = build_run(config)
    for _ in range(warmup):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    print(json.dumps({"it_per_s": steps / (time.perf_counter() - start)}))


def _run(jobs: List[Dict[str, str]], args: argparse.Namespace) -> List[float]:
    procs = []
    for job in jobs:
        env = dict(os.environ, TF_NUM_INTRAOP_THREADS=job["threads"], OMP_NUM_THREADS="1")
        env["TF_NUM_INTEROP_THREADS"] = "1"
        argv = [sys.executable, __file__, "--child", job["estimator"]]
        argv += ["--dataset", args.dataset, "--precision", args.precision]
        argv += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            sys.exit(f"a timing process failed (exit {proc.returncode})")
        rates.append(json.loads(out.strip().splitlines()[-1])["it_per_s"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--dataset", default="wilson_solar")
    parser.add_argument("--precision", default="mixed", choices=("float64", "mixed"))
    parser.add_argument("--iterations", type=int, default=300_000, help="per run (projection)")
    parser.add_argument("--runs", type=int, default=3, help="runs in the campaign (projection)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.dataset, args.child, args.precision, args.steps, args.warmup)
        return
    one = _run([dict(estimator="reg", threads="2")], args)[0]
    two = _run([dict(estimator="reg", threads="1"), dict(estimator="dreg", threads="1")], args)
    hours = lambda seconds: seconds / 3600  # noqa: E731
    # one_x2: the runs one after the other; two_x1: pairs at once, an odd run last on 2 threads.
    pairs, odd = divmod(args.runs, 2)
    print(json.dumps(dict(
        dataset=args.dataset, precision=args.precision, steps=args.steps,
        one_x2_it_per_s=one, two_x1_it_per_s=two,
        two_x1_total_over_one_x2=sum(two) / one,
        campaign_hours_one_x2=hours(args.runs * args.iterations / one),
        campaign_hours_two_x1=hours(
            pairs * args.iterations / min(two) + odd * args.iterations / one
        ),
    ), indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
