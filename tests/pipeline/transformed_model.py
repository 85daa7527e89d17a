"""A user module whose model reads the Transform's outputs (tests/pipeline/transform_module.py):
the z-scored `<name>_xf` features -> Dense embedding -> class logits. It refuses raw features, so
a run that handed it the schema's features instead of the transformed ones fails loudly."""
import tf_keras as keras

SUFFIX = "_xf"


def build_model(context) -> keras.Model:
    names = sorted(context.feature_spec)
    raw = [name for name in names if not name.endswith(SUFFIX)]
    if raw or not names:
        raise ValueError(f"expected only transformed features (*{SUFFIX}), got {names}")
    inputs = context.keras_inputs(names)
    features = keras.layers.Concatenate()(list(inputs.values()))
    embedding = keras.layers.Dense(16, activation="relu", name="embedding")(features)
    return keras.Model(inputs, keras.layers.Dense(context.num_classes, name="logits")(embedding))
