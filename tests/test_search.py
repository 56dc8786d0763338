"""The search for each model's best configuration at the quick budget (pipeline/search.py)."""
import json
import math

import pytest

from pipeline import params as P
from pipeline import search
from pipeline.io import PipelineError
from tests.drills.workspace import REPO, synthetic_data


def toy_row(model, settings, curve, seed=0, data="binarized", family=None, budget=8.0):
    return {"model": model, "data": data, "family": family or model, "settings": json.dumps(settings, sort_keys=True),
            "seed": seed, "budget_flops": budget, "val_nll": min(v for _, v in curve), "curve": curve}


def test_a_grid_is_the_product_of_its_axes_and_a_mapping_moves_its_keys_together():
    points = search.grid_points("pixelcnn", {"size": [{"channels": 8, "head_channels": 8}, {"channels": 16,
                                                                                         "head_channels": 32}],
                                             "train.lr": [1e-3, 1e-2]})
    assert [p.settings for p in points] == [
        {"channels": 8, "head_channels": 8, "train.lr": 1e-3}, {"channels": 8, "head_channels": 8, "train.lr": 1e-2},
        {"channels": 16, "head_channels": 32, "train.lr": 1e-3}, {"channels": 16, "head_channels": 32, "train.lr": 1e-2}]
    with pytest.raises(PipelineError, match="pixelcnn.channels: expected a non-empty list"):
        search.grid_points("pixelcnn", {"channels": 8})


def test_a_points_settings_go_over_the_models_quick_settings_and_train_keys_into_train():
    params = P.load(REPO / "params.yaml")
    spec = search.spec_of(params, search.Point("pixelcnn", {"channels": 8, "train.lr": 0.5, "train.batch_size": 7}, 3))
    assert spec.kwargs["channels"] == 8 and spec.kwargs["residual_blocks"] == P.model_spec(
        {**params, "profile": "quick"}, "pixelcnn").kwargs["residual_blocks"]
    assert (spec.train.lr, spec.train.batch_size, spec.train.seed) == (0.5, 7, 3)
    assert spec.train.budget_flops == search.budget_of(params)


def test_a_bad_key_in_the_grid_fails_before_anything_trains():
    params = P.load(REPO / "params.yaml")
    grid = {"made": search.grid_points("made", {"hidden_units": [8]})}
    with pytest.raises(PipelineError, match="hidden_units"):
        search.planned(params, grid, None, [], [])


def test_seed_runs_are_the_winners_settings_and_differ_only_by_seed():
    params = P.load(REPO / "params.yaml")
    budget = search.budget_of(params)
    done = [toy_row("made", {"train.lr": 0.01}, [[1, 100.0]], budget=budget),
            toy_row("made", {"train.lr": 0.003}, [[1, 99.0]], budget=budget)]
    grid = {"made": search.grid_points("made", {"train.lr": [0.01, 0.003]})}
    points = search.planned(params, grid, None, [1, 2], done)
    assert [(p.settings, p.seed) for p in points] == [({"train.lr": 0.003}, 1), ({"train.lr": 0.003}, 2)]
    specs = [search.spec_of(params, search.Point("made", {"train.lr": 0.003}, seed)) for seed in (0, 1, 2)]
    assert [s.train.seed for s in specs] == [0, 1, 2]
    assert len({(json.dumps(s.kwargs, sort_keys=True), repr({**vars(s.train), "seed": 0})) for s in specs}) == 1


def test_points_of_another_budget_or_grid_do_not_compete():
    grid = {"made": search.grid_points("made", {"train.lr": [0.01]})}
    rows = [toy_row("made", {"train.lr": 0.01}, [[1, 100.0]]), toy_row("made", {"train.lr": 0.01}, [[1, 99.0]], seed=1),
            toy_row("made", {"train.lr": 0.1}, [[1, 90.0]]), toy_row("made", {"train.lr": 0.01}, [[1, 80.0]], budget=4.0)]
    assert search.current(rows, 8.0, grid) == rows[:2]


def test_a_frontier_point_is_the_best_of_any_point_within_that_compute():
    rows = [toy_row("a", {"x": 1}, [[1, 50.0], [2, 40.0], [4, 35.0], [8, 34.0]]),
            toy_row("a", {"x": 2}, [[1, 60.0], [2, 38.0], [4, 30.0], [8, 20.0]]),
            toy_row("a", {"x": 3}, [[1, 10.0]], seed=1),            # a seed run is not a searched point
            toy_row("b", {"x": 1}, [[2, 36.0], [8, 25.0]]),          # validated first at 2 FLOPs
            toy_row("c", {"x": 1}, [[1, 45.0]])]                     # stopped early (an epoch cap)
    front = search.frontier(rows, [1, 2, 4, 8])
    assert front["a"] == [50.0, 38.0, 30.0, 20.0]
    assert math.isnan(front["b"][0]) and front["b"][1:] == [36.0, 36.0, 25.0]
    assert front["c"] == [45.0] * 4
    assert search.leads(front, [1, 2, 4, 8]) == [(1, "c"), (2, "b"), (4, "a")]


def test_the_summary_names_each_tracks_baseline_and_who_cannot_beat_it():
    rows = [toy_row("bernoulli", {}, [[8, 200.0]]), toy_row("good", {"x": 1}, [[8, 100.0]]),
            toy_row("good", {"x": 1}, [[8, 101.0]], seed=1), toy_row("poor", {"x": 1}, [[8, 250.0]]),
            toy_row("given_digit", {}, [[8, 50.0]]),
            toy_row("categorical_grey", {}, [[8, 900.0]], data="grey", family="categorical")]
    found = search.summarize(rows, 8.0, 2, conditional={"given_digit"})
    assert found.models["bernoulli"].is_baseline and found.models["categorical_grey"].is_baseline
    assert found.models["good"].beats_baseline and not found.models["poor"].beats_baseline
    assert found.models["good"].seed_nlls == [100.0, 101.0] and found.models["good"].seed_sd == pytest.approx(0.7071, 1e-3)
    assert "given_digit" not in found.frontiers["binarized"] and found.leaders["binarized"] == [(8.0, "good")]


def test_the_tables_winners_are_params_quick_settings():
    """search/results.csv is read back; each model's best seed-0 point at the quick budget is what
    params.yaml's quick profile trains (`python -m pipeline.search --winners` prints them)."""
    params = P.load(REPO / "params.yaml")
    rows = search.current(search.read_table(REPO / search.TABLE), search.budget_of(params),
                          search.read_grid(REPO / search.GRID))
    best = search.winners(rows)
    assert set(best) == set(P.model_names(params)), "every model was searched at the current budget"
    for model, row in best.items():
        spec = P.model_spec({**params, "profile": "quick"}, model)
        for key, value in json.loads(row["settings"]).items():
            actual = getattr(spec.train, key.removeprefix("train.")) if key.startswith("train.") else spec.kwargs[key]
            assert (list(actual) if isinstance(actual, tuple) else actual) == value, f"models.{model}: {key}"
        assert len(search.seed_spread(rows, row)) >= 3, f"{model}: its winner with 3 seeds"


def test_a_point_trains_at_the_budget_and_the_same_seed_gives_the_same_row(tmp_path, monkeypatch):
    synthetic_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = P.load(REPO / "params.yaml")
    params["models"] = {"tiny": {"family": "made", "data": "binarized", "hidden_sizes": [8]}}
    params["train"]["quick"].update(budget_flops=2e7, max_val=50)
    rows = [search.train_point(params, search.Point("tiny", {"train.lr": 0.01}, seed), 1) for seed in (0, 0, 1)]
    assert rows[0]["budget_flops"] == 2e7 and rows[0]["curve"] == rows[1]["curve"]
    assert rows[0]["curve"] != rows[2]["curve"]
    flops = [f for f, _ in json.loads(rows[0]["curve"])]
    assert len(flops) == 7 and flops[-1] <= 2e7 + rows[0]["flops_per_image"]
    search.write_table(rows[1:], tmp_path / "table.csv")
    assert [r["seed"] for r in search.read_table(tmp_path / "table.csv")] == [0, 1]
