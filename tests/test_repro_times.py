"""bench/repro_times.py: a `dvc repro` log's stage times, split into what the stages report and the rest."""
import json

from bench import repro_times

LOG = """     0.5 Running stage 'digest':
     3.0 > python -m pipeline.digest
     4.0 Running stage 'train@made':
    20.0 Running stage 'evaluate@made':
    29.0 Running stage 'report':
    31.5 dvc repro exited 0
"""


def test_each_stage_lasts_until_the_next_starts_and_its_reported_seconds_are_split_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results/made").mkdir(parents=True)
    (tmp_path / "results/made/train.json").write_text(json.dumps({"train_seconds": 12.0}))
    (tmp_path / "results/made/eval.json").write_text(json.dumps({"eval_seconds": 5.0}))
    walls = repro_times.stage_walls(LOG.splitlines(keepends=True))
    assert walls == {"digest": 3.5, "train@made": 16.0, "evaluate@made": 9.0, "report": 2.5}
    rows = repro_times.table(walls).splitlines()
    assert "| train | 1 | 16 | 12 | 4 |" in rows and "| evaluate | 1 | 9 | 5 | 4 |" in rows
    assert rows[-1] == "| all | 4 | 31 | 17 | 14 |"
