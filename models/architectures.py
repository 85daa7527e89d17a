"""Classifier architectures, each split into an embedding network and a linear classifier head.

Why the split: backward-compatible training needs the embedding (phi) and the head as separate parts, and
the flip evaluator reads logits, not only probabilities. Every model maps `pixels` (784 floats in [0, 1])
to logits over the 10 classes; the layer named `embedding` is the representation phi.
"""
from __future__ import annotations

import tf_keras as keras

NUM_CLASSES = 10
IMAGE_PIXELS = 28 * 28
EMBEDDING_LAYER = "embedding"
HEAD_LAYER = "head"


def _mlp(inputs, width: int):
    return keras.layers.Dense(width, activation="relu", name=EMBEDDING_LAYER)(inputs)


def _cnn(inputs, width: int):
    x = keras.layers.Reshape((28, 28, 1))(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(width, activation="relu", name=EMBEDDING_LAYER)(x)


# name -> (embedding builder, embedding width). "small" is the cheap model of a first run; "cnn" the
# larger one a later run brings.
ARCHITECTURES = {
    "small": (_mlp, 64),
    "mlp": (_mlp, 256),
    "cnn": (_cnn, 128),
}


def check_name(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown model architecture {name!r}; choose one of "
                         f"{', '.join(sorted(ARCHITECTURES))}.")


def build(name: str, seed: int = 0) -> keras.Model:
    """Builds an uncompiled classifier whose output is logits."""
    check_name(name)
    keras.utils.set_random_seed(seed)
    embed, width = ARCHITECTURES[name]
    inputs = keras.Input(shape=(IMAGE_PIXELS,), name="pixels")
    logits = keras.layers.Dense(NUM_CLASSES, name=HEAD_LAYER)(embed(inputs, width))
    return keras.Model(inputs, logits, name=name)


def embedder(model: keras.Model) -> keras.Model:
    """The sub-model mapping inputs to the embedding phi (shares the model's weights)."""
    return keras.Model(model.inputs, model.get_layer(EMBEDDING_LAYER).output)
