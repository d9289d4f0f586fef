"""Small sequence, attention and multi-input Keras models built in code with seeded weights.

Run these inside a keras worker (they import TensorFlow)."""
from __future__ import annotations

from xvalidate.models.keras_zoo import _keras


def text_classifier(seed: int = 0):
    """Token ids (20,) int32 -> Embedding(100, 16) -> LSTM(32, return_sequences) -> GRU(16) -> Dense softmax."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    tokens = keras.Input((20,), dtype="int32", name="tokens")
    x = layers.Embedding(100, 16, name="emb")(tokens)
    x = layers.LSTM(32, return_sequences=True, name="lstm")(x)
    x = layers.GRU(16, name="gru")(x)
    out = layers.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(tokens, out, name="text_classifier")


def _encoder_block(x, prefix: str, heads: int = 4, key_dim: int = 8, hidden: int = 64):
    from tensorflow.keras import layers

    width = x.shape[-1]
    att = layers.MultiHeadAttention(heads, key_dim, name=f"{prefix}mha")(x, x)
    x = layers.LayerNormalization(name=f"{prefix}ln1")(x + att)
    y = layers.Dense(hidden, activation="gelu", name=f"{prefix}ffn1")(x)
    y = layers.Dense(width, name=f"{prefix}ffn2")(y)
    return layers.LayerNormalization(name=f"{prefix}ln2")(x + y)


def transformer_block(seed: int = 0):
    """Input (16, 32) -> MultiHeadAttention(4, 8) -> residual + LayerNormalization -> Dense gelu -> Dense ->
    residual + LayerNormalization -> GlobalAveragePooling1D -> Dense."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    x_in = keras.Input((16, 32), name="features")
    x = _encoder_block(x_in, "")
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    out = layers.Dense(3, name="logits")(x)
    return keras.Model(x_in, out, name="transformer_block")


def two_inputs(seed: int = 0):
    """Two float inputs, (8,) and (4,), each through a Dense, concatenated, then a Dense."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    a = keras.Input((8,), name="left")
    b = keras.Input((4,), name="right")
    x = layers.Concatenate(name="joined")([layers.Dense(6, activation="relu", name="left_dense")(a),
                                          layers.Dense(6, activation="tanh", name="right_dense")(b)])
    out = layers.Dense(2, name="out")(x)
    return keras.Model([a, b], out, name="two_inputs")


def text_cnn(seed: int = 0):
    """Token ids (24,) -> Embedding(50, 12) -> Conv1D(16, 3) relu -> GlobalMaxPooling1D -> Dense softmax."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    tokens = keras.Input((24,), dtype="int32", name="tokens")
    x = layers.Embedding(50, 12, name="emb")(tokens)
    x = layers.Conv1D(16, 3, activation="relu", name="conv")(x)
    x = layers.GlobalMaxPooling1D(name="pool")(x)
    out = layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(tokens, out, name="text_cnn")


def bidirectional_tagger(seed: int = 0):
    """Token ids (12,) -> Embedding(40, 8) -> Bidirectional(LSTM(8, return_sequences)) -> SimpleRNN(8,
    return_sequences) -> per-step Dense softmax."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    tokens = keras.Input((12,), dtype="int32", name="tokens")
    x = layers.Embedding(40, 8, name="emb")(tokens)
    x = layers.Bidirectional(layers.LSTM(8, return_sequences=True), name="bilstm")(x)
    x = layers.SimpleRNN(8, return_sequences=True, name="rnn")(x)
    out = layers.Dense(5, activation="softmax", name="tags")(x)
    return keras.Model(tokens, out, name="bidirectional_tagger")


def small_bert(seed: int = 0):
    """Token ids (16,) and a 0/1 segment input -> token + segment + position embeddings -> LayerNormalization
    -> two encoder blocks -> the first position's vector -> Dense."""
    keras = _keras(seed)
    import tensorflow as tf
    from tensorflow.keras import layers

    tokens = keras.Input((16,), dtype="int32", name="tokens")
    segments = keras.Input((16,), dtype="int32", name="segments")
    x = layers.Embedding(60, 32, name="token_emb")(tokens) + layers.Embedding(2, 32, name="segment_emb")(segments)
    positions = layers.Embedding(16, 32, name="position_emb")(tf.range(16))
    x = layers.LayerNormalization(name="emb_ln")(x + positions)
    for i in range(2):
        x = _encoder_block(x, f"block{i}_")
    out = layers.Dense(2, name="logits")(x[:, 0])
    return keras.Model([tokens, segments], out, name="small_bert")


def two_tower(seed: int = 0):
    """A query tower (token ids (10,)) and an item tower (floats (6,)), their cosine similarity."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    query = keras.Input((10,), dtype="int32", name="query")
    item = keras.Input((6,), name="item")
    q = layers.GlobalAveragePooling1D(name="query_pool")(layers.Embedding(30, 8, name="query_emb")(query))
    q = layers.Dense(8, name="query_dense")(q)
    v = layers.Dense(8, activation="relu", name="item_dense")(item)
    out = layers.Dot(axes=1, normalize=True, name="similarity")([q, v])
    return keras.Model([query, item], out, name="two_tower")


def multi_output(seed: int = 0):
    """A sequence (10, 6) -> GRU(8, return_state) -> two heads: a class (softmax) and a value, plus the state."""
    keras = _keras(seed)
    from tensorflow.keras import layers

    x_in = keras.Input((10, 6), name="series")
    seq, state = layers.GRU(8, return_sequences=True, return_state=True, name="gru")(x_in)
    pooled = layers.GlobalAveragePooling1D(name="pool")(seq)
    label = layers.Dense(3, activation="softmax", name="label")(pooled)
    value = layers.Dense(1, name="value")(state)
    return keras.Model(x_in, [label, value], name="multi_output")


BUILDERS = {"text_classifier": text_classifier, "transformer_block": transformer_block, "two_inputs": two_inputs,
            "text_cnn": text_cnn, "bidirectional_tagger": bidirectional_tagger, "small_bert": small_bert,
            "two_tower": two_tower, "multi_output": multi_output}


def save(name: str, path: str, seed: int = 0) -> str:
    """Build a model of BUILDERS by name and save it to `path` (.h5 or .keras)."""
    model = BUILDERS[name](seed)
    try:
        model.save(path)
    except Exception:  # layers (TFOpLambda on tf.range...) that HDF5 cannot hold: the .keras format can
        path = path.rsplit(".", 1)[0] + ".keras"
        model.save(path)
    return path
