"""Text summaries of flip reports, from a report built by the FlipEvaluator's own function."""
import numpy as np

from components.flip_evaluator.executor import build_report
from graceful.history import format_flip_report


def _row(example_id, label, old, new, confidence):
    prob = np.full(3, (1 - confidence) / 2)
    prob[new] = confidence
    return example_id, label, old, new, prob


def test_report_summary_names_worst_class_and_flips():
    rows = [_row(1, 0, 0, 1, 0.95), _row(2, 0, 0, 0, 0.8), _row(3, 1, 1, 1, 0.9),
            _row(4, 2, 2, 0, 0.6), _row(5, 2, 1, 2, 0.7)]
    batches = [tuple(np.array([row[i] for row in part]) for i in range(5))
               for part in (rows[:2], rows[2:])]
    report = build_report(batches, high_confidence=0.9, max_listed=10)
    text = format_flip_report(report, classes=("cat", "dog", "fox"))
    assert "negative flips 2 (NFR 0.4000" in text and "high-confidence 1" in text
    assert "positive flips 1" in text
    lines = text.splitlines()
    assert lines[lines.index("worst flips (of 2 listed):") + 1] == (
        "  example 1: cat was right, now dog with confidence 0.950")
    assert "  cat: NFR 0.5000 (1 of 2)" in lines


def test_first_run_report_says_why_there_are_no_flips():
    assert format_flip_report({"has_baseline": False, "reason": "no baseline yet"}) == (
        "no flips to report: no baseline yet")
