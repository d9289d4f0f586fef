"""Keras models built in code with seeded weights: the demo's and the tests' models.

Run these inside a keras worker (they import TensorFlow)."""
from __future__ import annotations

import numpy as np

APPLICATIONS = ("ResNet50", "VGG16", "MobileNetV2", "DenseNet121", "InceptionV3", "Xception", "EfficientNetB0")
# Every keras.applications family of TF 2.12, smallest member first.
FAMILIES = {
    "ConvNeXt": ("ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge"),
    "DenseNet": ("DenseNet121", "DenseNet169", "DenseNet201"),
    "EfficientNet": tuple(f"EfficientNetB{i}" for i in range(8)),
    "EfficientNetV2": ("EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
                       "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L"),
    "InceptionResNetV2": ("InceptionResNetV2",),
    "InceptionV3": ("InceptionV3",),
    "MobileNet": ("MobileNet",),
    "MobileNetV2": ("MobileNetV2",),
    "MobileNetV3Small": ("MobileNetV3Small",),
    "MobileNetV3Large": ("MobileNetV3Large",),
    "NASNet": ("NASNetMobile", "NASNetLarge"),
    "RegNet": ("RegNetX002", "RegNetY002"),
    "ResNet": ("ResNet50", "ResNet101", "ResNet152"),
    "ResNetV2": ("ResNet50V2", "ResNet101V2", "ResNet152V2"),
    "ResNetRS": ("ResNetRS50", "ResNetRS101", "ResNetRS152"),
    "VGG": ("VGG16", "VGG19"),
    "Xception": ("Xception",),
}
ALL_APPLICATIONS = tuple(name for members in FAMILIES.values() for name in members)


def _keras(seed: int):
    import tensorflow as tf
    from tensorflow import keras

    keras.utils.set_random_seed(seed)
    keras.backend.reset_uids()  # default layer names (max_pooling2d, ...) as in a fresh process
    tf.config.experimental.enable_op_determinism()
    return keras


def seed2_cnn(seed: int = 0):
    """The Keras CNN of the hand-port seed: 80x120x3, Conv2D 128/256 'same', MaxPool, Flatten, Dense softmax."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    model = keras.Sequential(name="seed2_cnn")
    model.add(layers.Conv2D(128, (3, 3), padding="same", activation="relu", name="block1_conv1", input_shape=(80, 120, 3)))
    model.add(layers.MaxPooling2D((2, 2), strides=(2, 2)))
    model.add(layers.Conv2D(256, (3, 3), padding="same", activation="relu", name="block2_conv1"))
    model.add(layers.MaxPooling2D((2, 2), strides=(2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(2, activation="softmax", name="final_fully_connected"))
    return model


def resnet_block(seed: int = 0):
    """A small functional ResNet-style model: conv-BN-relu, a residual block with Add, pooling, Dense."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    x_in = keras.Input((32, 32, 3), name="input_1")
    x = layers.Conv2D(16, 3, padding="same", name="stem_conv")(x_in)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    y = layers.Conv2D(16, 3, padding="same", name="block_conv1")(x)
    y = layers.BatchNormalization(name="block_bn1")(y)
    y = layers.Activation("relu", name="block_relu1")(y)
    y = layers.Conv2D(16, 3, padding="same", name="block_conv2")(y)
    y = layers.BatchNormalization(name="block_bn2")(y)
    x = layers.Add(name="block_add")([x, y])
    x = layers.Activation("relu", name="block_out")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(x_in, out, name="resnet_block")
    randomize_batchnorm(model, seed)
    return model


def branchy_cnn(seed: int = 0):
    """A small Inception-style model: a stem, two parallel conv-BN-relu branches (3x3; 1x1 then a 3x3
    'same' average pooling) joined by a Concatenate, then a conv, global pooling and a Dense; a fault
    in each branch makes two roots."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    x_in = keras.Input((24, 24, 3), name="input_1")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem_conv")(x_in)
    a = layers.Conv2D(16, 3, padding="same", name="left_conv")(x)
    a = layers.BatchNormalization(name="left_bn")(a)
    a = layers.Activation("relu", name="left_relu")(a)
    b = layers.Conv2D(12, 1, name="right_conv")(x)
    b = layers.BatchNormalization(name="right_bn")(b)
    b = layers.Activation("relu", name="right_relu")(b)
    b = layers.AveragePooling2D(3, strides=1, padding="same", name="right_pool")(b)
    x = layers.Concatenate(name="join")([a, b])
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="head_conv")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    out = layers.Dense(5, activation="softmax", name="predictions")(x)
    model = keras.Model(x_in, out, name="branchy_cnn")
    randomize_batchnorm(model, seed)
    return model


def application(name: str, seed: int = 0):
    """A keras.applications model with random weights (weights=None) and randomized BatchNorm statistics;
    a model built for any input size by default gets 224x224x3."""
    keras = _keras(seed)
    if name not in ALL_APPLICATIONS:
        raise ValueError(f"unknown application {name!r}; expected one of {', '.join(ALL_APPLICATIONS)}")
    model = getattr(keras.applications, name)(weights=None)
    if any(d is None for d in model.input_shape[1:]):  # MobileNetV3 is built for any input size by default
        keras = _keras(seed)
        model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3))
    randomize_batchnorm(model, seed)
    return model


def randomize_batchnorm(model, seed: int = 0) -> int:
    """Give every BatchNormalization layer random moving statistics and affine parameters
    (fresh ones are mean 0 / variance 1, which hides BatchNorm conversion errors). Returns the count."""
    rng = np.random.default_rng(seed)
    count = 0
    for layer in _all_layers(model):
        if type(layer).__name__ != "BatchNormalization":
            continue
        new = []
        for w in layer.weights:
            shape, name = w.shape, w.name
            if "moving_variance" in name:
                new.append(rng.uniform(0.5, 1.5, shape))
            elif "moving_mean" in name:
                new.append(rng.normal(0.0, 0.1, shape))
            elif "gamma" in name:
                new.append(rng.uniform(0.8, 1.2, shape))
            else:
                new.append(rng.normal(0.0, 0.05, shape))
        layer.set_weights([a.astype("float32") for a in new])
        count += 1
    return count


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


BUILDERS = {"seed2_cnn": seed2_cnn, "resnet_block": resnet_block, "branchy_cnn": branchy_cnn}


def save(name: str, path: str, seed: int = 0) -> str:
    """Build a model by name (a BUILDERS key or an ALL_APPLICATIONS name) and save it to `path` (.h5 or .keras)."""
    model = BUILDERS[name](seed) if name in BUILDERS else application(name, seed)
    model.save(path)
    return path
