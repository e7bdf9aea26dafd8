"""LSTM autoencoder over the last N feature vectors of a symbol; scores the newest bar's error."""

from __future__ import annotations

import logging
import os

import numpy as np

NAME = "lstm_ae"
CLIP = 10.0  # standardized inputs are clipped so one extreme bar cannot dominate the weights
log = logging.getLogger(__name__)


def configure_tensorflow(threads: int | None = None) -> None:
    """Quiet logs and bound TensorFlow's thread pools (call before the first model is built)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    n = threads or min(2, os.cpu_count() or 1)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised: keep the existing pools
        pass


def build_autoencoder(
    length: int, n_features: int, mean: np.ndarray, std: np.ndarray, units: int = 32
):
    """(trainer, scorer): trainer reconstructs standardized windows; scorer returns squared errors.

    Both share weights; the scorer takes raw feature windows (standardization is inside the model)
    and outputs the per-step, per-feature squared reconstruction error.
    """
    import keras
    from keras import layers

    raw = keras.Input((length, n_features), name="features")
    norm = layers.Normalization(mean=mean, variance=np.square(std), name="standardize")(raw)
    # clip to [-CLIP, CLIP] with serializable layers: relu(x + C, max 2C) - C
    norm = layers.Rescaling(1.0, offset=CLIP)(norm)
    norm = layers.ReLU(max_value=2 * CLIP)(norm)
    norm = layers.Rescaling(1.0, offset=-CLIP, name="clipped")(norm)
    encoded = layers.LSTM(units, name="encoder")(norm)
    repeated = layers.RepeatVector(length)(encoded)
    decoded = layers.LSTM(units, return_sequences=True, name="decoder")(repeated)
    recon = layers.TimeDistributed(layers.Dense(n_features), name="reconstruction")(decoded)
    diff = layers.Subtract()([norm, recon])
    squared = layers.Multiply(name="squared_error")([diff, diff])
    scorer = keras.Model(raw, squared, name="lstm_ae_scorer")
    trainer = keras.Model(raw, [recon, norm], name="lstm_ae")
    return trainer, scorer


def train_autoencoder(
    windows: np.ndarray,
    val_windows: np.ndarray,
    epochs: int,
    units: int = 32,
    batch_size: int = 256,
    seed: int = 0,
):
    """Fit on normal windows (n, length, features); returns the scorer model and the history."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    flat = windows.reshape(-1, windows.shape[-1])
    mean = flat.mean(axis=0)
    std = np.maximum(flat.std(axis=0), 1e-3)
    trainer, scorer = build_autoencoder(windows.shape[1], windows.shape[2], mean, std, units)
    opt = keras.optimizers.Adam(1e-2)

    @tf.function
    def step(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            recon, target = trainer(x, training=True)
            loss = tf.reduce_mean(tf.square(recon - target))
        grads = tape.gradient(loss, trainer.trainable_variables)
        opt.apply_gradients(zip(grads, trainer.trainable_variables, strict=True))
        return loss

    data = (
        tf.data.Dataset.from_tensor_slices(windows)
        .shuffle(len(windows), seed=seed)
        .batch(batch_size)
        .prefetch(2)
    )
    history = []
    for epoch in range(epochs):
        losses = [float(step(batch)) for batch in data]
        val = float(np.mean(autoencoder_errors(scorer, val_windows))) if len(val_windows) else 0
        history.append({"loss": float(np.mean(losses)), "val_loss": val})
        log.info(
            "lstm_ae epoch %d/%d loss %.4f val_loss %.4f",
            epoch + 1,
            epochs,
            history[-1]["loss"],
            val,
        )
    return scorer, history


def autoencoder_errors(scorer, windows: np.ndarray, batch: int = 16_384) -> np.ndarray:
    """Per-feature squared error of each window's newest step, (n, features); one call per batch."""
    if len(windows) == 0:
        return np.zeros((0, scorer.output_shape[-1]), dtype=np.float32)
    parts = [
        np.asarray(scorer.predict_on_batch(windows[i : i + batch]))[:, -1, :]
        for i in range(0, len(windows), batch)
    ]
    return np.concatenate(parts)


def error_scale(errors: np.ndarray, quantile: float = 0.999) -> np.ndarray:
    """Each feature's error at `quantile` on normal training windows: the unit of its tail."""
    return np.maximum(np.quantile(errors, quantile, axis=0), 1e-6).astype(np.float32)


def tail_errors(errors: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per-feature errors in units of their normal tail (1 = the 99.9th percentile)."""
    return errors / scale


def autoencoder_scores(errors: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Anomaly score per row: the largest tail-scaled feature error of the newest step.

    The max, not the mean: correlated price features (return, range, VWAP deviation) move
    together on every large move, and a mean would rank a natural fat-tail return above a
    volume spike that is far rarer for its own feature.
    """
    return tail_errors(errors, scale).max(axis=1) if len(errors) else np.zeros(0)
