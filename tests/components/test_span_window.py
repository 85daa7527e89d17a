"""Which spans the training window picks."""
from components.span_window.strategy import window_spans


def test_all_spans_when_window_is_zero():
    assert window_spans([3, 1, 2], last_span=None, num_spans=0) == {1, 2, 3}


def test_newest_n_spans_up_to_the_requested_span():
    assert window_spans([1, 2, 3, 4], last_span=3, num_spans=2) == {2, 3}


def test_window_larger_than_history_takes_what_exists():
    assert window_spans([2], last_span=None, num_spans=5) == {2}


def test_spans_after_the_requested_one_are_never_used():
    assert window_spans([1, 5], last_span=2, num_spans=0) == {1}
