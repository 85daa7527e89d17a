"""The data checks DataGate runs on StatisticsGen's statistics, besides ExampleValidator's anomalies.

Why here and not in the schema: the curated schema says what one example looks like; these say what a
span needs to be worth training on. A span of 3 examples, an empty span (its files hold zero records)
or a span whose labels are all one class passes every per-feature check, yet trains a useless model
that the gates then have to catch (or, with few examples, cannot). Each problem is one line naming the
span, the split, the numbers and the setting that decides it.
"""
from __future__ import annotations

import os

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

SCHEMA_FILE = "schema.pbtxt"


def load_schema(schema_uri: str) -> schema_pb2.Schema:
    """The curated schema from an ImportSchemaGen/SchemaGen artifact's directory."""
    import tensorflow_data_validation as tfdv

    return tfdv.load_schema_text(os.path.join(schema_uri, SCHEMA_FILE))


def label_classes(schema: schema_pb2.Schema, label_key: str, class_names=()) -> list[str]:
    """Every label class as it appears in the data, [] when unknown. From the data contract's
    class_names (integer labels: ids 0..K-1; string labels: the names), else the schema's label
    domain (a categorical int_domain min..max, or a string_domain)."""
    feature = next((f for f in schema.feature if f.name == label_key), None)
    if feature is None:
        return []
    if class_names:
        if feature.type == schema_pb2.BYTES:
            return [str(name) for name in class_names]
        return [str(index) for index in range(len(class_names))]
    domain = feature.int_domain
    if (feature.HasField("int_domain") and domain.is_categorical and domain.HasField("min")
            and domain.HasField("max")):
        return [str(value) for value in range(domain.min, domain.max + 1)]
    if feature.HasField("string_domain"):
        return list(feature.string_domain.value)
    return []


def _feature(dataset: statistics_pb2.DatasetFeatureStatistics, name: str):
    for feature in dataset.features:
        if feature.name == name or list(feature.path.step) == [name]:
            return feature
    return None


def seen_classes(feature: statistics_pb2.FeatureNameStatistics, classes: list[str]) -> set[str]:
    """The classes with at least one example.

    Exact when the statistics count each value (string_stats: string labels, or integer labels
    that StatisticsGen's schema marks categorical). Otherwise from the numeric statistics: values
    outside min..max are surely absent; inside, TFDV's 10-bucket histogram is interpolated from a
    quantile sketch, so a class counts as seen when its bucket holds at least half an example
    (exact for small spans, may miss a lone absent class inside the range on large ones).
    """
    if feature.HasField("string_stats"):
        strings = feature.string_stats
        counted = [(b.label, b.sample_count) for b in strings.rank_histogram.buckets] or [
            (v.value, v.frequency) for v in strings.top_values]
        return {label for label, count in counted if count > 0}
    stats = feature.num_stats
    if not stats.common_stats.num_non_missing:
        return set()
    buckets = [h for h in stats.histograms
               if h.type == statistics_pb2.Histogram.STANDARD][:1]
    numeric = [c for c in classes if c.lstrip("-").isdigit()]
    return {c for c in numeric if stats.min <= int(c) <= stats.max and (not buckets or any(
        b.low_value <= int(c) <= b.high_value and b.sample_count >= 0.5
        for b in buckets[0].buckets))}


def check_split(dataset: statistics_pb2.DatasetFeatureStatistics, where: str, min_examples: int,
                label_key: str, classes: list[str]) -> list[str]:
    """Problems of one split's statistics; `where` is e.g. "span 4, split 'train'"."""
    count = dataset.num_examples
    if count < min_examples:
        return [f"{where}: {count} examples, fewer than the minimum {min_examples} "
                f"(data_checks.min_examples); add data to the span or lower the minimum"]
    if not classes:
        return []
    feature = _feature(dataset, label_key)
    seen = seen_classes(feature, classes) if feature else set()
    missing = [c for c in classes if c not in seen]
    if not missing:
        return []
    return [f"{where}: no examples of label class(es) {', '.join(map(str, missing))} of "
            f"'{label_key}' (its classes: {', '.join(classes)}; "
            f"data_checks.require_all_classes); add examples of every class to the span"]


def check_statistics(splits: dict, span, min_examples: int, label_key: str,
                     classes: list[str]) -> list[str]:
    """Problems of every split: `splits` maps split name -> DatasetFeatureStatisticsList."""
    problems = []
    for split, stats_list in splits.items():
        dataset = (stats_list.datasets[0] if stats_list.datasets
                   else statistics_pb2.DatasetFeatureStatistics())
        problems += check_split(dataset, f"span {span}, split '{split}'", min_examples, label_key,
                                classes)
    return problems
