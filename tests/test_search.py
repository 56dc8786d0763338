"""The search for each model's best configuration at the quick budget (pipeline/search.py, Optuna
studies) and its table (pipeline/search_table.py)."""
import json
import math
import multiprocessing

import optuna
import pytest

from pipeline import params as P
from pipeline import search
from pipeline import search_table as T
from pipeline.io import PipelineError
from pipeline.model_params import model_spec
from tests.drills.workspace import REPO, synthetic_data
from tests.servers import postgres_cluster, why_no_postgres

TINY = {"tiny": {"family": "made", "data": "binarized", "hidden_sizes": [8]}}


def toy_row(model, settings, curve, seed=0, data="binarized", family=None, budget=8.0, state=T.FINISHED,
            search_name=T.SEARCH):
    return {"model": model, "data": data, "family": family or model, "search": search_name, "trial": None,
            "state": state, "settings": json.dumps(settings, sort_keys=True), "seed": seed, "budget_flops": budget,
            "val_nll": min(v for _, v in curve), "curve": curve}


def tiny_params(budget=2e7):
    params = P.load(REPO / "params.yaml")
    params["models"] = dict(TINY)
    params["train"]["quick"].update(budget_flops=budget, max_val=50)
    return params


def test_a_list_is_a_choice_a_mapping_a_range_and_a_bad_axis_one_line():
    size = search.parse_axis("m", "size", [{"channels": 8, "head_channels": 8}, {"channels": 16, "head_channels": 32}])
    lr = search.parse_axis("m", "train.lr", {"low": 1e-3, "high": 1e-1, "log": True})
    batch = search.parse_axis("m", "train.batch_size", {"low": 8, "high": 256, "log": True})
    trial = optuna.trial.FixedTrial({"size": json.dumps({"channels": 16, "head_channels": 32}),
                                     "train.lr": 0.0123456, "train.batch_size": 37})
    settings = search.Space("m", 4, (size, lr, batch)).suggest(trial)
    assert settings == {"channels": 16, "head_channels": 32, "train.lr": 0.0123, "train.batch_size": 37}
    assert batch.integer and not lr.integer
    for bad, message in (({"low": 1, "high": 1}, "low < high"), ({"low": 0, "high": 1, "log": True}, "low > 0"),
                         (8, "expected a non-empty list"), ({"low": 1, "hi": 2}, "expected a non-empty list")):
        with pytest.raises(PipelineError, match=message):
            search.parse_axis("m", "x", bad)


def test_the_committed_space_names_only_models_of_params_and_its_keys_validate():
    params = P.load(REPO / "params.yaml")
    spaces = search.read_space(REPO / search.SPACE)
    assert set(spaces) == set(P.model_names(params))
    assert len(search.check_space(params, spaces, None)) == len(spaces)
    with pytest.raises(PipelineError, match="--models: nosuch not in"):
        search.check_space(params, spaces, ["nosuch"])


def test_a_bad_key_in_the_space_fails_before_anything_trains():
    params = P.load(REPO / "params.yaml")
    space = search.Space("made", 4, (search.parse_axis("made", "hidden_units", [8]),))
    with pytest.raises(PipelineError, match="hidden_units"):
        search.check_space(params, {"made": space}, None)


def test_a_model_whose_data_is_missing_fails_before_anything_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = P.load(REPO / "params.yaml")
    space = search.Space("made_grey", 4, ())
    with pytest.raises(PipelineError, match="data/grey/train.npy is missing"):
        search.require_data(params, [space])


def test_a_winner_on_the_end_of_a_range_or_of_its_choices_is_named():
    space = search.Space("m", 4, (search.parse_axis("m", "train.lr", {"low": 1e-3, "high": 1e-1, "log": True}),
                                  search.parse_axis("m", "size", [{"c": 1}, {"c": 2}, {"c": 3}])))
    assert space.edges({"train.lr": 1e-2, "c": 2}) == []
    assert space.edges({"train.lr": 0.099, "c": 2}) == ["train.lr at its high end"]
    assert space.edges({"train.lr": 1e-2, "c": 1}) == ["size at its low end"]
    batch = search.Space("m", 4, (search.parse_axis("m", "train.batch_size", {"low": 1, "high": 64, "log": True}),))
    assert batch.edges({"train.batch_size": 1}) == [], "nothing lies below a batch of one"
    assert batch.edges({"train.batch_size": 64}) == ["train.batch_size at its high end"]
    from_16 = search.parse_axis("m", "train.batch_size", {"low": 16, "high": 256, "log": True})
    floored = search.Space("m", 4, (search.at_floor(search.SPACE, "m", from_16, 16),))
    assert floored.edges({"train.batch_size": 16}) == [], "a batch below the space's floor is ruled out, not untried"
    assert search.Space("m", 4, (from_16,)).edges({"train.batch_size": 16}) == ["train.batch_size at its low end"]
    capped = search.Space("m", 4, (search.parse_axis("m", "train.lr", {"low": 1e-3, "high": 1e-2, "log": True,
                                                                        "limit": "high"}),))
    assert capped.edges({"train.lr": 0.0099}) == [] and capped.edges({"train.lr": 0.00101}) == ["train.lr at its low end"]
    with pytest.raises(PipelineError, match="limit must be low or high"):
        search.parse_axis("m", "train.lr", {"low": 1e-3, "high": 1e-2, "limit": "top"})


def test_a_batch_range_below_the_spaces_smallest_batch_is_one_line(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("smallest_batch: 16\nmade:\n  train.batch_size: {low: 4, high: 256, log: true}\n")
    with pytest.raises(PipelineError, match="made.train.batch_size starts at 4, below smallest_batch"):
        search.read_space(space)
    space.write_text("smallest_batch: 16\nmade:\n  train.batch_size: {low: 16, high: 256, log: true}\n")
    assert search.read_space(space)["made"].axes[0].limit == "low"


def test_a_trials_settings_go_over_the_models_quick_settings_and_train_keys_into_train():
    params = P.load(REPO / "params.yaml")
    spec = T.spec_of(params, "pixelcnn", {"channels": 8, "train.lr": 0.5, "train.batch_size": 7}, 3)
    assert spec.kwargs["channels"] == 8 and spec.kwargs["residual_blocks"] == model_spec(
        {**params, "profile": "quick"}, "pixelcnn").kwargs["residual_blocks"]
    assert (spec.train.lr, spec.train.batch_size, spec.train.seed) == (0.5, 7, 3)
    assert spec.train.budget_flops == search.budget_of(params)
    assert spec.train.bf16 is False, "the quick profile trains in fp32 on every CPU"


def test_the_search_trains_through_the_train_stages_function(tmp_path, monkeypatch):
    """A trial is trained by pipeline.fit_model.fit_model, which the train stage calls too."""
    import pipeline.fit_model
    from pipeline import train as train_stage
    synthetic_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    calls = []
    real = pipeline.fit_model.fit_model

    def spy(spec, device, **kwargs):
        calls.append(spec.train)
        return real(spec, device, **kwargs)
    monkeypatch.setattr(pipeline.fit_model, "fit_model", spy)
    search.train_row(tiny_params(), "tiny", {"train.lr": 0.01})
    assert len(calls) == 1 and calls[0].budget_flops == 2e7
    assert train_stage.fit_model is real, "the train stage imports the same function"


def test_a_configuration_trains_at_the_budget_and_the_same_seed_gives_the_same_row(tmp_path, monkeypatch):
    synthetic_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    rows = [search.train_row(params, "tiny", {"train.lr": 0.01}, seed) for seed in (0, 0, 1)]
    assert rows[0]["budget_flops"] == 2e7 and rows[0]["curve"] == rows[1]["curve"]
    assert rows[0]["curve"] != rows[2]["curve"] and rows[0]["state"] == T.SEED_RUN
    flops = [f for f, _ in rows[0]["curve"]]
    assert len(flops) == 7 and flops[-1] <= 2e7 + rows[0]["flops_per_image"]
    T.write_table(rows[1:], tmp_path / "table.csv")
    assert [r["seed"] for r in T.read_table(tmp_path / "table.csv")] == [0, 1]


def study_space(trials: int) -> search.Space:
    return search.Space("tiny", trials, (search.parse_axis("tiny", "train.lr", {"low": 1e-3, "high": 0.3, "log": True}),
                                         search.parse_axis("tiny", "train.batch_size", {"low": 8, "high": 64})))


def test_a_study_is_repeatable_resumes_where_it_stopped_and_prunes_along_the_budget(tmp_path, monkeypatch):
    synthetic_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    first = search.run_study(params, study_space(3), f"sqlite:///{tmp_path}/a.db", 1, quiet=True)
    resumed = search.run_study(params, study_space(8), f"sqlite:///{tmp_path}/a.db", 1, quiet=True)
    again = search.run_study(params, study_space(8), f"sqlite:///{tmp_path}/b.db", 1, quiet=True)
    assert resumed[:3] == first, "a resumed study keeps its trials and runs only those it lacks"
    assert [(r["settings"], r["val_nll"], r["state"]) for r in resumed] == \
        [(r["settings"], r["val_nll"], r["state"]) for r in again], "the same study from scratch gives the same trials"
    assert [r["trial"] for r in again] == list(range(8))
    pruned = [r for r in again if r["state"] == T.PRUNED]
    assert pruned, "successive halving stops trials that are behind"
    budget = params["train"]["quick"]["budget_flops"]
    for row in pruned:
        assert row["curve"][-1][0] < budget / 4 * 1.01, "pruned at 1/4 of the budget"
    assert T.winners(again)["tiny"]["state"] == T.FINISHED


def test_a_study_missing_from_the_database_is_rebuilt_from_the_committed_table(tmp_path, monkeypatch):
    synthetic_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    first = search.run_study(params, study_space(4), f"sqlite:///{tmp_path}/a.db", 1, quiet=True)
    (tmp_path / "search").mkdir()
    T.write_table(first)
    go_on = search.run_study(params, study_space(6), f"sqlite:///{tmp_path}/b.db", 1, quiet=True)
    assert [(r["settings"], r["state"], r["val_nll"]) for r in go_on[:4]] == \
        [(r["settings"], r["state"], r["val_nll"]) for r in first]
    assert len(go_on) == 6 and go_on[4]["settings"] not in {r["settings"] for r in first}


def test_a_choice_added_to_a_study_is_tried_beside_the_winners_other_settings_even_after_a_kill(tmp_path, monkeypatch):
    synthetic_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    params, storage = tiny_params(), f"sqlite:///{tmp_path}/a.db"

    def space(sizes, trials):
        return search.Space("tiny", trials, (*study_space(0).axes, search.parse_axis("tiny", "hidden_sizes", sizes)))
    first = search.run_study(params, space([[8], [16]], 4), storage, 1, quiet=True)
    search.run_study(params, space([[4], [8], [16]], 4), storage, 1, quiet=True)  # enqueues the new choice
    search.open_study("tiny", search.budget_of(params), storage).ask()  # and is killed while it trains
    widened = search.run_study(params, space([[4], [8], [16]], 5), storage, 1, quiet=True)
    assert [(r["settings"], r["val_nll"]) for r in widened[:4]] == [(r["settings"], r["val_nll"]) for r in first]
    best = json.loads(T.winners([r for r in first if r["state"] == T.FINISHED])["tiny"]["settings"])
    assert json.loads(widened[4]["settings"]) == {**best, "hidden_sizes": [4]}


def _two_workers(storage: str, root: str) -> list[dict]:
    import os
    os.chdir(root)
    return search.run_study(tiny_params(), study_space(4), storage, 1, quiet=True)


def test_two_processes_share_one_study_in_postgresql(tmp_path, monkeypatch):
    problem = why_no_postgres()
    if problem is not None:
        pytest.skip(problem)
    synthetic_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    with postgres_cluster() as url:
        search.open_study("tiny", 2e7, url)  # as `main` does before its workers start: the schema once
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            results = pool.starmap(_two_workers, [(url, str(tmp_path))] * 2)
        trials = optuna.load_study(study_name=search.study_name("tiny", 2e7), storage=url).trials
    states = [t.state for t in trials]
    finished = [s for s in states if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) >= 4 and len({t.number for t in trials}) == len(states)
    assert max(len(r) for r in results) == len(finished), "each worker sees the other's trials"


def test_the_current_search_replaces_the_grid_model_by_model_and_a_pruned_trial_never_wins():
    rows = [toy_row("a", {"x": 1}, [[8, 90.0]], search_name=T.LEGACY), toy_row("a", {"x": 2}, [[8, 95.0]]),
            toy_row("a", {"x": 3}, [[1, 80.0]], state=T.PRUNED), toy_row("b", {"x": 1}, [[8, 70.0]], search_name=T.LEGACY),
            toy_row("b", {"x": 1}, [[8, 60.0]], budget=4.0)]
    now = T.current(rows, 8.0)
    assert now == [rows[1], rows[2], rows[3]]
    assert {m: r["settings"] for m, r in T.winners(now).items()} == {"a": '{"x": 2}', "b": '{"x": 1}'}


def test_a_study_or_seed_run_at_a_new_budget_leaves_the_earlier_budgets_rows():
    def trial(number, budget, x=1, seed=0):
        return {**toy_row("a", {"x": x}, [[budget, 90.0 + number]], seed=seed, budget=budget), "trial": number}
    earlier = [trial(0, 8.0), trial(1, 8.0, x=2), {**trial(0, 8.0), "trial": None, "seed": 1}]
    merged = search.merge(earlier, [trial(0, 4.0), {**trial(0, 4.0), "trial": None, "seed": 1}])
    assert merged == earlier + merged[3:] and len(merged) == 5, "same model, settings and seed at another budget"
    again = search.merge(merged, [trial(0, 4.0, x=3)])
    assert [(r["budget_flops"], r["settings"], r["seed"]) for r in again] == [
        (8.0, '{"x": 1}', 0), (8.0, '{"x": 2}', 0), (8.0, '{"x": 1}', 1), (4.0, '{"x": 1}', 1), (4.0, '{"x": 3}', 0)]


def test_a_frontier_point_is_the_best_of_any_point_within_that_compute():
    rows = [toy_row("a", {"x": 1}, [[1, 50.0], [2, 40.0], [4, 35.0], [8, 34.0]]),
            toy_row("a", {"x": 2}, [[1, 60.0], [2, 38.0], [4, 30.0], [8, 20.0]]),
            toy_row("a", {"x": 3}, [[1, 10.0]], seed=1),            # a seed run is not a searched point
            toy_row("b", {"x": 1}, [[2, 36.0], [8, 25.0]]),          # validated first at 2 FLOPs
            toy_row("c", {"x": 1}, [[1, 45.0]])]                     # stopped early (an epoch cap)
    front = T.frontier(rows, [1, 2, 4, 8])
    assert front["a"] == [50.0, 38.0, 30.0, 20.0]
    assert math.isnan(front["b"][0]) and front["b"][1:] == [36.0, 36.0, 25.0]
    assert front["c"] == [45.0] * 4
    assert T.leads(front, [1, 2, 4, 8]) == [(1, "c"), (2, "b"), (4, "a")]


def test_the_summary_names_each_tracks_baseline_and_who_cannot_beat_it():
    rows = [toy_row("bernoulli", {}, [[8, 200.0]]), toy_row("good", {"x": 1}, [[8, 100.0]]),
            toy_row("good", {"x": 1}, [[8, 101.0]], seed=1, state=T.SEED_RUN), toy_row("poor", {"x": 1}, [[8, 250.0]]),
            toy_row("given_digit", {}, [[8, 50.0]]),
            toy_row("categorical_grey", {}, [[8, 900.0]], data="grey", family="categorical")]
    found = T.summarize(rows, 8.0, 2, conditional={"given_digit"})
    assert found.models["bernoulli"].is_baseline and found.models["categorical_grey"].is_baseline
    assert found.models["good"].beats_baseline and not found.models["poor"].beats_baseline
    assert found.models["good"].seed_nlls == [100.0, 101.0] and found.models["good"].seed_sd == pytest.approx(0.7071, 1e-3)
    assert "given_digit" not in found.frontiers["binarized"] and found.leaders["binarized"] == [(8.0, "good")]


def committed_search():
    params = P.load(REPO / "params.yaml")
    rows = T.current(T.read_table(REPO / T.TABLE), search.budget_of(params))
    return params, rows, T.winners(rows)


def test_the_tables_winners_are_params_quick_settings():
    """search/results.csv is read back; each model's best finished seed-0 trial at the quick budget is
    what params.yaml's quick profile trains (`python -m pipeline.search --winners` prints them)."""
    params, rows, best = committed_search()
    assert set(best) == set(P.model_names(params)), "every model was searched at the current budget"
    for model, row in best.items():
        spec = model_spec({**params, "profile": "quick"}, model)
        for key, value in json.loads(row["settings"]).items():
            actual = getattr(spec.train, key.removeprefix("train.")) if key.startswith("train.") else spec.kwargs[key]
            assert (list(actual) if isinstance(actual, tuple) else actual) == value, f"models.{model}: {key}"
        assert len(T.seed_spread(rows, row)) >= 3, f"{model}: its winner with 3 seeds"


SHALLOW = {"bernoulli", "categorical", "fvsbn", "markov", "mixture"}  # no hidden layer: the course's baselines


def test_every_deep_models_winner_lies_inside_its_learning_rate_and_batch_size_ranges():
    _, _, best = committed_search()
    spaces = search.read_space(REPO / search.SPACE)
    for model, row in best.items():
        if row["search"] != T.SEARCH or row["family"] in SHALLOW:
            continue
        edges = [e for e in spaces[model].edges(json.loads(row["settings"])) if e.startswith("train.")]
        assert not edges, f"{model}: {', '.join(edges)}: widen the range and search again"
