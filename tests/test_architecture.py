"""The model interface as declared in models/base.py, and the docs that describe it."""
import re
import subprocess
import sys

import pytest
import torch

from models import FAMILIES, build_model
from models.base import (
    ESTIMATORS,
    CanComplete,
    GenerativeModel,
    HasLatentCode,
    HasNegativeELBO,
    HasSampleMeans,
    HasValidationNLL,
)
from pipeline import digest
from pipeline.io import REPO_ROOT
from pipeline.report import ESTIMATORS as REPORT_LEGEND
from tests.toys import AUTOREGRESSIVE, DEQUANTIZED, LATENT

SHAPE = (1, 4, 4)


def test_capabilities_are_found_by_their_declarations():
    for make in AUTOREGRESSIVE.values():
        model = make(SHAPE)
        assert isinstance(model, CanComplete) and not isinstance(model, HasLatentCode)
    for make in LATENT.values():
        model = make(SHAPE)
        assert all(isinstance(model, c) for c in (HasSampleMeans, HasLatentCode, HasValidationNLL, HasNegativeELBO))
        assert not isinstance(model, CanComplete)
    for make in DEQUANTIZED.values():
        model = make(SHAPE)
        assert isinstance(model, HasLatentCode) and not isinstance(model, (CanComplete, HasSampleMeans))


def test_every_family_names_an_estimator_from_the_closed_set_and_the_report_explains_it():
    assert set(REPORT_LEGEND) == set(ESTIMATORS)
    for family in FAMILIES:
        assert build_model(family, (1, 8, 8), **small_kwargs(family)).estimator in ESTIMATORS


def test_an_estimator_outside_the_set_is_refused_when_the_class_is_defined():
    with pytest.raises(TypeError, match="estimator"):
        type("Bound", (GenerativeModel,), {"estimator": "elbo"})


def test_a_samplers_draw_keeps_observed_pixels_and_draws_the_others():
    observed = torch.tensor([True, True, False, False])
    value = torch.tensor([1.0, 0.0, 1.0, 1.0])
    logits = torch.tensor([-30.0, 30.0, 0.0, 0.0])[:, None]  # p(x = 1): about 0, about 1, 1/2, 1/2
    drawn = build_model("fvsbn", SHAPE).draw(logits, observed, value, torch.tensor([0.5, 0.5, 0.2, 0.7]))
    assert drawn.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_every_file_the_code_and_docs_point_to_exists():
    pattern = re.compile(r"\b(?:models|pipeline|tests|bench|docs)/[A-Za-z_/]+\.(?:py|md|yaml)\b")
    sources = [*REPO_ROOT.glob("models/**/*.py"), *REPO_ROOT.glob("pipeline/**/*.py"), *REPO_ROOT.glob("bench/*.py"),
               *REPO_ROOT.glob("docs/*.md"), REPO_ROOT / "README.md", REPO_ROOT / "dvc.yaml", REPO_ROOT / "params.yaml"]
    missing = {(source.name, ref) for source in sources for ref in pattern.findall(source.read_text())
               if not (REPO_ROOT / ref).exists()}
    assert not missing


def modules_loaded_by(imports: list[str]) -> set[str]:
    """The top-level packages in sys.modules of a fresh interpreter after importing `imports`."""
    code = (f"import importlib, sys\nfor name in {imports!r}: importlib.import_module(name)\n"
            "print(' '.join(sorted({name.split('.')[0] for name in sys.modules})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_the_models_package_and_each_of_its_modules_import_nothing_from_the_pipeline():
    modules = sorted(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for path in (REPO_ROOT / "models").rglob("*.py"))
    assert "models" in modules and "models.nn.masked_linear" in modules
    assert not modules_loaded_by(modules) & {"pipeline", "dvc", "mlflow"}
    for path in (REPO_ROOT / "models").rglob("*.py"):  # torch loads tqdm itself: the models must not use it
        assert "tqdm" not in path.read_text(), path


def stage_modules() -> set[str]:
    """The modules of pipeline/ run as `python -m pipeline.<name>`: the DVC stages, and the commands
    run by hand or by the Makefile (search, check, score, dvcfile; `python -m pipeline.tracking` runs
    the package's __main__.py)."""
    return {".".join(path.relative_to(REPO_ROOT).with_suffix("").parts) for path in (REPO_ROOT / "pipeline").rglob("*.py")
            if 'if __name__ == "__main__":' in path.read_text()}


def test_no_module_of_the_pipeline_imports_a_stage_module():
    """What two stages share is a library module: a stage that imported another would re-run with
    every edit to the other's code (pipeline/digest.py reads these imports)."""
    stages = stage_modules()
    commands = (REPO_ROOT / "dvc.yaml").read_text() + (REPO_ROOT / "Makefile").read_text()
    assert set(re.findall(r"python -m (pipeline\.\w+)", commands)) | {f"pipeline.{s}" for s in digest.STAGES} <= stages
    imports = {path.relative_to(REPO_ROOT).as_posix(): digest.imported_modules(path) & stages
               for path in (REPO_ROOT / "pipeline").rglob("*.py")}
    assert {path: found for path, found in imports.items() if found} == {}


def test_loading_trained_models_needs_neither_dvc_nor_mlflow():
    assert not modules_loaded_by(["pipeline.trained"]) & {"dvc", "mlflow"}


def small_kwargs(family: str) -> dict:
    return {"made": {"hidden_sizes": [8]}, "nade": {"hidden": 4},
            "vae": {"hidden_sizes": [8], "latent_dim": 2, "eval_samples": 2, "val_samples": 1},
            "realnvp": {"hidden_channels": 4, "num_blocks": 0, "scales": 1, "couplings": 1},
            "glow": {"hidden_channels": 4, "num_blocks": 0, "steps": 1, "levels": 1},
            "maf": {"num_layers": 1, "hidden_sizes": [8]},
            "pixelcnn": {"channels": 4, "residual_blocks": 1, "first_kernel": 3, "head_channels": 4},
            "gated_pixelcnn": {"channels": 4, "layers": 1, "first_kernel": 3, "head_channels": 4},
            "rnn": {"hidden": 4, "layers": 1, "embedding": 4},
            "transformer": {"dim": 4, "layers": 1, "heads": 1}}.get(family, {})
