"""Both gates read every model form exactly: for tiny real Keras models of each output form (multiclass
probabilities and logits [N, K], binary sigmoid probability and logit [N, 1], binary softmax [N, 2])
the FlipEvaluator's real Beam pass and TFMA's real evaluation under graceful.pipeline.evaluation's
EvalConfig (candidate vs baseline) give the NFR, accuracy, negative flips and relative NFR of an
independent numpy count on the same models' scores, to the last bit; integer and string labels,
integer, string and derived ids. Models of the wrong form and data without the label fail, naming
them."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from graceful.contract import DataContract, DataContractError, ModelContract, ModelOutputError
from graceful.gate import GateConfig

FEATURES = 4
# form: (output units, activation, contract scores)
FORMS = {"multiclass_probabilities": (3, "softmax", "probabilities"),
         "multiclass_logits": (3, None, "logits"),
         "binary_probability": (1, "sigmoid", "probabilities"),
         "binary_logit": (1, None, "logits"),
         "binary_softmax": (2, "softmax", "probabilities")}
LOOSE = GateConfig(min_accuracy=0.0, max_accuracy_drop=1.0, max_nfr=1.0, max_relative_nfr=100.0,
                   max_class_nfr=1.0, max_slice_nfr=1.0, max_high_confidence_flips=10**6)


def export_model(directory, units: int, activation, seed: int, output_key="scores",
                 extra_outputs=False, input_name="records", reshape=None):
    """A one-layer Keras classifier with random weights whose serving_default signature parses
    serialized tf.Examples (feature `x`, FEATURES floats) and returns {output_key: scores}
    (reshaped to `reshape`, e.g. [-1] or [-1, 3, 1], to make a model of the wrong form)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.layers.Dense(units, activation=activation,
                                                 input_shape=(FEATURES,))])
    spec = {"x": tf.io.FixedLenFeature([FEATURES], tf.float32)}

    def serve(records):
        scores = model(tf.io.parse_example(records, spec)["x"], training=False)
        if reshape is not None:
            scores = tf.reshape(scores, reshape)
        outputs = {output_key: scores}
        if extra_outputs:
            outputs["embedding"] = scores * 2.0
        return outputs

    signature = tf.function(serve, input_signature=[tf.TensorSpec([None], tf.string,
                                                                  name=input_name)])
    model.save(str(directory), save_format="tf", signatures={"serving_default": signature})
    return str(directory)


def example(x, label, example_id=None, source="web", id_key="example_id"):
    feature = {"x": tf.train.Feature(float_list=tf.train.FloatList(value=x)),
               "source": _bytes(source)}
    feature["label"] = (_bytes(label) if isinstance(label, str) else
                        tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])))
    if example_id is not None:
        feature[id_key] = (_bytes(example_id) if isinstance(example_id, str) else
                           tf.train.Feature(int64_list=tf.train.Int64List(value=[example_id])))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _bytes(text: str):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))


def write_files(directory, records, parts=2) -> str:
    """`parts` gzip TFRecord files (the pass spreads files over workers); returns their pattern."""
    directory.mkdir(parents=True, exist_ok=True)
    for part in range(parts):
        with tf.io.TFRecordWriter(str(directory / f"eval-{part}.gz"), options="GZIP") as writer:
            for record in records[part::parts]:
                writer.write(record)
    return str(directory / "eval-*.gz")


def scores_of(model_dir, records, key="scores", input_name="records"):
    signature = tf.saved_model.load(model_dir).signatures["serving_default"]
    return signature(**{input_name: tf.constant(records)})[key].numpy().astype(np.float64)


def numpy_classes(scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, probability of it), counted independently of graceful.contract."""
    if scores.shape[1] == 1:
        p1 = scores[:, 0] if scores.min() >= 0 and scores.max() <= 1 else 1 / (1 + np.exp(-scores[:, 0]))
        predicted = (p1 > threshold).astype(int)
        return predicted, np.where(predicted == 1, p1, 1 - p1)
    if scores.shape[1] == 2:
        predicted = (scores[:, 1] > threshold).astype(int)
        return predicted, scores[np.arange(len(scores)), predicted]
    exp = np.exp(scores - scores.max(1, keepdims=True))
    probabilities = scores if np.allclose(scores.sum(1), 1) else exp / exp.sum(1, keepdims=True)
    predicted = scores.argmax(1)
    return predicted, probabilities[np.arange(len(scores)), predicted]


def numpy_counts(labels, old, new, confidence, high_confidence) -> dict:
    flipped = (old == labels) & (new != labels)
    old_right, new_wrong = int((old == labels).sum()), int((new != labels).sum())
    n = len(labels)
    return {"negative_flips": int(flipped.sum()), "nfr": flipped.sum() / n,
            "new_accuracy": (n - new_wrong) / n, "old_accuracy": old_right / n,
            "relative_nfr": int(flipped.sum()) * n / (old_right * new_wrong),
            "high_confidence_flips": int((flipped & (confidence >= high_confidence)).sum())}


@dataclasses.dataclass
class Case:
    form: str
    labels: str       # "int" or "str"
    ids: str          # "int", "str" or "derived"
    threshold: float = 0.5


CASES = [Case("multiclass_probabilities", "str", "str"),
         Case("multiclass_logits", "int", "derived"),
         Case("binary_probability", "int", "int", threshold=0.3),
         Case("binary_logit", "str", "derived"),
         Case("binary_softmax", "int", "int")]
NAMES = {3: ("cat", "dog", "fox"), 2: ("no", "yes")}


def build_case(tmp_path, case: Case, examples=240):
    """Baseline and candidate of the case's form, eval files, and the contracts that read them."""
    units, activation, kind = FORMS[case.form]
    classes = max(units, 2)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(examples, FEATURES)).astype(np.float32)
    labels = rng.integers(0, classes, examples)
    sources = np.array(["web", "app", "tv"])[rng.integers(0, 3, examples)]
    names = NAMES[classes]
    records = [example(row, names[y] if case.labels == "str" else y,
                       {"int": i * 7 + 3, "str": f"row-{i}", "derived": None}[case.ids], s)
               for i, (row, y, s) in enumerate(zip(x, labels, sources))]
    old = export_model(tmp_path / "old", units, activation, seed=1)
    new = export_model(tmp_path / "new", units, activation, seed=2)
    data = DataContract(label_key="label", id_key="" if case.ids == "derived" else "example_id",
                        class_names=names if case.labels == "str" else (),
                        slice_features=("source",))
    model = ModelContract(scores=kind, threshold=case.threshold)
    return old, new, records, labels, sources, write_files(tmp_path / "data", records), data, model


def run_flip_evaluator(pattern, new, old, out_dir, data, model, policy=LOOSE, **settings):
    import apache_beam as beam

    from graceful.components.flip_evaluator.executor import evaluate
    from graceful.components.report_settings import ReportSettings

    settings = ReportSettings(data=data, model=model, policy=policy, batch_size=64, **settings)
    return evaluate(beam.Pipeline, pattern, new, old, str(out_dir), settings)


def run_tfma(pattern, new, old, out_dir, data, model, gate=LOOSE):
    """TFMA's own evaluation and validation of candidate vs baseline under the pipeline's config."""
    import tensorflow_model_analysis as tfma

    from graceful.pipeline.evaluation import eval_config

    config = tfma.utils.update_eval_config_with_defaults(  # no baseline: the first run, as TFX's
        eval_config(gate, data, model), has_baseline=old is not None,  # Evaluator calls it
        rubber_stamp=old is None)
    shared = [tfma.default_eval_shared_model(eval_saved_model_path=old if spec.is_baseline else new,
                                             model_name=spec.name, eval_config=config)
              for spec in config.model_specs]
    tfma.run_model_analysis(eval_shared_model=shared, eval_config=config, data_location=pattern,
                            output_path=str(out_dir))
    return tfma.load_metrics(str(out_dir)), tfma.load_validation_result(str(out_dir))


def tfma_values(metrics_list) -> dict:
    """{(slice column or "", slice value or "", metric name, model name, is_diff): value}."""
    values = {}
    for metrics in metrics_list:
        keys = metrics.slice_key.single_slice_keys
        column = keys[0].column if keys else ""
        value = (keys[0].bytes_value.decode() if keys and keys[0].HasField("bytes_value") else
                 keys[0].int64_value if keys else "")
        for kv in metrics.metric_keys_and_values:
            values[(column, value, kv.key.name, kv.key.model_name, kv.key.is_diff)] = \
                kv.value.double_value.value
    return values


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.form}-{c.labels}_labels-{c.ids}_ids")
def test_both_gates_equal_numpy_for_every_model_form(tmp_path, case):
    old, new, records, labels, sources, pattern, data, model = build_case(tmp_path, case)
    old_pred, _ = numpy_classes(scores_of(old, records), case.threshold)
    new_pred, confidence = numpy_classes(scores_of(new, records), case.threshold)
    expected = numpy_counts(labels, old_pred, new_pred, confidence, 0.9)
    assert expected["negative_flips"] > 0, "the check needs some flips to be meaningful"

    report = run_flip_evaluator(pattern, new, old, tmp_path / "report", data, model)
    assert {k: report["summary"][k] for k in expected} == expected
    flipped = np.flatnonzero((old_pred == labels) & (new_pred != labels))
    if case.ids != "derived":
        ids = [{"int": i * 7 + 3, "str": f"row-{i}"}[case.ids] for i in flipped]
        assert sorted(f["id"] for f in report["flips"]) == sorted(ids)
    else:  # stable ids hashed from the examples' bytes, one per flip
        assert len({f["id"] for f in report["flips"]}) == len(flipped)
    for source, summary in report["per_slice"]["source"].items():
        rows = sources == source
        assert summary["nfr"] == ((old_pred == labels) & (new_pred != labels))[rows].sum() / rows.sum()

    values = tfma_values(run_tfma(pattern, new, old, tmp_path / "tfma", data, model)[0])
    assert values[("", "", "negative_flip_rate", "candidate", False)] == expected["nfr"]
    assert values[("", "", "relative_negative_flip_rate", "candidate", False)] == \
        expected["relative_nfr"]
    assert values[("", "", "high_confidence_flips", "candidate", False)] == \
        expected["high_confidence_flips"]
    assert values[("", "", "graceful_accuracy", "candidate", False)] == expected["new_accuracy"]
    assert values[("", "", "graceful_accuracy", "baseline", False)] == expected["old_accuracy"]
    assert values[("", "", "graceful_accuracy", "candidate", True)] == \
        expected["new_accuracy"] - expected["old_accuracy"]
    for source in ("web", "app", "tv"):
        assert values[("source", source, "negative_flip_rate", "candidate", False)] == \
            report["per_slice"]["source"][source]["nfr"]
    names = data.class_names or range(max(FORMS[case.form][0], 2))
    for class_id, name in enumerate(names):
        assert values[("label", name, "negative_flip_rate", "candidate", False)] == \
            report["per_class"][str(class_id)]["nfr"]


@pytest.mark.slow
def test_tfma_thresholds_on_contract_accuracy_and_flips_gate_like_the_policy(tmp_path):
    """TFMA's own validation under the pipeline's config: the accuracy change threshold fails a
    candidate that is less accurate than the baseline by more than max_accuracy_drop, the NFR bound
    fails on flips; the first run (no baseline) is judged on the accuracy floor only."""
    old, new, records, labels, _, pattern, data, model = build_case(
        tmp_path, Case("binary_probability", "int", "int", threshold=0.3))
    old_acc, new_acc = (np.mean(numpy_classes(scores_of(d, records), 0.3)[0] == labels)
                        for d in (old, new))
    drop = float(old_acc - new_acc)
    strict = dataclasses.replace(LOOSE, max_nfr=0.0, max_accuracy_drop=max(drop, 0) / 2,
                                 min_accuracy=min(old_acc, new_acc) / 2)
    _, validation = run_tfma(pattern, new, old, tmp_path / "strict", data, model, strict)
    failed = {f.metric_key.name for s in validation.metric_validations_per_slice
              for f in s.failures}
    assert failed == {"negative_flip_rate"} | ({"graceful_accuracy"} if drop > 0 else set())
    # A bound mode leaves NFR, relative and class NFR and the accuracy drop to the FlipEvaluator's
    # intervals: TFMA's point thresholds must not block what flip_bound="lower" lets through.
    _, validation = run_tfma(pattern, new, old, tmp_path / "lower", data, model,
                             dataclasses.replace(strict, flip_bound="lower"))
    assert validation.validation_ok
    floor = dataclasses.replace(LOOSE, min_accuracy=float(new_acc) + 0.01)
    metrics, validation = run_tfma(pattern, new, None, tmp_path / "first", data, model, floor)
    values = tfma_values(metrics)
    assert values[("", "", "graceful_accuracy", "", False)] == new_acc
    assert values[("", "", "negative_flip_rate", "", False)] == 0.0
    assert {f.metric_key.name for s in validation.metric_validations_per_slice
            for f in s.failures} == {"graceful_accuracy"}


def test_bound_modes_leave_the_interval_gated_limits_to_the_flip_evaluator():
    """With flip_bound "point" TFMA checks every limit on the same point values; with "lower" or
    "upper" the FlipEvaluator alone judges NFR, relative NFR, class NFR and the accuracy drop (on
    interval bounds), while the accuracy floor, slice NFR and confident flips keep TFMA thresholds."""
    from graceful.pipeline.evaluation import eval_config

    def thresholds(mode):
        config = eval_config(GateConfig(flip_bound=mode), DataContract(slice_features=("source",)),
                             ModelContract())
        return {(metric.class_name, tuple(spec.feature_keys), kind)
                for metric in config.metrics_specs[0].metrics
                for threshold in metric.per_slice_thresholds for spec in threshold.slicing_specs
                for kind in ("value_threshold", "change_threshold")
                if threshold.threshold.HasField(kind)}

    kept = {("ContractAccuracy", (), "value_threshold"),
            ("NegativeFlipRate", ("source",), "value_threshold"),
            ("HighConfidenceFlips", (), "value_threshold")}
    assert thresholds("point") == kept | {("ContractAccuracy", (), "change_threshold"),
                                          ("NegativeFlipRate", (), "value_threshold"),
                                          ("NegativeFlipRate", ("label",), "value_threshold"),
                                          ("RelativeNegativeFlipRate", (), "value_threshold")}
    assert thresholds("lower") == thresholds("upper") == kept


def _wrong_form_case(tmp_path, **export):
    _, _, records, *_ = build_case(tmp_path / "case", Case("multiclass_logits", "int", "int"))
    return export_model(tmp_path / "model", 3, None, seed=3, **export), \
        write_files(tmp_path / "wrong", records)


@pytest.mark.parametrize("reshape, shape", [([-1], r"\[None\]"), ([-1, 3, 1], r"\[None, 3, 1\]")])
def test_the_flip_evaluator_refuses_a_wrong_output_shape_at_load(tmp_path, reshape, shape):
    model_dir, pattern = _wrong_form_case(tmp_path, reshape=reshape)
    message = rf"{model_dir}: signature 'serving_default', output 'scores': class scores of shape "
    with pytest.raises(ModelOutputError, match=message + shape):
        run_flip_evaluator(pattern, model_dir, model_dir, tmp_path / "report", DataContract(),
                           ModelContract(scores="logits"))


def test_the_flip_evaluator_names_a_missing_output_key(tmp_path):
    model_dir, pattern = _wrong_form_case(tmp_path, output_key="logits", extra_outputs=True)
    message = r"no output 'scores'; the signature returns \['embedding', 'logits'\]"
    with pytest.raises(ModelOutputError, match=message):
        run_flip_evaluator(pattern, model_dir, None, tmp_path / "report", DataContract(),
                           ModelContract(output_key="scores", scores="logits"))


def test_the_flip_evaluator_names_declared_probabilities_that_are_logits(tmp_path):
    model_dir, pattern = _wrong_form_case(tmp_path)
    message = ("declared probabilities, but scores range from .* these look like logits: set the "
               "model contract's scores='logits'")
    with pytest.raises(ModelOutputError, match=message):
        run_flip_evaluator(pattern, model_dir, None, tmp_path / "report", DataContract(),
                           ModelContract())


def test_the_flip_evaluator_names_a_missing_label_and_unknown_string_labels(tmp_path):
    model_dir, _ = _wrong_form_case(tmp_path)
    pattern = write_files(tmp_path / "unlabelled", [example([0.0] * FEATURES, "cat", 1)])
    missing = (r"eval-0.gz: the data contract's label_key 'target' is missing in the first "
               r"example \(its features: \['example_id', 'label', 'source', 'x'\]\)")
    with pytest.raises(DataContractError, match=missing):
        run_flip_evaluator(pattern, model_dir, None, tmp_path / "r1",
                           DataContract(label_key="target"), ModelContract(scores="logits"))
    unknown = r"label 'label' has value 'cat', which is not in class_names \['dog', 'fox', 'owl'\]"
    with pytest.raises(DataContractError, match=unknown):
        run_flip_evaluator(pattern, model_dir, None, tmp_path / "r2",
                           DataContract(class_names=("dog", "fox", "owl")),
                           ModelContract(scores="logits"))


def test_duplicate_examples_without_an_id_feature_get_distinct_stable_ids(tmp_path):
    """Identical rows (common in tabular data) hash alike; the report still lists each flip once,
    and the same data gives the same ids on every run."""
    old, new, records, *_ , data, model = build_case(tmp_path, Case("multiclass_logits", "int",
                                                                    "derived"))
    pattern = write_files(tmp_path / "twice", records + records)
    reports = [run_flip_evaluator(pattern, new, old, tmp_path / f"r{i}", data, model)
               for i in (1, 2)]
    assert reports[0]["flips"] == reports[1]["flips"]
    ids = [f["id"] for f in reports[0]["flips"]]
    assert len(ids) == len(set(ids)) == reports[0]["summary"]["negative_flips"] > 0
