"""Small tf.keras models with a layer keras-mxnet (Keras 2.2.4) cannot take, built in a keras worker
(`get_worker("keras").call("kmx_models:save", kind, path)`) with seeded weights."""


def save(kind: str, path: str) -> str:
    """kind "layernorm": a LayerNormalization, which Keras 2.2.4 lacks; "keepdims": a global pooling
    with keepdims=True, an argument Keras 2.2.4 lacks; "noscale": a BatchNormalization with
    scale=False (InceptionV3's), with random statistics."""
    from tensorflow import keras

    keras.utils.set_random_seed(0)
    x_in = keras.Input((8, 8, 3), name="input_1")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x_in)
    if kind == "noscale":
        x = keras.layers.BatchNormalization(scale=False, name="bn")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    elif kind == "layernorm":
        x = keras.layers.LayerNormalization(name="norm")(x)
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
        x = keras.layers.Flatten(name="flat")(x)
    out = keras.layers.Dense(2, activation="softmax", name="out")(x)
    model = keras.Model(x_in, out)
    if kind == "noscale":
        from xvalidate.models.keras_zoo import randomize_batchnorm

        randomize_batchnorm(model)
    model.save(path)
    return path
