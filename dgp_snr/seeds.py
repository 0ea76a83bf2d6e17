"""Named random streams: every random draw derives its seed from (run seed, stream, tags) here,
so no two purposes ever share draws and what one part draws never shifts another's.

`tf.random.Generator.from_seed(s)` puts `s` into Philox's counter and leaves the key 0, so
`from_seed(s + 1)` replays `from_seed(s)` shifted by one block: small seeds never give
independent streams. `generator` instead draws the whole Philox state (key included) from a
SeedSequence; the model's noise and the minibatch order use it."""

import enum
from typing import List

import numpy as np
import tensorflow as tf


class Stream(enum.IntEnum):
    """The purposes that draw random numbers; each value is part of every derived seed."""

    TEST_LL = 1  # Monte Carlo test log-likelihood (per point and repeat)
    ELBO = 2  # full-data bound (per point and repeat)
    PREDICT = 3  # predictive samples (Figure 5)
    GRADIENTS = 4  # gradient dumps (per checkpoint, batch, data point, K)
    TRAINING_LOGS = 5  # in-training TensorBoard logs (per step)
    FINAL_RESULTS = 6  # a run's results.json
    MODEL_NOISE = 7  # the model's own generator: training's noise (DeepGP.rng)
    MINIBATCHES = 8  # the trainer's epoch permutations (tag 0: the model's, 1: the encoder's)


def _state(seed: int, stream: Stream, tags) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(Stream(stream)), *map(int, tags)])


def derived_seed(seed: int, stream: Stream, *tags: int) -> int:
    """A 63-bit seed for one stream and cell (`tags`), independent of every other."""
    words = _state(seed, stream, tags).generate_state(2, np.uint32).astype(np.int64)
    return int(words[0] << 31 ^ words[1])


def derived_rng(seed: int, stream: Stream, *tags: int) -> tf.random.Generator:
    """A generator for one stream and cell (`tags`), independent of every other and of the
    model's own generator."""
    return tf.random.Generator.from_seed(derived_seed(seed, stream, *tags))


def generator(seed: int, stream: Stream, *tags: int) -> tf.random.Generator:
    """A Philox generator for one stream and cell whose key and counter both come from
    (seed, stream, tags), so that no two streams share a key (unlike `from_seed`)."""
    words = _state(seed, stream, tags).generate_state(3, np.uint64).astype(np.int64)
    return tf.random.Generator.from_state(words, alg="philox")


def stream_keys(seed: int, stream: Stream, repeat: int, count: int) -> List[int]:
    """`count` independent 63-bit keys for (seed, stream, repeat), e.g. one per layer; they key
    stateless per-point draws."""
    state = _state(seed, stream, [repeat]).generate_state(2 * count, np.uint32)
    return [
        int((np.uint64(state[2 * i]) << np.uint64(31)) ^ np.uint64(state[2 * i + 1]))
        for i in range(count)
    ]
