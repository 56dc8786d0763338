"""The generated code digests that tell DVC which stages an edit makes stale."""
import shutil

import models
from pipeline import digest
from pipeline.io import REPO_ROOT


def names(family: str) -> set[str]:
    """The family's code files, relative to models/ (its building blocks are in models/nn/)."""
    return {path.relative_to(REPO_ROOT / "models").as_posix()
            for path in digest.code_files(models.FAMILIES[family].split(":")[0])}


def stage_files(stage: str) -> set[str]:
    return {path.relative_to(digest.REPO_ROOT).as_posix() for path in digest.code_files(f"pipeline.{stage}")}


def test_the_registry_is_read_from_the_source_as_python_sees_it():
    assert digest.family_registry() == models.FAMILIES


def test_each_family_uses_its_module_and_the_shared_modules_it_imports():
    assert names("bernoulli") == {"base.py", "progress.py", "bernoulli.py"}
    assert names("made") == {"base.py", "progress.py", "nn/masked_linear.py", "fast/blocked_masked_linear.py",
                             "nn/pixel_distributions.py", "made.py"}
    assert names("maf") == {"base.py", "progress.py", "nn/masked_linear.py", "nn/transforms.py", "nn/dequantized.py",
                            "maf.py"}
    assert names("glow") == {"base.py", "progress.py", "nn/transforms.py", "nn/dequantized.py", "glow.py"}
    assert names("pixelcnn") == {"base.py", "progress.py", "nn/conv_autoregressive.py", "nn/conv_steps.py",
                                 "nn/masked_conv.py", "nn/pixel_distributions.py", "nn/sampling.py", "pixelcnn.py"}
    assert names("rnn") == {"base.py", "progress.py", "nn/causal_embedding.py", "nn/pixel_distributions.py",
                            "nn/sampling.py", "rnn.py"}


def test_no_family_imports_another_familys_module():
    own = {entry.split(":")[0].split(".")[-1] + ".py" for entry in models.FAMILIES.values()}
    for family, entry in models.FAMILIES.items():
        assert names(family) & own == {entry.split(":")[0].split(".")[-1] + ".py"}, family


def test_each_stage_covers_its_module_and_what_it_imports_directly_or_not():
    for stage in digest.STAGES:
        assert {f"pipeline/{stage}.py", "pipeline/io.py"} <= stage_files(stage)
    for stage in ("train", "evaluate", "report"):
        assert {"pipeline/data.py", "pipeline/params.py", "models/__init__.py"} <= stage_files(stage), stage
    assert "pipeline/parallel.py" in stage_files("train")
    assert [stage for stage in digest.STAGES if "pipeline/references.py" in stage_files(stage)] == ["report"]
    family_modules = {entry.split(":")[0].replace(".", "/") + ".py" for entry in models.FAMILIES.values()}
    assert not any(stage_files(stage) & family_modules for stage in digest.STAGES)  # those are in family files


def test_a_stage_digest_changes_with_its_code_but_not_with_the_registry(tmp_path, monkeypatch):
    for package in ("pipeline", "models"):
        shutil.copytree(digest.REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(digest, "REPO_ROOT", tmp_path)
    before = digest.stage_digest("train")
    registry = tmp_path / "models" / "__init__.py"
    registry.write_text(registry.read_text().replace('FAMILIES = {', 'FAMILIES = {\n    "new": "models.new:New",'))
    assert digest.stage_digest("train") == before
    assert "models/__init__.py (less FAMILIES" in before
    data = tmp_path / "pipeline" / "data.py"
    data.write_text(data.read_text() + "# an edit\n")
    assert digest.stage_digest("train") != before


def test_the_family_digest_changes_with_the_code_and_the_registry_entry():
    registry = dict(models.FAMILIES)
    before = digest.family_digest("made", registry)
    assert "models/nn/masked_linear.py" in before and "models/flows" not in before
    registry["made"] = "models.made:Other"
    assert digest.family_digest("made", registry) != before
