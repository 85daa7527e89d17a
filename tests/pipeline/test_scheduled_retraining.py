"""`graceful run --latest`, as a scheduler calls it: spans arrive one after another; each new span
gets one gated run judged against the previous blessed model, and no new span means no run."""
import pytest

from graceful import cli, data, history
from tests.conftest import TINY_EVAL, TINY_SPAN

pytestmark = pytest.mark.slow


def _latest(home, capsys, *extra):
    code = cli.main(["run", "--latest", "--home", home, "--model", "small", "--epochs", "3",
                     "--auto-approve", "--min-accuracy", "0.3", "--max-nfr", "1",
                     "--max-class-nfr", "1", "--max-relative-nfr", "100", *extra])
    return code, capsys.readouterr().out


def _span_arrives(home, span):
    train, test = data.load("train"), data.load("test")
    data.write_span(f"{home}/data", span, train.take((span - 1) * TINY_SPAN, span * TINY_SPAN),
                    test.take(0, TINY_EVAL))


def test_each_arriving_span_is_trained_once_against_the_previous_blessed_model(tmp_path, capsys):
    home = str(tmp_path / "home")
    assert cli.main(["run", "--latest", "--home", home]) == 2  # no data yet: says where it looks
    assert "No data spans in" in capsys.readouterr().err

    for span in (1, 2, 3):
        _span_arrives(home, span)
        code, out = _latest(home, capsys)
        assert code in (cli.EXIT_PUSHED, cli.EXIT_BLOCKED) and f"run on span {span}" in out
        pushed = history.runs(f"{home}/metadata.sqlite")[-1].pushed
        assert code == (cli.EXIT_PUSHED if pushed else cli.EXIT_BLOCKED), "the status says which"
        code, out = _latest(home, capsys)  # the scheduler fires again before new data lands
        assert code == cli.EXIT_NOTHING_TO_DO and "nothing to do" in out

    runs = history.runs(f"{home}/metadata.sqlite")
    assert [r.span for r in runs] == [1, 2, 3]
    for number, run in enumerate(runs[1:], 1):
        blessed_before = [r for r in runs[:number] if r.pushed]
        assert run.baseline_model_id == blessed_before[-1].model_id
    assert runs[0].pushed and all(r.blessed is not None for r in runs)

    # Another training configuration has not seen these spans: --latest picks the newest.
    code, out = _latest(home, capsys, "--seed", "7")
    assert code in (cli.EXIT_PUSHED, cli.EXIT_BLOCKED) and "spans [1, 2, 3] are new; training on the newest, 3" in out
    assert history.runs(f"{home}/metadata.sqlite")[-1].span == 3
