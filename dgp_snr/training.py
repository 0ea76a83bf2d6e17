"""Training: one compiled step updates the encoder from its estimator's gradient, the other
parameters from the bound's gradient with Adam or SGD, and the final layer's q(u) with natural
gradients, each on a staircase-decayed schedule."""

import numbers
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import gpflow
import numpy as np
import tensorflow as tf
import tf_keras
from gpflow.optimizers import NaturalGradient
from tqdm.auto import tqdm

from dgp_snr.estimators import Estimator
from dgp_snr.gradients import bound_and_gradients
from dgp_snr.models import DeepGP
from dgp_snr.seeds import Stream, generator

OPTIMIZERS = ("adam", "sgd")
#: Monte Carlo draws per step: "shared", one propagation feeds the encoder's, Adam's and the
#: natural-gradient update; "independent", each update draws its own noise on the same
#: minibatch, as the reference builds its three objectives (three propagations per step).
UPDATE_DRAWS = ("shared", "independent")


@dataclass
class TrainingConfig:
    """The reference trainer's optimisation settings (defaults as PAPER.md lists them).
    `iterations` and `checkpoint_freq` are the schedule of a run (train_run), not of
    `Trainer.fit`, which takes the iterations it runs to."""

    estimator: str = "reg"
    minibatch_size: Optional[int] = 512
    encoder_minibatch_size: Optional[int] = None
    lr: float = 5e-3
    encoder_lr: float = 5e-3
    lr_decay: float = 0.98
    encoder_lr_decay: float = 0.98
    gamma: float = 0.01
    gamma_decay: float = 0.98
    decay_steps: int = 1000
    optimizer: str = "adam"
    encoder_optimizer: str = "adam"
    use_nat_grad_for_final_layer: bool = True
    clip_encoder_grads: Optional[float] = None
    assert_no_nans: bool = False
    update_draws: str = "shared"
    iterations: int = 5000
    checkpoint_freq: int = 500

    def __post_init__(self) -> None:
        Estimator.parse(self.estimator)
        if self.update_draws not in UPDATE_DRAWS:
            raise ValueError(
                f"unknown update_draws {self.update_draws!r}; known: {', '.join(UPDATE_DRAWS)}"
            )
        for name in ("optimizer", "encoder_optimizer"):
            if getattr(self, name) not in OPTIMIZERS:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; known: {', '.join(OPTIMIZERS)}"
                )
        for name in ("minibatch_size", "encoder_minibatch_size"):
            value = getattr(self, name)
            # Types are RunConfig.validated's to check; this one catches impossible sizes.
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and value < 1:
                raise ValueError(
                    f"{name} must be at least 1 (or None for full batch), got {value}"
                )


def _make_optimizer(name: str, lr: float, decay: float, decay_steps: int):
    schedule = tf_keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=decay_steps, decay_rate=decay, staircase=True
    )
    if name == "adam":
        # epsilon 1e-8: TF1's AdamOptimizer default, which the paper's runs used (Keras: 1e-7)
        return tf_keras.optimizers.Adam(learning_rate=schedule, epsilon=1e-8)
    return tf_keras.optimizers.SGD(learning_rate=schedule)


class _Minibatches(tf.Module):
    """Epoch-wise shuffled minibatches drawn in-graph (state is checkpointed)."""

    def __init__(self, num_data: int, batch_size: Optional[int], rng: tf.random.Generator):
        super().__init__()
        self.num_data = num_data
        self.batch_size = num_data if batch_size is None else min(batch_size, num_data)
        self.rng = rng
        self.perm = tf.Variable(tf.range(num_data, dtype=tf.int64), trainable=False)
        self.cursor = tf.Variable(np.int64(num_data), trainable=False)  # shuffle on first use

    def next_indices(self) -> tf.Tensor:
        if self.batch_size == self.num_data:
            return tf.range(self.num_data, dtype=tf.int64)
        if self.cursor + self.batch_size > self.num_data:
            keys = self.rng.uniform([self.num_data], dtype=tf.float64)
            self.perm.assign(tf.cast(tf.argsort(keys), tf.int64))
            self.cursor.assign(0)
        idx = self.perm[self.cursor : self.cursor + self.batch_size]
        self.cursor.assign_add(self.batch_size)
        return idx


class Trainer(tf.Module):
    """Holds the model, the data, the optimisers and the step counter; `train_step` is one
    compiled iteration and `fit` runs many with a progress bar. `seed` (the run's seed) keys
    the minibatch order's named streams, independent of the model's noise."""

    def __init__(
        self,
        model: DeepGP,
        X: np.ndarray,
        Y: np.ndarray,
        config: TrainingConfig,
        *,
        seed: int = 0,
    ):
        super().__init__()
        model.check_estimator(config.estimator)
        self.model = model
        self.config = config
        self.X = tf.constant(np.asarray(X, dtype=np.float64))
        self.Y = tf.constant(np.asarray(Y, dtype=np.float64))
        N = int(self.X.shape[0])
        self.step = tf.Variable(np.int64(0), trainable=False)
        self.batches = _Minibatches(
            N, config.minibatch_size, generator(seed, Stream.MINIBATCHES, 0)
        )
        self.encoder_batches = (
            None
            if config.encoder_minibatch_size in (None, config.minibatch_size)
            else _Minibatches(
                N, config.encoder_minibatch_size, generator(seed, Stream.MINIBATCHES, 1)
            )
        )
        self.optimizer = _make_optimizer(
            config.optimizer, config.lr, config.lr_decay, config.decay_steps
        )
        self.encoder_optimizer = _make_optimizer(
            config.encoder_optimizer,
            config.encoder_lr,
            config.encoder_lr_decay,
            config.decay_steps,
        )
        final = model.layers[-1]
        self.natgrad_params = (
            [final.q_mu, final.q_sqrt] if config.use_nat_grad_for_final_layer else []
        )
        for p in self.natgrad_params:
            gpflow.set_trainable(p, False)  # natural gradients move them, not Adam
        self.gamma = tf.Variable(config.gamma, dtype=tf.float64, trainable=False)
        self.natgrad = NaturalGradient(gamma=self.gamma)
        self.other_variables: List[tf.Variable] = model.non_encoder_variables
        # Create the optimisers' slots now so the step traces once, not twice.
        self.optimizer.build(self.other_variables)
        self.encoder_optimizer.build(model.encoder_variables)
        self.trace_count = 0
        self._compiled_step = tf.function(self._train_step)

    def learning_rates(self) -> Dict[str, float]:
        """Current learning rates and natural-gradient step size."""
        step = self.step.numpy()
        cfg = self.config
        decay = float(step // cfg.decay_steps)
        return {
            "lr": cfg.lr * cfg.lr_decay**decay,
            "encoder_lr": cfg.encoder_lr * cfg.encoder_lr_decay**decay,
            "gamma": cfg.gamma * cfg.gamma_decay**decay,
        }

    def _train_step(self) -> tf.Tensor:
        self.trace_count += 1  # runs once per trace, not per call
        cfg = self.config
        idx = self.batches.next_indices()
        X, Y = tf.gather(self.X, idx), tf.gather(self.Y, idx)
        encoder_XY = None
        if self.encoder_batches is not None:
            idx = self.encoder_batches.next_indices()
            encoder_XY = tf.gather(self.X, idx), tf.gather(self.Y, idx)
        bound, grads, encoder_grads = self.gradients(X, Y, encoder_XY)
        # Optimisers minimise the negative bound.
        grads = [-g for g in grads]
        encoder_grads = [-g for g in encoder_grads]
        if cfg.clip_encoder_grads is not None:
            c = cfg.clip_encoder_grads
            encoder_grads = [tf.clip_by_value(g, -c, c) for g in encoder_grads]
        n = len(self.other_variables)
        if n:
            self.optimizer.apply_gradients(zip(grads[:n], self.other_variables))
        if self.model.encoder_variables:
            self.encoder_optimizer.apply_gradients(
                zip(encoder_grads, self.model.encoder_variables)
            )
        if self.natgrad_params:
            decay = tf.cast(self.step // cfg.decay_steps, tf.float64)
            self.gamma.assign(cfg.gamma * cfg.gamma_decay**decay)
            q_mu, q_sqrt = self.natgrad_params
            self.natgrad._natgrad_apply_gradients(grads[n], grads[n + 1], q_mu, q_sqrt)
        if cfg.assert_no_nans:
            for v in list(self.model.trainable_variables) + [
                p.unconstrained_variable for p in self.natgrad_params
            ]:
                tf.debugging.assert_all_finite(v, f"{v.name} is not finite after the step")
        self.step.assign_add(1)
        return bound

    def gradients(self, X: tf.Tensor, Y: tf.Tensor, encoder_XY: Optional[tuple] = None) -> tuple:
        """(bound, gradients of other_variables then of the natural-gradient parameters,
        encoder gradients) of the bound on the minibatch X [B, D], Y [B, 1] at the current
        parameters, with the config's update_draws; the encoder's on `encoder_XY` if given."""
        est = self.config.estimator
        nat_vars = [p.unconstrained_variable for p in self.natgrad_params]
        if self.config.update_draws == "shared":
            bound, grads, encoder_grads = bound_and_gradients(
                self.model, X, Y, est, self.other_variables + nat_vars
            )
        else:
            bound, grads, _ = bound_and_gradients(self.model, X, Y, est, self.other_variables)
            if nat_vars:
                grads = grads + bound_and_gradients(self.model, X, Y, est, nat_vars)[1]
            encoder_XY = (X, Y) if encoder_XY is None else encoder_XY  # a draw of its own
        if encoder_XY is not None:
            encoder_grads = bound_and_gradients(self.model, *encoder_XY, est, [])[2]
        return bound, grads, encoder_grads

    def train_step(self) -> float:
        """One compiled iteration; returns the minibatch bound before the update."""
        return float(self._compiled_step())

    def fit(
        self,
        iterations: int,
        callback: Optional[Callable[[int, float], None]] = None,
        progress: bool = True,
    ) -> float:
        """Runs until `self.step` reaches `iterations`; `callback(step, bound)` after each
        step. Returns the last bound."""
        bound = float("nan")
        start = int(self.step.numpy())
        with tqdm(
            total=iterations, initial=start, disable=not progress, desc="train", unit="it"
        ) as bar:
            while int(self.step.numpy()) < iterations:
                bound = self.train_step()
                bar.update(1)
                bar.set_postfix(bound=f"{bound:.4g}", refresh=False)
                if callback is not None:
                    callback(int(self.step.numpy()), bound)
        return bound
