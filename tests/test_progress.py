"""Progress bars where someone watches them, plain lines in a log file, silence in CI."""
import io
import subprocess
import sys
from contextlib import redirect_stderr

import pytest
import torch

from models.made import MADE
from pipeline import progress
from pipeline.train_config import TrainConfig
from pipeline.training_loop import TrainingData, fit

SHAPE = (1, 4, 4)


class Terminal(io.StringIO):
    """A stand-in stderr that says it is a terminal and records what is written to it."""

    def isatty(self):
        return True

    @property
    def text(self):
        return self.getvalue()


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(progress, "_quiet", False)
    monkeypatch.setenv("COLUMNS", "100")  # the width of the stand-in terminal
    return Terminal()  # tests redirect stderr to it themselves: pytest resets sys.stderr after setup


def tiny_fit(epochs: int = 3, quiet: bool = False):
    torch.manual_seed(0)
    images = (torch.rand(64, *SHAPE) < 0.3).float()
    cfg = TrainConfig(epochs=epochs, batch_size=16, patience=None)
    fit(MADE(SHAPE, hidden_sizes=[8]), TrainingData(images, None, "cpu", False), images[:16], cfg, quiet=quiet)


def test_training_into_a_log_file_writes_one_line_per_epoch_and_no_carriage_returns(capfd, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    tiny_fit(epochs=3)
    out, err = capfd.readouterr()  # pytest's capture is not a terminal, as a log file is not
    assert "\r" not in out + err
    lines = [line for line in (out + err).splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]


def with_bar(model):
    model.progress = progress.sampling_bar  # as the evaluate stage does
    return model


def test_sampling_in_a_terminal_shows_a_bar_with_the_time_left(terminal):
    with redirect_stderr(terminal):
        with_bar(MADE(SHAPE, hidden_sizes=[8])).sample(2)
    assert "sampling" in terminal.text and "<" in terminal.text and "px" in terminal.text


def test_a_model_draws_no_bar_of_its_own_and_the_same_samples_with_one(terminal):
    torch.manual_seed(0)
    model = MADE(SHAPE, hidden_sizes=[8])
    with redirect_stderr(terminal):
        plain = model.sample(4, torch.Generator().manual_seed(1))
    assert terminal.text == ""
    with redirect_stderr(terminal):
        assert torch.equal(with_bar(model).sample(4, torch.Generator().manual_seed(1)), plain)


@pytest.mark.parametrize("how", ["ci", "quiet"])
def test_no_bars_in_ci_or_when_quiet(terminal, monkeypatch, how):
    if how == "ci":
        monkeypatch.setenv("CI", "true")
    else:
        progress.set_quiet(True)
    with redirect_stderr(terminal):
        with_bar(MADE(SHAPE, hidden_sizes=[8])).sample(2)
        tiny_fit(epochs=1, quiet=how == "quiet")
    assert terminal.text == ""


def test_the_quiet_flag_of_a_stage_silences_bars(monkeypatch):
    from pipeline import stage
    monkeypatch.delenv("CI", raising=False)  # in CI, --quiet is the default
    monkeypatch.setattr(progress, "_quiet", False)
    stage.parse_args("x", ["--quiet"])
    assert progress._quiet
    stage.parse_args("x", [])
    assert not progress._quiet


@pytest.mark.parametrize("value, ci", [("", False), ("0", False), ("false", False), ("No", False),
                                       ("true", True), ("1", True), ("yes", True)])
def test_one_ci_predicate_and_the_stages_quiet_default_follows_it(monkeypatch, value, ci):
    from pipeline import stage
    monkeypatch.setenv("CI", value)
    monkeypatch.setattr(progress, "_quiet", False)
    assert progress.in_ci() is ci
    assert stage.parse_args("x", []).quiet is ci


def test_a_stage_script_ends_at_once_with_its_output_flushed_and_an_error_still_exits_1(tmp_path):
    """run_as_script skips the interpreter's teardown after success, but what the stage printed and
    wrote is all there; a stage that fails exits through run's one-line error as before."""
    script = ("import atexit, sys; from pathlib import Path; from pipeline import stage\n"
              "atexit.register(print, ' and torn down')\n"
              "def main():\n"
              "    if sys.argv[1] == 'fail': raise stage.PipelineError('models.x: broken')\n"
              "    Path(sys.argv[2]).write_text('done'); print('printed', end='')\n"
              "stage.run_as_script(main)\n")
    ok = subprocess.run([sys.executable, "-c", script, "ok", str(tmp_path / "out.txt")], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout, (tmp_path / "out.txt").read_text()) == (0, "printed", "done")
    failed = subprocess.run([sys.executable, "-c", script, "fail", "-"], capture_output=True, text=True)
    assert (failed.returncode, failed.stderr.strip()) == (1, "error: models.x: broken")
