"""The generated code digests that tell DVC which stages an edit makes stale."""
import shutil
import subprocess
import sys

import pytest

import models
from pipeline import digest
from pipeline.io import REPO_ROOT


def names(family: str) -> set[str]:
    """The family's code files, relative to models/ (its building blocks are in models/nn/)."""
    return {path.relative_to(REPO_ROOT / "models").as_posix()
            for path in digest.code_files(models.FAMILIES[family].split(":")[0])}


def stage_files(stage: str) -> set[str]:
    return {path.relative_to(digest.REPO_ROOT).as_posix() for path in digest.code_files(f"pipeline.{stage}")}


# What every family runs: the package's __init__.py (which imports nothing of the package) and the
# interface it implements (models/base.py and the settings checks it takes from models/settings.py).
PACKAGE = {"__init__.py", "base.py", "settings.py"}
DATA_STAGES = ("prepare", "binarize", "grey")


def copy_of_the_code(tmp_path, monkeypatch):
    """pipeline/ and models/ copied to `tmp_path`, which the digest reads from then on."""
    for package in ("pipeline", "models"):
        shutil.copytree(digest.REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(digest, "REPO_ROOT", tmp_path)
    return tmp_path


def test_each_family_uses_its_module_and_the_shared_modules_it_imports():
    assert names("bernoulli") == PACKAGE | {"bernoulli.py"}
    assert names("made") == PACKAGE | {"nn/__init__.py", "nn/masked_linear.py", "fast/__init__.py",
                                       "fast/blocked_masked_linear.py", "nn/pixel_distributions.py", "made.py"}
    assert names("maf") == PACKAGE | {"nn/__init__.py", "nn/masked_linear.py", "nn/transforms.py", "nn/dequantized.py",
                                      "maf.py"}
    assert names("glow") == PACKAGE | {"nn/__init__.py", "nn/transforms.py", "nn/dequantized.py", "glow.py"}
    assert names("pixelcnn") == PACKAGE | {"nn/__init__.py", "nn/conv_autoregressive.py", "nn/conv_steps.py",
                                           "nn/masked_conv.py", "nn/pixel_distributions.py", "nn/sampling.py",
                                           "fast/__init__.py", "fast/onednn_layout.py", "pixelcnn.py"}
    assert names("rnn") == PACKAGE | {"nn/__init__.py", "nn/causal_embedding.py", "nn/pixel_distributions.py",
                                      "nn/sampling.py", "rnn.py"}


def test_code_in_a_packages_init_counts_for_the_modules_under_it(tmp_path, monkeypatch):
    root = copy_of_the_code(tmp_path, monkeypatch)
    before = {family: digest.family_digest(family) for family in ("made", "glow", "bernoulli")}
    blocks = root / "models" / "fast" / "__init__.py"
    blocks.write_text(blocks.read_text() + "THRESHOLD = 1 << 17\n")
    after = {family: digest.family_digest(family) for family in before}
    assert after["made"] != before["made"]  # its fast path is in models/fast/
    assert after["glow"] == before["glow"] and after["bernoulli"] == before["bernoulli"]


@pytest.mark.parametrize("registry", [
    'FAMILIES = {\n    "a": "models.a:A",\n}\n',
    'FAMILIES: dict[str, str] = dict(a="models.a:A")\n',
    'FAMILIES = {name: f"models.{name}:{name.title()}" for name in ("a",)}\nFAMILIES["b"] = "models.b:B"\n',
])
def test_the_registry_may_be_written_any_way_and_is_left_out_of_the_packages_line(registry):
    assert digest.without_registry(f"import x\n\n{registry}\n\ndef f():\n    pass\n") == "import x\n\n\n\ndef f():\n    pass\n"
    assert digest.without_registry("import x\n") is None  # no registry: the file as it is


def test_no_family_imports_another_familys_module():
    own = {entry.split(":")[0].split(".")[-1] + ".py" for entry in models.FAMILIES.values()}
    for family, entry in models.FAMILIES.items():
        assert names(family) & own == {entry.split(":")[0].split(".")[-1] + ".py"}, family


def test_each_stage_covers_its_module_and_what_it_imports_directly_or_not():
    for stage in digest.STAGES:
        assert {f"pipeline/{stage}.py", "pipeline/io.py"} <= stage_files(stage)
    for stage in ("train", "evaluate", "report"):
        assert {"pipeline/layout.py", "pipeline/params.py", "models/__init__.py"} <= stage_files(stage), stage
    assert [stage for stage in ("train", "evaluate", "report") if "pipeline/data.py" in stage_files(stage)] == \
        ["train", "evaluate"]  # the report names the datasets but reads no images
    assert "pipeline/parallel.py" in stage_files("train")
    assert [stage for stage in digest.STAGES if "pipeline/references.py" in stage_files(stage)] == ["report"]
    assert not [stage for stage in digest.STAGES if "pipeline/digest.py" in stage_files(stage)]  # the tool is no stage's code
    family_modules = {entry.split(":")[0].replace(".", "/") + ".py" for entry in models.FAMILIES.values()}
    assert not any(stage_files(stage) & family_modules for stage in digest.STAGES)  # those are in family files


def test_a_stage_digest_changes_with_its_code_but_not_with_the_registry(tmp_path, monkeypatch):
    copy_of_the_code(tmp_path, monkeypatch)
    before = digest.stage_digest("train"), digest.family_digest("made")
    registry = tmp_path / "models" / "__init__.py"
    registry.write_text(registry.read_text().replace('FAMILIES = {', 'FAMILIES = {\n    "new": "models.new:New",'))
    assert (digest.stage_digest("train"), digest.family_digest("made")) == before
    assert "models/__init__.py (less FAMILIES" in before[0]
    data = tmp_path / "pipeline" / "data.py"
    data.write_text(data.read_text() + "# an edit\n")
    assert digest.stage_digest("train") != before[0]


def test_the_family_digest_changes_with_the_code_and_the_registry_entry():
    registry = dict(models.FAMILIES)
    before = digest.family_digest("made", registry)
    assert "models/nn/masked_linear.py" in before and "models/flows" not in before
    registry["made"] = "models.made:Other"
    assert digest.family_digest("made", registry) != before


def digests_after(edit: str, stages, tmp_path, monkeypatch) -> tuple[dict, dict]:
    """Each stage's digest before and after appending a comment to the file `edit` of a copy of the code."""
    root = copy_of_the_code(tmp_path, monkeypatch)
    before = {stage: digest.stage_digest(stage) for stage in stages}
    path = root / edit
    path.write_text(path.read_text() + "# an edit\n")
    return before, {stage: digest.stage_digest(stage) for stage in stages}


def test_an_edit_to_the_model_interface_leaves_the_data_stages_and_the_classifier_as_they_are(tmp_path, monkeypatch):
    before, after = digests_after("models/base.py", (*DATA_STAGES, "classifier", "train", "evaluate"),
                                  tmp_path, monkeypatch)
    assert [stage for stage in before if after[stage] != before[stage]] == ["train", "evaluate"]


def test_the_data_stages_run_no_model_code_but_the_atomic_writer_and_the_settings_checks():
    for stage in (*DATA_STAGES, "classifier"):
        assert {f for f in stage_files(stage) if f.startswith("models/")} <= \
            {"models/__init__.py", "models/files.py", "models/settings.py"}, stage


def test_an_edit_to_the_optimizer_leaves_the_report_as_it_is(tmp_path, monkeypatch):
    before, after = digests_after("pipeline/optimizer.py", ("report", "evaluate", "train"), tmp_path, monkeypatch)
    assert [stage for stage in before if after[stage] != before[stage]] == ["train"]


def test_an_edit_to_the_data_parallel_code_leaves_the_data_and_the_classifier_as_they_are(tmp_path, monkeypatch):
    before, after = digests_after("pipeline/parallel.py", ("binarize", "classifier", "report", "train"),
                                  tmp_path, monkeypatch)
    assert [stage for stage in before if after[stage] != before[stage]] == ["train"]


def test_the_download_stage_loads_no_torch():
    """prepare only names its folder: it starts without paying torch's import, and an edit to how the data
    is read back (pipeline/data.py) leaves it fresh."""
    assert "pipeline/data.py" not in stage_files("prepare")
    loaded = subprocess.run([sys.executable, "-c", "import sys, pipeline.prepare; print('torch' in sys.modules)"],
                            cwd=digest.REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"
