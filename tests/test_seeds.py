"""Named random streams: the generators of a run never share draws."""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from dgp_snr.configs import RunConfig
from dgp_snr.runs import build_run
from dgp_snr.seeds import Stream, generator

NUM_DRAWS = 10_000
MAX_LAG = 50  # a shifted copy of a stream sits within a few draws of the original


def _copy(rng: tf.random.Generator) -> tf.random.Generator:
    return tf.random.Generator.from_state(rng.state.numpy(), rng.algorithm)


def _uniforms(rng: tf.random.Generator) -> np.ndarray:
    return _copy(rng).uniform([NUM_DRAWS], dtype=tf.float64).numpy()


def _words(rng: tf.random.Generator) -> set:
    return set(_copy(rng).uniform_full_int([NUM_DRAWS], dtype=tf.int64).numpy().tolist())


def _max_abs_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """max over |lag| <= MAX_LAG of the correlation of a[t] with b[t + lag]."""
    n = NUM_DRAWS - MAX_LAG
    a, b = (x - x.mean() for x in (a, b))
    lags = range(-MAX_LAG, MAX_LAG + 1)
    out = []
    for lag in lags:
        x = a[MAX_LAG : MAX_LAG + n] if lag < 0 else a[:n]
        y = b[MAX_LAG + lag : MAX_LAG + lag + n] if lag < 0 else b[lag : lag + n]
        out.append(abs(np.corrcoef(x, y)[0, 1]))
    return max(out)


def _critical_correlation(num_tests: int, n: int, alpha: float = 1e-3) -> float:
    """|r| bound under independence, Bonferroni over num_tests (r ~ N(0, 1/n))."""
    return stats.norm.isf(alpha / (2 * num_tests)) / np.sqrt(n)


@pytest.fixture(scope="module")
def run_generators():
    # Both minibatch streams exist only when the encoder's batch size differs.
    config = RunConfig.from_flat(
        dataset="demo_normalized", configuration="L1", M=8, minibatch_size=16,
        encoder_minibatch_size=32, seed=0,
    )  # fmt: skip
    model, trainer, _ = build_run(config)
    found = trainer._flatten(predicate=lambda x: isinstance(x, tf.random.Generator))
    unique = list({id(g): g for g in found}.values())
    assert any(g is model.rng for g in unique)
    return unique


def test_every_generator_of_a_run_has_its_own_state(run_generators):
    assert len(run_generators) == 3  # the model's noise, two minibatch orders
    states = [tuple(g.state.numpy()) for g in run_generators]
    keys = [s[-1] for s in states]  # Philox: [counter, counter, key]
    assert len(set(states)) == len(states) and len(set(keys)) == len(keys)


def test_the_first_draws_of_any_two_generators_are_unrelated(run_generators):
    pairs = list(itertools.combinations(run_generators, 2))
    n = NUM_DRAWS - MAX_LAG
    bound = _critical_correlation(len(pairs) * (2 * MAX_LAG + 1), n)
    for a, b in pairs:
        assert not _words(a) & _words(b)
        assert _max_abs_cross_correlation(_uniforms(a), _uniforms(b)) < bound


def test_the_checks_see_the_streams_from_seed_gives_neighbouring_seeds():
    """from_seed(s) and from_seed(s + 1) share a key: the second replays the first shifted by
    one block, which both checks above catch; generator() keys each stream apart."""
    old = [tf.random.Generator.from_seed(s) for s in (5, 6)]
    assert len(_words(old[0]) & _words(old[1])) > NUM_DRAWS // 2
    assert _max_abs_cross_correlation(*map(_uniforms, old)) > 0.9
    new = [generator(s, Stream.MODEL_NOISE) for s in (5, 6)]
    assert not _words(new[0]) & _words(new[1])
    assert _max_abs_cross_correlation(*map(_uniforms, new)) < _critical_correlation(
        2 * MAX_LAG + 1, NUM_DRAWS - MAX_LAG
    )
