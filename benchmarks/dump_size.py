"""Disk size of Figure 1's gradient dumps at the paper's settings: prints one JSON object.

    python benchmarks/dump_size.py [--ks 1,100] [--run RUN_DIR] [--num_estimates 1000]

Figure 1 (protocol.targets.figure_1): demo_normalized, depth 1, batch size 1, data points
0..NUM_DATAPOINTS-1, K in FIGURE_1_KS, REG and DReG, R = GRADIENT_SAMPLES estimates per dump.
For each K in --ks and each estimator, one dump of data point 0 is sampled with the sampler
sample_gradients uses (EncoderGradientSampler) and written in four forms: raw and aggregate
(per-parameter mean and std, `--save_aggregates`), each uncompressed (np.savez, as dumps were
written before) and compressed (np.savez_compressed, the default now). The full Figure 1 is
extrapolated from the mean size per dump: x len(FIGURE_1_KS) x NUM_DATAPOINTS x 2 estimators.

By default the model is a freshly initialised run at the paper's Figure 1 settings (shapes are
what matter for the size; the compressibility of float64 noise barely depends on training);
--run RUN_DIR samples at that run's newest checkpoint instead.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgp_snr.gradient_dumps import load_gradient_dump, save_gradient_dump  # noqa: E402
from dgp_snr.gradients import EncoderGradientSampler  # noqa: E402
from dgp_snr.protocol import FIGURE_1_KS, GRADIENT_SAMPLES, NUM_DATAPOINTS  # noqa: E402
from dgp_snr.protocol.targets import ESTIMATORS, figure_1  # noqa: E402
from dgp_snr.runs import build_run, load_run  # noqa: E402

#: (raw?, compressed?) forms written per dump, keyed as in the JSON.
FORMS = {
    "raw_uncompressed": (False, False),
    "raw_compressed": (False, True),
    "aggregates_uncompressed": (True, False),
    "aggregates_compressed": (True, True),
}


def measure(ks: List[int], num_estimates: int, run_dir: Optional[str] = None) -> Dict[str, object]:
    """Sizes in bytes of one dump per (estimator, K, form), the per-dump means and the
    extrapolation to Figure 1's full grid."""
    if run_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            config = figure_1(tmp).runs[0]  # the paper's Figure 1 run (build_run writes nothing)
            model, _, data = build_run(config)
        source = f"fresh initialisation of {config.run_name}"
    else:
        model, _, data, config = load_run(run_dir)
        source = f"newest checkpoint of {run_dir}"
    sampler = EncoderGradientSampler(model, data.X_train[:1], data.Y_train[:1])
    shapes = None
    dumps = []
    with tempfile.TemporaryDirectory() as tmp:
        for estimator in ESTIMATORS:
            for K in ks:
                rng = tf.random.Generator.from_seed(K)
                start = time.perf_counter()
                samples = sampler.sample(K, num_estimates, estimator, rng=rng)
                seconds = time.perf_counter() - start
                shapes = {k: list(v.shape) for k, v in samples.items()}
                meta = dict(K=K, estimator=estimator, num_samples=num_estimates, datapoint=0)
                sizes = {}
                for form, (aggregates, compress) in FORMS.items():
                    path = Path(tmp) / f"{estimator}_K{K}_{form}.npz"
                    save_gradient_dump(path, samples, meta, aggregates, compress)
                    sizes[form] = path.stat().st_size
                    if not aggregates:  # the written estimates read back bit for bit
                        back = load_gradient_dump(path).samples
                        assert all(np.array_equal(back[k], v) for k, v in samples.items())
                dumps.append(
                    dict(estimator=estimator, K=K, sample_seconds=round(seconds, 2), **sizes)
                )
    per_dump = {form: float(np.mean([d[form] for d in dumps])) for form in FORMS}
    num_dumps = len(FIGURE_1_KS) * NUM_DATAPOINTS * len(ESTIMATORS)
    return {
        "command": "python benchmarks/dump_size.py " + " ".join(sys.argv[1:]),
        "model": source,
        "dtype": str(next(iter(samples.values())).dtype),
        "num_estimates": num_estimates,
        "encoder_gradient_shapes": shapes,
        "entries_per_estimate": int(sum(np.prod(s[1:]) for s in shapes.values())),
        "dumps": dumps,
        "mean_bytes_per_dump": per_dump,
        "compressed_over_uncompressed_raw": per_dump["raw_compressed"]
        / per_dump["raw_uncompressed"],
        "figure_1_dumps": num_dumps,
        "figure_1_grid": dict(
            ks=list(FIGURE_1_KS), datapoints=NUM_DATAPOINTS, estimators=list(ESTIMATORS)
        ),
        "figure_1_mb": {form: per_dump[form] * num_dumps / 1e6 for form in FORMS},
    }


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", default="1,100", help="comma list of the Ks measured")
    p.add_argument("--num_estimates", type=int, default=GRADIENT_SAMPLES)
    p.add_argument("--run", default=None, help="a trained run folder (default: fresh init)")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    print(json.dumps(measure(ks, args.num_estimates, args.run), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
