"""tf.data input pipelines with seeded, stateless augmentation.

Every random draw is a stateless function of (seed, epoch, batch index), so epoch k yields the
same batches in any process: training resumed from a checkpoint sees exactly what an
uninterrupted run would have seen.
"""

from __future__ import annotations

import math

import numpy as np

import tensorflow as tf

from lightfer_utils import IMAGE_SIZE, NUM_CLASSES
from lightfer_utils.training.config import Augmentation


def augment_batch(images: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Random flip, shift/rotation/zoom (one affine warp) and brightness/contrast on a batch of
    float32 [B, 48, 48, 1] faces in 0..255; ``seed`` is an int64 [2] stateless seed."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)
    if aug.flip:
        flip = tf.random.stateless_uniform([batch], seeds[0]) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    angle = tf.random.stateless_uniform([batch], seeds[1], -1.0, 1.0) * (aug.max_rotation_deg * math.pi / 180)
    zoom = 1.0 + tf.random.stateless_uniform([batch], seeds[2], -1.0, 1.0) * aug.max_zoom
    shift = tf.random.stateless_uniform([batch, 2], seeds[3], -1.0, 1.0) * (aug.max_shift * IMAGE_SIZE)
    # ImageProjectiveTransformV3 maps each output pixel to an input pixel: invert
    # out = zoom * R(angle) (in - c) + c + shift.
    center = (IMAGE_SIZE - 1) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    ox, oy = center + shift[:, 0], center + shift[:, 1]
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = center - (a0 * ox + a1 * oy)
    b2 = center - (b0 * ox + b1 * oy)
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[IMAGE_SIZE, IMAGE_SIZE],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT",
    )
    contrast = 1.0 + tf.random.stateless_uniform([batch, 1, 1, 1], seeds[4], -1.0, 1.0) * aug.max_contrast
    brightness = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[5], -1.0, 1.0) * (aug.max_brightness * 255)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = tf.clip_by_value((images - mean) * contrast + mean + brightness, 0.0, 255.0)
    if aug.erase_probability > 0:
        # seeds of their own, so the draws above stay what they were in runs without erasing
        images = random_erase(images, tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), 7), aug)
    return images


def random_erase(images: tf.Tensor, seed: tf.Tensor, aug: Augmentation) -> tf.Tensor:
    """Replaces one rectangle (area 2 %..erase_max_area of the face, aspect 0.3..3.3) of a share
    erase_probability of the faces with uniform noise."""
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    area = tf.random.stateless_uniform([batch], seeds[0], 0.02, aug.erase_max_area) * IMAGE_SIZE**2
    aspect = tf.exp(tf.random.stateless_uniform([batch], seeds[1], math.log(0.3), math.log(1 / 0.3)))
    height = tf.minimum(tf.sqrt(area * aspect), IMAGE_SIZE)
    width = tf.minimum(tf.sqrt(area / aspect), IMAGE_SIZE)
    corner = tf.random.stateless_uniform([batch, 2], seeds[2]) * tf.stack([IMAGE_SIZE - height, IMAGE_SIZE - width], 1)
    index = tf.range(IMAGE_SIZE, dtype=tf.float32)
    rows = (index[None, :] >= corner[:, :1]) & (index[None, :] < corner[:, :1] + height[:, None])
    cols = (index[None, :] >= corner[:, 1:]) & (index[None, :] < corner[:, 1:] + width[:, None])
    erase = tf.random.stateless_uniform([batch], seeds[3]) < aug.erase_probability
    patch = (rows[:, :, None] & cols[:, None, :] & erase[:, None, None])[..., None]
    noise = tf.random.stateless_uniform(tf.shape(images), seeds[4], 0.0, 255.0)
    return tf.where(patch, noise, images)


def mix_batch(faces: tf.Tensor, targets: tf.Tensor, seed: tf.Tensor, alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Mixup: each face and its target blended with those of the face at the mirrored position of
    the (shuffled) batch, weight lambda ~ Beta(alpha, alpha) drawn per face."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    batch = tf.shape(faces)[:1]
    first = tf.random.stateless_gamma(batch, seeds[0], alpha)
    weight = first / (first + tf.random.stateless_gamma(batch, seeds[1], alpha))
    faces = weight[:, None, None, None] * faces + (1 - weight[:, None, None, None]) * tf.reverse(faces, axis=[0])
    targets = weight[:, None] * targets + (1 - weight[:, None]) * tf.reverse(targets, axis=[0])
    return faces, targets


def _targets(labels: np.ndarray) -> np.ndarray:
    """One-hot (or already soft [N, 7]) float32 targets."""
    if labels.ndim == 2:
        return labels.astype(np.float32)
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def steps_per_epoch(count: int, batch_size: int) -> int:
    """Full batches only: each epoch drops its ragged remainder (< batch_size faces, a different
    set every epoch as the order is reshuffled). Training on a ragged last batch corrupted the
    heap inside oneDNN on an AVX-512 CPU (mini-Xception's strided max-pool + residual add, a
    batch of 27); full batches never did."""
    if count < batch_size:
        raise ValueError(f"{count} training faces is fewer than one batch of {batch_size}; lower the batch size")
    return count // batch_size


def training_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    first_epoch: int = 0,
    augmentation: Augmentation | None = Augmentation(),
) -> tf.data.Dataset:
    """Endless stream of epochs (shuffled, augmented), starting at ``first_epoch``.

    Use with ``steps_per_epoch(len(images), batch_size)`` (full batches only). labels: class indices [N] or soft
    targets [N, 7]; the stream yields float32 faces [B, 48, 48, 1] and targets [B, 7].
    """
    x = tf.constant(images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=tf.uint8)
    y = tf.constant(_targets(labels))
    count = len(images)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=True).enumerate()

        def load(step: tf.Tensor, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            faces, targets = tf.cast(tf.gather(x, index), tf.float32), tf.gather(y, index)
            if augmentation is not None:
                batch_seed = tf.stack([tf.cast(seed, tf.int64) * 100003 + epoch, step])
                faces = augment_batch(faces, batch_seed, augmentation)
                if augmentation.mixup_alpha > 0:  # a seed of its own, so the draws above stay as they were
                    faces, targets = mix_batch(faces, targets, tf.random.experimental.stateless_fold_in(batch_seed, 8),
                                               augmentation.mixup_alpha)
            return faces, targets

        return batches.map(load, num_parallel_calls=1)

    epochs = tf.data.Dataset.range(first_epoch, 1_000_000)
    return epochs.flat_map(one_epoch).prefetch(2)


def evaluation_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> tf.data.Dataset:
    """Faces and targets in order, without augmentation."""
    faces = images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE, 1).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((faces, _targets(labels))).batch(batch_size).prefetch(2)
