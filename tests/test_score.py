"""Bringing a user's image to what the models were trained on (pipeline/score.py)."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.params import DataConfig
from pipeline.score import UnreadableImage, beyond_the_test_set, model_input, percentile, print_table, read_images


def a_stroke(size: int = 28) -> np.ndarray:
    """A vertical bar of ink, light on dark, left of the centre."""
    grey = np.zeros((size, size))
    grey[size // 4:3 * size // 4, size // 8:size // 4] = 1.0
    return grey


def test_a_large_colour_photo_of_dark_ink_on_paper_becomes_a_centred_light_on_dark_digit(tmp_path):
    paper = ((1 - a_stroke(280)) * 255).astype(np.uint8)
    rgb = np.stack([paper, paper, np.full_like(paper, 200)], axis=-1)  # a bluish tint: colour, not grey
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    grey = read_images(tmp_path / "photo.jpg")
    assert grey.shape == (1, 28, 28) and grey.min() >= 0 and grey.max() <= 1
    assert grey[0, 0, 0] < 0.1 and grey.max() > 0.9  # inverted: the background is dark
    rows, _ = np.nonzero(grey[0] > 0.5)
    assert rows.max() - rows.min() + 1 in (19, 20, 21)  # scaled to MNIST's 20-pixel box
    assert abs((grey[0].sum(0) * np.arange(28)).sum() / grey[0].sum() - 14) < 1.5  # centred by mass


def test_npy_batches_in_either_range_give_the_same_grey_levels(tmp_path):
    np.save(tmp_path / "bytes.npy", (np.stack([a_stroke(), a_stroke()]) * 255).astype(np.uint8))
    np.save(tmp_path / "unit.npy", np.stack([a_stroke(), a_stroke()])[:, None])
    np.testing.assert_allclose(read_images(tmp_path / "bytes.npy"), read_images(tmp_path / "unit.npy"))


@pytest.mark.parametrize("name, content, problem", [
    ("missing.png", None, "no such file"),
    ("text.png", b"hello", "not a readable PNG or JPEG"),
    ("table.csv", b"1,2", "expected a .png"),
    ("scalar.npy", np.float64(3), "expected numbers of shape"),
    ("negative.npy", -np.ones((28, 28)), "grey levels"),
])
def test_unreadable_inputs_say_what_is_wrong(tmp_path, name, content, problem):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(UnreadableImage, match=problem):
        read_images(path)


def test_binarization_follows_the_pipelines_rule():
    grey = np.full((1, 28, 28), 0.6)
    assert model_input(grey, 2, DataConfig(binarization="threshold", seed=0)).eq(1).all()
    stochastic = DataConfig(binarization="stochastic", seed=0)
    first, again = model_input(grey, 2, stochastic), model_input(grey, 2, stochastic)
    assert torch.equal(first, again) and 0.5 < first.mean() < 0.7


def test_a_grey_model_scores_the_grey_levels_themselves():
    grey = np.linspace(0, 1, 28 * 28).reshape(1, 28, 28)
    levels = model_input(grey, 256, DataConfig(binarization="threshold", seed=0))
    assert levels.shape == (1, 1, 28, 28)
    assert torch.equal(levels.flatten(), torch.from_numpy(np.round(grey.flatten() * 255)).float())
    assert torch.equal(model_input(grey, 4, DataConfig()).unique(), torch.tensor([0.0, 1.0, 2.0, 3.0]))


def test_percentile_is_the_share_of_test_images_with_a_lower_nll():
    assert percentile(2.5, np.array([1.0, 2.0, 3.0, 4.0])) == 50.0


def test_a_score_beyond_every_test_image_is_flagged_with_its_ratio_to_the_worst():
    test_nll = np.array([90.0, 120.0, 150.0])
    assert beyond_the_test_set(150.0, test_nll) == ""
    just_beyond = beyond_the_test_set(180.0, test_nll)
    assert just_beyond.startswith("beyond every test image") and f"{180 / 150:.2f}x" in just_beyond
    far = beyond_the_test_set(1.26e8, test_nll)
    assert far.startswith("far beyond every test image") and f"{1.26e8 / 150:,.0f}x the worst" in far


def test_the_table_shows_the_note_beside_the_score(capsys):
    rows = [{"image": "noise.npy", "model": name, "nll": nll, "bpd": nll / (784 * math.log(2)), "percentile": 100.0,
             "estimator": "exact", "note": beyond_the_test_set(nll, np.array([100.0, 200.0]))}
            for name, nll in (("made", 150.0), ("maf", 1.26e8))]
    print_table(rows)
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert lines["maf"].rstrip().endswith(rows[1]["note"]) and "beyond" not in lines["made"]
