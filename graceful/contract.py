"""The two contracts graceful gates a team's classifier by: what its data looks like and what its
model returns. TFX-free (numpy only): the FlipEvaluator, the TFMA flip metrics, the losses, the
trainer, `graceful check-model`, history and report all read predictions through this one module, so
a binary sigmoid model cannot be argmaxed in one place and thresholded in another.

Data (`DataContract`): spans of tf.Examples, from CSV (CsvExampleGen) or TFRecord files
(ImportExampleGen); which feature is the label (integer class ids, or strings looked up in
`class_names`), which one names an example (optional: without one, an id is derived from the
example's bytes, so the report can still name each flipped example), slice features and an optional
image feature for the report's gallery.

Model (`ModelContract`): a SavedModel whose `signature` takes serialized tf.Examples (`examples`)
and returns class scores under `output_key`:
  * multiclass [N, K], K > 2: probabilities (rows sum to 1) or logits; predicted class = argmax;
  * binary [N, 1] (P(class 1) or its logit) or [N, 2]: predicted class = 1 when P(class 1) >
    `threshold` (at the default 0.5, the argmax with ties to class 0).
Every form is turned into class probabilities [N, K>=2] (binary: [1 - p, p]) and predicted class ids
here, and every form is verified: scores declared as probabilities that are not, or logits that are
probabilities, fail loudly instead of producing plausible wrong numbers.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

FORMATS = ("tfrecord", "csv")
SCORE_KINDS = ("probabilities", "logits")
_PROBABILITY_TOLERANCE = 1e-3


class ModelOutputError(ValueError):
    """A model's outputs do not match the model contract: the flip metrics would be wrong."""


class DataContractError(ValueError):
    """Examples do not match the data contract (a missing label, an unknown class, ...)."""


@dataclasses.dataclass(frozen=True)
class DataContract:
    """Where the spans are and what their examples hold.

    `train_pattern` / `eval_pattern` are relative to the data root and contain `{SPAN}` (span
    number) and optionally `{YYYY}`, `{MM}`, `{DD}` (date spans), as TFX's ExampleGen reads them.
    """

    root: str = ""              # folder or URI holding the spans; "" = <pipeline home>/data
    format: str = "tfrecord"
    train_pattern: str = "span-{SPAN}/train/*"
    eval_pattern: str = "span-{SPAN}/eval/*"
    label_key: str = "label"
    id_key: str = ""            # "" = ids derived from the example's bytes
    class_names: tuple = ()     # the label vocabulary; required for string labels
    slice_features: tuple = ()  # integer or string features with one value per example
    image_feature: str = ""     # flattened square grayscale images, for the gallery; "" = none

    def __post_init__(self):
        if self.format not in FORMATS:
            raise DataContractError(f"data format {self.format!r} is not one of {FORMATS}")
        for name, pattern in (("train_pattern", self.train_pattern),
                              ("eval_pattern", self.eval_pattern)):
            if "{SPAN}" not in pattern and "{YYYY}" not in pattern:
                raise DataContractError(
                    f"{name} {pattern!r} has no {{SPAN}} (or {{YYYY}}-{{MM}}-{{DD}}) placeholder: "
                    "graceful ingests one span per run and needs to know where spans differ")
        if not self.label_key:
            raise DataContractError("label_key is empty: name the feature that holds the label")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataContractError(f"class_names has duplicates: {list(self.class_names)}")

    def class_ids(self, labels: Any) -> np.ndarray:
        """Labels as read from examples (integers, or strings/bytes of the vocabulary) -> int64
        class ids. Unknown string labels and out-of-range integers fail, naming the value."""
        labels = np.asarray(labels).reshape(-1)
        if labels.dtype.kind in "SUO":
            vocabulary = {name: index for index, name in enumerate(self.class_names)}
            if not vocabulary:
                raise DataContractError(
                    f"label {self.label_key!r} holds strings (e.g. {_text(labels[0])!r}) but the "
                    "data contract has no class_names to map them to class ids; set class_names "
                    "to the label vocabulary, in class-id order")
            values, inverse = np.unique(labels, return_inverse=True)  # each distinct label once
            texts = [_text(value) for value in values]
            unknown = [text for text in texts if text not in vocabulary]
            if unknown:
                raise DataContractError(
                    f"label {self.label_key!r} has value {unknown[0]!r}, which is not in "
                    f"class_names {list(self.class_names)}; add it there or fix the data")
            return np.array([vocabulary[text] for text in texts], np.int64)[inverse.reshape(-1)]
        if labels.dtype.kind not in "iu":
            raise DataContractError(f"label {self.label_key!r} has dtype {labels.dtype}; expected "
                                    "integer class ids or strings")
        ids = labels.astype(np.int64)
        bad = ids[(ids < 0) | (ids >= len(self.class_names))] if self.class_names else ids[ids < 0]
        if bad.size:
            allowed = f"0..{len(self.class_names) - 1}" if self.class_names else "ids >= 0"
            raise DataContractError(f"label {self.label_key!r} has class id {int(bad[0])}, outside "
                                    f"{allowed} (class_names {list(self.class_names)})")
        return ids


@dataclasses.dataclass(frozen=True)
class ModelContract:
    """What graceful calls on a model and how it reads the answer (see the module docstring).

    `output_key` "" = the signature's only output (an error if it has several). `embedding_layer`
    names the Keras layer whose output is the representation backward-compatible training (BCT)
    aligns; "" = no BCT (focal distillation still works).
    """

    signature: str = "serving_default"
    output_key: str = ""
    scores: str = "probabilities"
    threshold: float = 0.5
    embedding_layer: str = ""

    def __post_init__(self):
        if self.scores not in SCORE_KINDS:
            raise ModelOutputError(f"model scores {self.scores!r} is not one of {SCORE_KINDS}")
        if not 0.0 < self.threshold < 1.0:
            raise ModelOutputError(f"binary threshold must be in (0, 1), got {self.threshold}")

    def pick_output(self, output_names: Iterable[str], where: str) -> str:
        """The output key to read, checked against the signature's outputs."""
        names = sorted(output_names)
        if self.output_key:
            if self.output_key not in names:
                raise ModelOutputError(f"{where}: no output {self.output_key!r}; the signature "
                                       f"returns {names}. Set the model contract's output_key.")
            return self.output_key
        if len(names) != 1:
            raise ModelOutputError(f"{where}: the signature returns {names}; set the model "
                                   "contract's output_key to the one holding class scores")
        return names[0]

    def check_shape(self, shape, where: str) -> None:
        """[N, K] with K >= 1 (K = 1: binary). `shape` may hold None for unknown dimensions."""
        dims = list(shape)
        if len(dims) != 2 or (dims[-1] is not None and dims[-1] < 1):
            raise ModelOutputError(
                f"{where}: class scores of shape {dims}; the model contract expects [examples, "
                "classes] (multiclass, K >= 2) or [examples, 1] (binary: P(class 1) or its logit)")

    def probabilities(self, scores: Any, where: str = "model output") -> np.ndarray:
        """Class scores in any contract form -> verified class probabilities [N, K >= 2]."""
        scores = np.asarray(scores, dtype=np.float64)
        self.check_shape(scores.shape, where)
        if not np.all(np.isfinite(scores)):
            raise ModelOutputError(f"{where}: class scores hold NaN or infinite values")
        if self.scores == "probabilities":
            self._check_probabilities(scores, where)
            probabilities = scores
        else:
            self._check_logits(scores, where)
            probabilities = _sigmoid(scores) if scores.shape[1] == 1 else _softmax(scores)
        if probabilities.shape[1] == 1:
            probabilities = np.concatenate([1.0 - probabilities, probabilities], axis=1)
        return probabilities

    def predicted_class(self, probabilities: np.ndarray) -> np.ndarray:
        """Predicted class ids from `probabilities()`: binary by threshold, else argmax (ties go
        to the lowest class id)."""
        if probabilities.shape[1] == 2:
            return (probabilities[:, 1] > self.threshold).astype(np.int64)
        return np.argmax(probabilities, axis=1).astype(np.int64)

    def predict(self, scores: Any, where: str = "model output") -> tuple[np.ndarray, np.ndarray]:
        """(predicted class ids [N], class probabilities [N, K >= 2]) from raw scores."""
        probabilities = self.probabilities(scores, where)
        return self.predicted_class(probabilities), probabilities

    def class_logits(self, scores: Any) -> np.ndarray:
        """Scores as multiclass logits [N, K >= 2] whose softmax is `probabilities()`: what the
        distillation losses compare (binary z -> [0, z]; probabilities -> log p)."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.scores == "probabilities":
            probabilities = self.probabilities(scores)
            return np.log(np.clip(probabilities, 1e-12, 1.0))
        return np.concatenate([np.zeros_like(scores), scores], 1) if scores.shape[1] == 1 else scores

    def _check_probabilities(self, scores: np.ndarray, where: str) -> None:
        tolerance = _PROBABILITY_TOLERANCE
        if scores.size and (scores.min() < -tolerance or scores.max() > 1 + tolerance):
            raise ModelOutputError(
                f"{where}: declared probabilities, but scores range from {scores.min():.4g} to "
                f"{scores.max():.4g}; these look like logits: set the model contract's "
                "scores='logits'")
        if scores.shape[1] > 1:
            sums = scores.sum(axis=1)
            if scores.size and np.abs(sums - 1).max() > tolerance:
                raise ModelOutputError(
                    f"{where}: declared probabilities, but rows sum to {sums.min():.4g}.."
                    f"{sums.max():.4g}, not 1; set scores='logits' if these are logits")

    def _check_logits(self, scores: np.ndarray, where: str) -> None:
        """Multiclass logits that are every one a probability row were surely mislabelled. Binary
        logits are not second-guessed: a weak model's logits may all lie in [0, 1] (a majority-class
        model near logit 0.5), and a check that depends on how examples fall into batches would
        make the two gates disagree."""
        in_unit = scores.size and scores.min() >= 0 and scores.max() <= 1
        if scores.shape[1] > 1 and in_unit and np.abs(scores.sum(axis=1) - 1).max() < 1e-4:
            raise ModelOutputError(f"{where}: declared logits, but every row is a probability "
                                   "distribution; set the model contract's scores='probabilities'")


def from_dict(kind: type, values: dict):
    """A DataContract or ModelContract from its dataclasses.asdict() form, as stored in JSON
    (execution properties, TFMA metric configs): JSON turns the tuples into lists. Unknown fields
    (a contract written by another graceful version) are refused, naming them."""
    known = {field.name for field in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} fields {unknown}; known: {sorted(known)}")
    return kind(**{key: tuple(value) if isinstance(value, list) else value
                   for key, value in values.items()})


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
