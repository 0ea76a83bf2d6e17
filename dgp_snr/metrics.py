"""A run's metrics from the Evaluator (dgp_snr.evaluation): the test log-likelihood and RMSE,
the ELBO per data point and the normality of the predictive samples. `final_results` is what
results.json holds after training; the in-training test logs (dgp_snr.run_logging) use
`test_metrics`.
"""

from typing import Any, Dict

import numpy as np
import scipy.stats

from dgp_snr.configs import RunConfig
from dgp_snr.data import RegressionData
from dgp_snr.evaluation import Evaluator
from dgp_snr.models import DeepGP
from dgp_snr.seeds import Stream, derived_seed

#: Test points whose predictive samples get a Shapiro-Wilk test (the first ones of the test set).
SHAPIRO_POINTS = 100
#: scipy's Shapiro-Wilk p-value is only accurate up to 5000 samples.
SHAPIRO_MAX_SAMPLES = 5000


def test_metrics(
    evaluator: Evaluator, data: RegressionData, num_predictive_samples: int, seed: int
) -> Dict[str, float]:
    """Mean test log-likelihood (num_predictive_samples samples S) and RMSE of the predictive
    mean, in the normalised units and in the original units of Y (the log-likelihood shifts by
    -log Y_std, the RMSE scales)."""
    lpd, mean = evaluator.log_predictive_density_and_mean(
        data.X_test, data.Y_test, num_predictive_samples, seed=seed
    )  # [N_test], [N_test]
    y_std = float(data.Y_std.squeeze())
    rmse = float(np.sqrt(np.mean(np.square(data.Y_test[:, 0] - mean))))
    test_loglik = float(np.mean(lpd))
    return {
        "test_loglik": test_loglik,
        "test_loglik_unnormalized": test_loglik - float(np.log(y_std)),
        "test_rmse": rmse,
        "test_rmse_unnormalized": rmse * y_std,
    }


def median_shapiro_w(
    evaluator: Evaluator, X: np.ndarray, num_predictive_samples: int, seed: int
) -> float:
    """Median over the first SHAPIRO_POINTS points of X [N, D] of the Shapiro-Wilk W statistic
    of each point's min(num_predictive_samples, SHAPIRO_MAX_SAMPLES) predictive samples (1:
    indistinguishable from a normal)."""
    S = min(num_predictive_samples, SHAPIRO_MAX_SAMPLES)
    if S < 3:  # Shapiro-Wilk needs three samples
        return float("nan")
    samples = evaluator.predictive_samples_at(X[:SHAPIRO_POINTS], S, seed=seed)  # [N, S]
    return float(np.median([scipy.stats.shapiro(s).statistic for s in samples]))


def final_results(model: DeepGP, data: RegressionData, config: RunConfig) -> Dict[str, Any]:
    """The run's results at the model's current state: test log-likelihood
    (logging.num_predictive_samples samples) and RMSE (normalised and original units), train
    and test ELBO per data point (the model's K; Evaluator.mean_bound_per_point), and the
    median Shapiro-Wilk W of the predictive samples. Deterministic in the run's seed (the
    Evaluator's draws are stateless)."""
    # One seed per quantity, so that the train and test ELBOs draw independent noise.
    seeds = [derived_seed(config.effective_seed, Stream.FINAL_RESULTS, tag) for tag in range(3)]
    evaluator = Evaluator(model)
    S = config.logging.num_predictive_samples
    results: Dict[str, Any] = test_metrics(evaluator, data, S, seeds[0])
    results["train_elbo"] = float(
        evaluator.mean_bound_per_point(data.X_train, data.Y_train, seed=seeds[1])[0]
    )
    results["test_elbo"] = float(
        evaluator.mean_bound_per_point(data.X_test, data.Y_test, seed=seeds[2])[0]
    )
    results["shapiro_w_median"] = median_shapiro_w(evaluator, data.X_test, S, seeds[0])
    results["num_predictive_samples"] = S
    results["num_test_points"] = int(data.X_test.shape[0])
    return results
