"""`check_model` (what `graceful check-model DIR` runs) on tiny real Keras models of every form: it
reports what it found and refuses, by name, what the contract cannot read."""
import pytest

from graceful.contract import DataContract, DataContractError, ModelContract, ModelOutputError
from graceful.model_check import check_model
from tests.graceful.test_evaluation import (FEATURES, FORMS, Case, build_case, example,
                                            export_model, write_files)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_is_read_and_measured(tmp_path, form):
    _, new, records, labels, _, pattern, data, model = build_case(tmp_path, Case(form, "str", "int"))
    signature_only = check_model(new, model)
    assert (signature_only.output_key, signature_only.input_name) == ("scores", "records")
    result = check_model(new, model, pattern, data)
    units = FORMS[form][0]
    assert result.form == ("multiclass" if units > 2 else "binary")
    assert result.classes == max(units, 2) == signature_only.classes
    assert result.examples == len(records) and result.scores == FORMS[form][2]
    assert 0.0 <= result.accuracy <= 1.0


def test_declared_probabilities_that_are_logits_are_named(tmp_path):
    _, new, *_, pattern, data, _ = build_case(tmp_path, Case("multiclass_logits", "int", "int"))
    assert check_model(new, ModelContract()).scores == "probabilities"  # unverifiable without data
    with pytest.raises(ModelOutputError, match=rf"{new}: signature 'serving_default', output "
                                               r"'scores': declared probabilities.*scores='logits'"):
        check_model(new, ModelContract(), pattern, data)


@pytest.mark.parametrize("export, contract, message", [
    ({"reshape": [-1]}, ModelContract(scores="logits"), r"class scores of shape \[None\]"),
    ({"reshape": [-1, 3, 1]}, ModelContract(scores="logits"), r"of shape \[None, 3, 1\]"),
    ({"output_key": "logits", "extra_outputs": True}, ModelContract(scores="logits"),
     r"the signature returns \['embedding', 'logits'\]; set the model contract's output_key"),
    ({}, ModelContract(output_key="probabilities"), r"no output 'probabilities'"),
    ({}, ModelContract(signature="predict"), r"no signature 'predict'; the SavedModel has "
                                             r"\['serving_default'\]"),
])
def test_models_the_contract_cannot_read_are_refused_by_name(tmp_path, export, contract, message):
    model_dir = export_model(tmp_path / "model", 3, None, seed=1, **export)
    with pytest.raises(ModelOutputError, match=message):
        check_model(model_dir, contract)


def test_a_signature_not_on_serialized_examples_is_refused(tmp_path):
    import tf_keras as keras

    model = keras.Sequential([keras.layers.Dense(3, input_shape=(FEATURES,), name="dense")])
    model.save(str(tmp_path / "model"), save_format="tf")  # Keras' own signature: float inputs
    with pytest.raises(ModelOutputError, match=r"takes \{'dense_input': 'float32\[None, 4\]'\}; "
                                               "the model contract needs exactly one input, a "
                                               "string tensor"):
        check_model(str(tmp_path / "model"), ModelContract(scores="logits"))


def test_labels_are_checked_against_the_data_contract(tmp_path):
    model_dir = export_model(tmp_path / "model", 3, None, seed=1)
    pattern = write_files(tmp_path / "data", [example([0.5] * FEATURES, "cat", 1)], parts=1)
    logits = ModelContract(scores="logits")
    with pytest.raises(DataContractError, match=r"label_key 'target' is missing .* features: "
                                                r"\['example_id', 'label', 'source', 'x'\]"):
        check_model(model_dir, logits, pattern, DataContract(label_key="target"))
    with pytest.raises(DataContractError, match=r"'cat', which is not in class_names \['a', 'b', "
                                                r"'c'\]"):
        check_model(model_dir, logits, pattern, DataContract(class_names=("a", "b", "c")))
    with pytest.raises(ModelOutputError, match=r"scores 3 classes, but the data contract's "
                                               r"class_names has 2"):
        check_model(model_dir, logits, pattern, DataContract(class_names=("cat", "dog")))
    with pytest.raises(DataContractError, match="no files match"):
        check_model(model_dir, logits, str(tmp_path / "none-*.gz"), DataContract())
