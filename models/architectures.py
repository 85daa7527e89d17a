"""graceful's built-in model module: the Fashion-MNIST demo classifiers (`small`, `mlp`, `cnn`;
`cnn1d` for 1-D signals such as the training benchmark's MNIST-1D).

It is an ordinary user module (see graceful.models.user_module): `build_model(context)` returns a
Keras model on the `pixels` feature (784 integers 0..255, scaled inside the model) whose output is
the class scores the model contract declares (probabilities through a Softmax layer, or logits),
with the layer named by the contract's embedding_layer (default `embedding`) as the representation
BCT aligns. `TrainingParams.architecture` picks the network.
"""
from __future__ import annotations

import tf_keras as keras

from graceful.models.user_module import ModelContext

NUM_CLASSES = 10
IMAGE_PIXELS = 28 * 28
PIXELS_KEY = "pixels"
EMBEDDING_LAYER = "embedding"
HEAD_LAYER = "head"


def _mlp(inputs, width: int, name: str):
    return keras.layers.Dense(width, activation="relu", name=name)(inputs)


def _cnn(inputs, width: int, name: str):
    x = keras.layers.Reshape((28, 28, 1))(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(width, activation="relu", name=name)(x)


def _cnn1d(inputs, width: int, name: str):
    """A 1-D CNN over a signal of any length (benchmarks/training.py's MNIST-1D models)."""
    x = keras.layers.Reshape((-1, 1))(inputs)
    x = keras.layers.Conv1D(32, 5, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D()(x)
    x = keras.layers.Conv1D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling1D()(x)
    x = keras.layers.Flatten()(x)
    return keras.layers.Dense(width, activation="relu", name=name)(x)


# name -> (embedding builder, embedding width). "small" is the cheap model of a first run; "cnn" the
# larger one a later run brings; "cnn1d" reads the input as a 1-D signal.
ARCHITECTURES = {
    "small": (_mlp, 64),
    "mlp": (_mlp, 256),
    "cnn": (_cnn, 128),
    "cnn1d": (_cnn1d, 128),
}


def check_name(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown model architecture {name!r}; choose one of "
                         f"{', '.join(sorted(ARCHITECTURES))}.")


def build_model(context: ModelContext) -> keras.Model:
    """The module's entry point: the architecture `context.params.architecture` over `pixels`."""
    if PIXELS_KEY not in context.feature_spec:
        raise ValueError(f"graceful's built-in models read the {PIXELS_KEY!r} feature (Fashion-"
                         f"MNIST), which this schema does not have (features: "
                         f"{sorted(context.feature_spec)}); set module_file to your own model")
    return build(context.params.architecture, context.num_classes,
                 probabilities=context.model.scores == "probabilities",
                 embedding_layer=context.model.embedding_layer or EMBEDDING_LAYER)


def build(name: str, num_classes: int = NUM_CLASSES, probabilities: bool = False,
          embedding_layer: str = EMBEDDING_LAYER, input_size: int = IMAGE_PIXELS,
          scale: float = 1.0 / 255.0) -> keras.Model:
    """An uncompiled classifier on {"pixels": [N, input_size]} (scaled by `scale` inside the
    model): logits, or probabilities through a final Softmax layer (its logits stay reachable for
    the losses, see distillation.class_logits). `cnn` needs the 784 pixels of a 28x28 image."""
    check_name(name)
    embed, width = ARCHITECTURES[name]
    pixels = keras.Input(shape=(input_size,), name=PIXELS_KEY)
    scaled = keras.layers.Rescaling(scale)(pixels)
    scores = keras.layers.Dense(num_classes, name=HEAD_LAYER)(embed(scaled, width, embedding_layer))
    if probabilities:
        scores = keras.layers.Softmax(name="probabilities")(scores)
    return keras.Model({PIXELS_KEY: pixels}, scores, name=name)
