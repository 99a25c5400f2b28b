"""Model zoo: one builder per architecture, every model taking raw 48x48x1 faces (0..255).

Each model normalises its input inside the graph and ends in a softmax over the 7 FER2013
classes, so every exported format takes the same raw faces and gives the same probabilities.
That softmax is float32 also when a run trains in mixed precision (the loss needs its digits).
"""

from __future__ import annotations

import inspect

from typing import Callable

import tf_keras as keras
from tf_keras import layers, regularizers

from lightfer_utils import IMAGE_SIZE, NUM_CLASSES

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def _input() -> tuple[keras.Input, keras.layers.Layer]:
    raw = keras.Input(shape=INPUT_SHAPE, name="face")
    scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(raw)
    return raw, scaled


def _classifier(x, name: str, dropout: float = 0.0) -> keras.layers.Layer:
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)


def mini_xception(l2: float = 0.01) -> keras.Model:
    """Zhou et al. 2020 / Arriaga et al. 2017 mini-Xception: 58,423 params (56,951 trainable)."""
    reg = regularizers.l2(l2)
    raw, x = _input()
    for i in range(2):
        x = layers.Conv2D(8, 3, use_bias=False, kernel_regularizer=reg, name=f"stem_conv{i}")(x)
        x = layers.BatchNormalization(name=f"stem_bn{i}")(x)
        x = layers.Activation("relu", name=f"stem_relu{i}")(x)
    for block, filters in enumerate((16, 32, 64, 128)):
        p = f"block{block}_"
        residual = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False, name=p + "res_conv")(x)
        residual = layers.BatchNormalization(name=p + "res_bn")(residual)
        x = layers.SeparableConv2D(filters, 3, padding="same", depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, use_bias=False, name=p + "sep0")(x)
        x = layers.BatchNormalization(name=p + "bn0")(x)
        x = layers.Activation("relu", name=p + "relu0")(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", depthwise_regularizer=reg,
                                   pointwise_regularizer=reg, use_bias=False, name=p + "sep1")(x)
        x = layers.BatchNormalization(name=p + "bn1")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=p + "pool")(x)
        x = layers.Add(name=p + "add")([x, residual])
    x = layers.Conv2D(NUM_CLASSES, 3, padding="same", name="class_conv")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(raw, out, name="mini_xception")


def _conv_bn_relu(x, filters: int, name: str, kernel: int = 3, strides: int = 1, reg=None):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_regularizer=reg, name=name + "_conv")(x)
    x = layers.BatchNormalization(name=name + "_bn")(x)
    return layers.Activation("relu", name=name + "_relu")(x)


def light_fer_net(
    widths: tuple[int, ...] = (32, 64, 128, 208),
    blocks: tuple[int, ...] = (0, 1, 1, 1),
    dropout: float = 0.3,
    weight_decay: float = 5e-5,
) -> keras.Model:
    """Our compact family: residual stages of dense 3x3 convolutions, max-pool between stages,
    global average pooling. Dense 3x3 convolutions run far faster per FLOP than depthwise ones
    on x86 CPUs (oneDNN), so this spends its FLOPs where the hardware is efficient.
    """
    if len(widths) != len(blocks):
        raise ValueError("widths and blocks need one entry per stage")
    reg = regularizers.l2(weight_decay) if weight_decay else None
    raw, x = _input()
    x = _conv_bn_relu(x, widths[0], "stem", reg=reg)
    for stage, (filters, count) in enumerate(zip(widths, blocks)):
        if stage:
            x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        for block in range(count):
            p = f"stage{stage}_block{block}"
            shortcut = x
            if x.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, use_bias=False, kernel_regularizer=reg, name=p + "_proj")(x)
                shortcut = layers.BatchNormalization(name=p + "_proj_bn")(shortcut)
            y = _conv_bn_relu(x, filters, p + "_a", reg=reg)
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=reg, name=p + "_b_conv")(y)
            y = layers.BatchNormalization(name=p + "_b_bn")(y)
            x = layers.Activation("relu", name=p + "_out")(layers.Add(name=p + "_add")([y, shortcut]))
    return keras.Model(raw, _classifier(x, "light_fer_net", dropout), name="light_fer_net")


def vgg_style(widths: tuple[int, ...] = (64, 128, 256, 512), dense: int = 512, dropout: float = 0.5) -> keras.Model:
    """VGG-style comparison model of the papers' Tables 2-3: conv pairs, max-pool, FC head."""
    raw, x = _input()
    for stage, filters in enumerate(widths):
        for i in range(2):
            x = _conv_bn_relu(x, filters, f"stage{stage}_{i}")
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(raw, out, name="vgg_style")


def simple_cnn(dropout: float = 0.5) -> keras.Model:
    """The 'simple CNN' comparison model: three conv/pool stages and a fully connected head."""
    raw, x = _input()
    for stage, filters in enumerate((32, 64, 128)):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    out = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(raw, out, name="simple_cnn")


def _applications_model(application: Callable[..., keras.Model], name: str, size: int) -> keras.Model:
    """A keras.applications network (random init) fed by an in-graph resize of the gray face."""
    raw = keras.Input(shape=INPUT_SHAPE, name="face")
    x = layers.Resizing(size, size, name="resize")(raw)
    x = layers.Concatenate(name="to_rgb")([x, x, x])
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="normalise")(x)
    backbone = application(weights=None, include_top=False, input_shape=(size, size, 3), pooling="avg")
    out = layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="probabilities")(backbone(x))
    return keras.Model(raw, out, name=name)


def xception(input_size: int = 71, bn_momentum: float = 0.99) -> keras.Model:
    """The paper's model: keras.applications.Xception (weights=None); needs >= 71x71x3 input.
    `bn_momentum` is its batch-norm layers' moving-average momentum (Keras: 0.99). Trained from
    scratch at a learning rate of 1e-3, 0.99 let the moving statistics trail the weights so far that
    inference mode answered one class (docs/measurements.md); 0.9, PyTorch's default, follows them
    within about 10 steps."""
    if input_size < 71:
        raise ValueError(f"Xception needs an input of at least 71x71, got {input_size}")
    if not 0 <= bn_momentum < 1:
        raise ValueError(f"bn_momentum must lie in [0, 1), got {bn_momentum}")
    model = _applications_model(keras.applications.Xception, "xception", input_size)
    for layer in model.get_layer("xception").layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = bn_momentum
    return model


def resnet50(input_size: int = 48) -> keras.Model:
    """ResNet-50 comparison model (keras.applications, weights=None); needs >= 32x32 input."""
    if input_size < 32:
        raise ValueError(f"ResNet-50 needs an input of at least 32x32, got {input_size}")
    return _applications_model(keras.applications.ResNet50, "resnet50", input_size)


BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "light_fer_net": light_fer_net,
    "mini_xception": mini_xception,
    "vgg_style": vgg_style,
    "simple_cnn": simple_cnn,
    "resnet50": resnet50,
    "xception": xception,
}


def build_model(name: str, **config) -> keras.Model:
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(BUILDERS)}")
    accepted = inspect.signature(BUILDERS[name]).parameters
    unknown = [key for key in config if key not in accepted]
    if unknown:
        raise ValueError(f"model {name!r} takes no setting {', '.join(map(repr, unknown))}; it takes "
                         f"{', '.join(accepted) or 'none'}")
    return BUILDERS[name](**config)
