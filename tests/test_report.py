"""The report's comparisons: which published number matches a run, and paired differences."""
import math

import numpy as np
import pandas as pd
import pytest

from models.base import bits_per_dim
from pipeline import references
from pipeline import search_table as search
from pipeline.io import PipelineError
from pipeline.references import Setup, compare
from pipeline.report import (
    ESTIMATORS,
    add_paired_differences,
    leaderboards,
    markdown,
    paired_difference,
    search_cell,
    seed_spread,
)


def setup(family, binarization="fixed", train_images=50_000, **settings):
    return Setup.of(family, settings, binarization, train_images)


@pytest.mark.parametrize("settings, expected", [
    ({"hidden_sizes": [500]}, 94.5),
    ({"hidden_sizes": [8000]}, 88.40),
    ({"hidden_sizes": [8000], "num_masks": 32, "eval_masks": 32, "order_agnostic": True}, 86.64),
    ({"hidden_sizes": [8000, 8000], "num_masks": 32, "eval_masks": 32, "order_agnostic": True}, 86.41),
])
def test_made_is_compared_with_the_row_of_its_own_size_and_masks(settings, expected):
    assert compare(setup("made", direct_connections=True, **settings)).matched.nll == expected


def test_a_mask_ensemble_evaluated_with_one_mask_has_no_match():
    result = compare(setup("made", hidden_sizes=[8000], num_masks=32, eval_masks=1, direct_connections=True))
    assert result.matched is None and result.nearest is not None
    assert any("masks" in d for d in result.differences)


def test_a_made_without_direct_connections_is_only_near_the_papers():
    result = compare(setup("made", hidden_sizes=[500]))
    assert result.matched is None and result.nearest.nll == 94.5
    assert result.differences == ["direct_connections True (this run: False)"]


BURDA = {"architecture": "mlp", "hidden_sizes": [200, 200], "latent_dim": 50, "activation": "tanh"}


@pytest.mark.parametrize("objective, k, binarization, train_images, expected", [
    ("elbo", 1, "fixed", 50_000, 88.71),        # Appendix D: the fixed binarization, 50,000 images
    ("iwae", 50, "fixed", 50_000, 87.10),
    ("elbo", 1, "resampled", 60_000, 86.76),    # Table 1: resampled, 60,000 images
    ("iwae", 5, "resampled", 60_000, 85.54),
])
def test_burda_numbers_follow_objective_k_and_data_regime(objective, k, binarization, train_images, expected):
    run = setup("vae", binarization, train_images, objective=objective, train_samples=k, **BURDA)
    assert compare(run).matched.nll == expected


def test_resampled_training_on_fifty_thousand_images_is_only_near_burdas_table_one():
    result = compare(setup("vae", "resampled", 50_000, **BURDA))
    assert result.matched is None
    assert result.nearest.nll == 86.76 and result.differences == ["60,000 training images (this run: 50,000)"]


def test_other_architectures_and_training_subsets_are_not_matched():
    assert compare(setup("vae", hidden_sizes=[1024, 1024], activation="relu")).matched is None
    assert compare(setup("fvsbn", train_images=20_000)).matched is None
    assert compare(setup("fvsbn")).matched.nll == 97.45
    assert compare(setup("rnn")).matched is None          # a 1-D LSTM is not the Diagonal BiLSTM
    assert compare(setup("transformer")) == references.Comparison(None)


def test_paired_standard_error_on_synthetic_per_image_values():
    rng = np.random.default_rng(0)
    shared = rng.normal(100, 20, size=10_000)     # image difficulty, common to both models
    a = shared + rng.normal(0, 1, size=10_000)
    b = shared + 0.5 + rng.normal(0, 1, size=10_000)
    diff, se = paired_difference(b, a)
    assert abs(diff - 0.5) < 4 * se
    assert se == pytest.approx(math.sqrt(2) / 100, rel=0.05)   # sd of the difference is sqrt(2)
    unpaired = math.sqrt(a.var() / len(a) + b.var() / len(b))
    assert se < unpaired / 10                                     # pairing removes the shared spread
    with pytest.raises(PipelineError, match="same test images"):
        paired_difference(a[:10], b)


def toy_table(rows=None, data="binarized"):
    common = {"data": data, "test_bpd": 0.2, "test_images": 3, "parameters": 10, "train_minutes": 1.0, "epochs_run": 3,
              "best_epoch": 2, "binarization": "fixed", "train_images": 50_000, "device": "cpu",
              "profile": "smoke", "published_nll": None, "published_source": None, "nearest_nll": None,
              "nearest_source": None, "nearest_differs": None, "inception_score": 5.0, "frechet_distance": 80.0,
              "test_conditional_nll": None, "test_conditional_nll_stderr": None, "generative_accuracy": None,
              "test_label_nll": None, "train_flops": 3.0e11, "flops_per_image": 6_000_000}
    rows = rows or [("nade", "exact", 90.0, None, None), ("vae", "importance_sampled", 89.0, 93.0, 5000),
                    ("made", "exact", 95.0, None, None)]
    return pd.DataFrame([{"model": m, "family": m, "estimator": e, "test_nll": nll, "test_nll_stderr": 0.5,
                          "test_neg_elbo": elbo, "test_neg_elbo_stderr": 0.5 if elbo else None, "k": k, **common}
                         for m, e, nll, elbo, k in rows])


def test_report_groups_by_estimator_and_differences_are_to_the_best_exact_model():
    per_image = {"nade": np.array([80.0, 90, 100]), "made": np.array([86.0, 95, 104]),
                 "vae": np.array([79.0, 89, 99])}
    table = add_paired_differences(toy_table(), per_image)
    assert table.set_index("model").vs_best_exact.to_dict() == pytest.approx({"nade": 0, "made": 5, "vae": -1})
    text = markdown(table, "smoke")
    exact, rest = text.split("## Binarized MNIST, exact")[1].split("## Binarized MNIST, importance_sampled")
    sampled, rest = rest.split("## Training")
    training, elbo = rest.split("## Latent-variable models")
    assert "nade" in exact and "made" in exact and "vae" not in exact
    assert "vae" in sampled and "89.00 ± 0.50" in sampled and "3.00e+11" in sampled
    assert "93.00 ± 0.50" in elbo and "| 5000 " in elbo and "nade" not in elbo  # the ELBO only where a model has one
    assert "50,000, fixed draw" in training and "2 of 3" in training and "6e+06" in training
    assert "Class-conditional" not in text and "Nearest published" not in text
    assert set(ESTIMATORS) >= set(table.estimator)


def test_each_track_has_its_own_tables_and_its_own_best_exact_model():
    grey = toy_table([("pixelcnn_grey", "exact", 700.0, None, None), ("realnvp_grey", "dequantized", 650.0, None, 1),
                      ("categorical_grey", "exact", 1600.0, None, None)], data="grey")
    table = pd.concat([toy_table(), grey], ignore_index=True)
    per_image = {"nade": np.array([80.0, 90, 100]), "made": np.array([86.0, 95, 104]), "vae": np.array([79.0, 89, 99]),
                 "pixelcnn_grey": np.array([600.0, 700, 800]), "realnvp_grey": np.array([550.0, 650, 750]),
                 "categorical_grey": np.array([1500.0, 1600, 1700])}
    table = add_paired_differences(table, per_image)
    assert table.set_index("model").vs_best_exact.to_dict() == pytest.approx(
        {"nade": 0, "made": 5, "vae": -1, "pixelcnn_grey": 0, "realnvp_grey": -50, "categorical_grey": 900})
    boards = leaderboards(table)
    assert list(boards) == [heading for heading in boards if "Binarized" in heading] + [
        heading for heading in boards if "Grey-level" in heading]
    grey_exact = boards["Grey-level MNIST (256 levels), exact: exact log-likelihood"]
    assert list(grey_exact.model) == ["pixelcnn_grey", "categorical_grey"]
    assert list(grey_exact.columns[:3]) == ["model", "bits/dim", "test NLL (nats)"]  # the field's unit first
    assert "`nade` and `pixelcnn_grey`" in markdown(table, "smoke")


def test_every_markdown_table_has_at_most_eight_columns():
    table = add_paired_differences(toy_table(), {m: np.array([1.0, 2, 3]) for m in ("nade", "made", "vae")})
    headers = [line for line in markdown(table, "smoke").splitlines() if line.startswith("| model")]
    assert len(headers) == 4 and all(line.count("|") - 1 <= 8 for line in headers)


def test_a_grey_level_run_is_compared_only_with_grey_level_numbers():
    maf5 = {"num_layers": 5, "hidden_sizes": [1024, 1024], "logit_alpha": 1e-6, "dequantization": "uniform",
            "pixel_levels": 256}
    grey = references.compare(references.Setup.of("maf", maf5, "none", 50_000, "grey"))
    assert grey.matched is not None and "MAF (5): 1.89 bits/dim" in grey.matched.source
    assert bits_per_dim(grey.matched.nll, references.PIXELS) == pytest.approx(1.89)
    variational = references.compare(references.Setup.of("maf", {**maf5, "dequantization": "variational"}, "none",
                                                         50_000, "grey"))
    assert variational.matched is None and variational.differences == ["dequantization uniform (this run: variational)"]
    binarized = references.compare(references.Setup.of("maf", {k: v for k, v in maf5.items() if k != "pixel_levels"},
                                                       "fixed", 50_000, "binarized"))
    assert binarized.matched is None and binarized.nearest is None


def test_the_search_cell_states_the_test_nll_spread_over_seeds_only_where_it_was_measured():
    found = search.ModelSearch(points=12, best_val_nll=90.0, seed_nlls=[90.0, 90.5, 91.0], beats_baseline=True)
    assert search_cell(found, 0.45, 3) == "best of 12; 3 seeds ± 0.45"
    assert search_cell(found, math.nan, 0) == "best of 12"     # not the validation spread of the search
    assert search_cell(None, 0.45, 3) == "not searched"
    assert seed_spread({"seed_test_nlls": [100.0, 101.0, 102.0]}) == {"test_nll_seed_sd": 1.0, "seeds": 3}
    assert math.isnan(seed_spread(None)["test_nll_seed_sd"])


def test_a_budget_no_search_has_tried_gets_a_report_without_a_search_section(monkeypatch):
    """`dvc exp run -S train.quick.budget_flops=...` (the README's example) at a budget with no rows in
    search/results.csv: no frontier, rather than a figure of no panels."""
    from pipeline import params as P
    from pipeline.report import search_summary
    from tests.drills.workspace import REPO
    monkeypatch.chdir(REPO)
    params = P.load(REPO / "params.yaml")
    assert search_summary(params, "quick").frontiers
    params["train"]["quick"]["budget_flops"] = 1.234e13
    assert search_summary(params, "quick") is None
