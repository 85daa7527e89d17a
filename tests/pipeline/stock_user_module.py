"""A team's own training code for TFX's stock Trainer, written without graceful in mind.

A binary classifier on the breast-cancer CSV table: numeric features -> a small MLP -> one sigmoid
output, P(malignant = class 1) [N, 1]. Its serving_default signature parses serialized tf.Examples,
the usual TFX export. `custom_config`: {"steps": training steps, "seed": ...}.
"""
import tensorflow as tf
import tf_keras as keras
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

LABEL, ID = "target", "row"


def _feature_names(schema):
    return [f.name for f in schema.feature if f.name not in (LABEL, ID)]


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    schema = tfx.utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
    names = _feature_names(schema)
    config = fn_args.custom_config or {}
    keras.utils.set_random_seed(config.get("seed", 0))
    dataset = fn_args.data_accessor.tf_dataset_factory(
        fn_args.train_files, tfxio.TensorFlowDatasetOptions(batch_size=32, label_key=LABEL),
        schema).repeat()
    normalize = keras.layers.Normalization(axis=-1)
    normalize.adapt(dataset.take(10).map(
        lambda features, _: tf.concat([tf.cast(features[n], tf.float32) for n in names], 1)))
    inputs = {n: keras.Input(shape=(1,), name=n) for n in names}
    x = normalize(keras.layers.Concatenate()(list(inputs.values())))
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(dataset, steps_per_epoch=config.get("steps", 30), epochs=1, verbose=0)

    feature_spec = schema_utils.schema_as_feature_spec(schema).feature_spec
    feature_spec.pop(LABEL)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        features = tf.io.parse_example(examples, feature_spec)
        return {"probability": model({n: tf.cast(features[n], tf.float32) for n in names})}

    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures={"serving_default": serve})
