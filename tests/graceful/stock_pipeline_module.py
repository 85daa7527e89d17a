"""A user's own TFX module file: a one-layer logistic regression on two CSV features.

Used by tests/graceful/test_history_names.py with the stock `tfx.components.Trainer`; nothing here
knows graceful.
"""
import tensorflow as tf
import tf_keras as keras

FEATURES = ("x1", "x2")
LABEL = "label"
SPEC = {**{name: tf.io.FixedLenFeature([1], tf.float32) for name in FEATURES},
        LABEL: tf.io.FixedLenFeature([1], tf.int64)}


def _dataset(patterns):
    def split(serialized):
        parsed = tf.io.parse_example(serialized, SPEC)
        return tf.concat([parsed[n] for n in FEATURES], axis=1), parsed[LABEL]

    files = [f for pattern in patterns for f in tf.io.gfile.glob(pattern)]
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return records.batch(32).map(split).repeat()


def run_fn(fn_args):
    model = keras.Sequential([keras.layers.Dense(1, activation="sigmoid", input_shape=(2,))])
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss="binary_crossentropy")
    model.fit(_dataset(fn_args.train_files), steps_per_epoch=fn_args.train_steps, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        parsed = tf.io.parse_example(examples, {n: SPEC[n] for n in FEATURES})
        return {"probability": model(tf.concat([parsed[n] for n in FEATURES], axis=1))}

    model.save(fn_args.serving_model_dir, save_format="tf", signatures={"serving_default": serve})
