"""A team's own tabular data, for the tests: scikit-learn's bundled tables written out as CSV spans.

scikit-learn ships the wine (3 classes, 178 rows) and breast-cancer (binary, 569 rows) tables, so
nothing is downloaded. Each span holds a disjoint slice of the rows as `train/data.csv` plus the same
held-out rows as `eval/data.csv` (every run is judged on the same examples), with an integer `row`
id column and the label in `target`.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
from sklearn import datasets

LABEL, ID = "target", "row"
TABLES = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}


def load_table(name: str) -> tuple[pd.DataFrame, tuple]:
    """(rows with feature columns, `row` and `target`; class names), shuffled reproducibly."""
    bunch = TABLES[name](as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: "".join(ch if ch.isalnum() else "_" for ch in c))
    frame.insert(0, ID, np.arange(len(frame), dtype=np.int64))
    order = np.random.default_rng(0).permutation(len(frame))
    return frame.iloc[order].reset_index(drop=True), tuple(str(n) for n in bunch.target_names)


def write_spans(name: str, root: str, num_spans: int = 2, eval_share: float = 0.3) -> tuple:
    """Writes span-1..num_spans of table `name` under `root`; returns the class names."""
    frame, class_names = load_table(name)
    held_out = int(len(frame) * eval_share)
    evaluation, training = frame.iloc[:held_out], frame.iloc[held_out:]
    for span, part in enumerate(np.array_split(np.arange(len(training)), num_spans), 1):
        for split, rows in (("train", training.iloc[part]), ("eval", evaluation)):
            folder = os.path.join(root, f"span-{span}", split)
            os.makedirs(folder, exist_ok=True)
            rows.to_csv(os.path.join(folder, "data.csv"), index=False)
    return class_names
