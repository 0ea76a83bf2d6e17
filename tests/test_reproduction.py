"""Slow reproduction runs (skipped by default): `python -m pytest --runslow -m slow`.

They run the paper's protocol at reduced length on real data and check the paper's claims."""

import numpy as np
import pytest

from dgp_snr.gradients import EncoderGradientSampler, snr
from dgp_snr.runs import RunConfig, build_run

pytestmark = pytest.mark.slow


def _mean_weight_snr(model, data, K: int, estimator: str, points: int = 10) -> float:
    values = []
    for i in range(points):
        sampler = EncoderGradientSampler(model, data.X_train[i : i + 1], data.Y_train[i : i + 1])
        grads = sampler.sample(K, 1000, estimator, rng=None)
        values.append(np.mean([snr(g).mean() for name, g in grads.items() if "/W" in name]))
    return float(np.mean(values))


@pytest.mark.parametrize(
    "dataset,configuration", [("demo_normalized", "L1"), ("winered", "L1_G5")]
)
def test_snr_trends_after_training(dataset, configuration):
    """Figure 1 / Figure 3's claim: after training with K = 50, batch 64, the REG SNR at
    K = 100 is below its K = 1 value and the DReG SNR above it."""
    config = RunConfig.from_flat(
        dataset=dataset,
        configuration=configuration,
        num_IW_samples=50,
        minibatch_size=64,
        estimator="reg",
        iterations=3000,
    )
    model, trainer, data = build_run(config)
    trainer.fit(config.training.iterations, progress=False)
    assert _mean_weight_snr(model, data, 100, "reg") < _mean_weight_snr(model, data, 1, "reg")
    assert _mean_weight_snr(model, data, 100, "dreg") > _mean_weight_snr(model, data, 1, "dreg")


def test_dreg_and_reg_training_both_improve_the_bound_on_winered():
    """Table 1's runs at reduced length: both estimators train the depth-2 model."""
    for estimator in ("reg", "dreg"):
        config = RunConfig.from_flat(
            dataset="winered",
            configuration="L1_G5",
            num_IW_samples=50,
            minibatch_size=64,
            estimator=estimator,
            iterations=2000,
        )
        model, trainer, data = build_run(config)
        first = [trainer.train_step() for _ in range(50)]
        trainer.fit(config.training.iterations, progress=False)
        last = [trainer.train_step() for _ in range(50)]
        se = np.sqrt(np.var(first) / 50 + np.var(last) / 50)
        assert np.mean(last) - np.mean(first) > 4 * se
