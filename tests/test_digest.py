"""The per-family code digests that tell DVC which stages an edit makes stale."""
import models
from pipeline import digest
from pipeline.io import REPO_ROOT


def names(family: str) -> set[str]:
    """The family's code files, relative to models/ (its building blocks are in models/nn/)."""
    return {path.relative_to(REPO_ROOT / "models").as_posix()
            for path in digest.code_files(models.FAMILIES[family].split(":")[0])}


def test_the_registry_is_read_from_the_source_as_python_sees_it():
    assert digest.family_registry() == models.FAMILIES


def test_each_family_uses_its_module_and_the_shared_modules_it_imports():
    assert names("bernoulli") == {"base.py", "progress.py", "bernoulli.py"}
    assert names("made") == {"base.py", "progress.py", "nn/masked_linear.py", "made.py"}
    assert names("maf") == {"base.py", "progress.py", "nn/masked_linear.py", "nn/transforms.py", "nn/dequantized.py",
                            "maf.py"}
    assert names("glow") == {"base.py", "progress.py", "nn/transforms.py", "nn/dequantized.py", "glow.py"}
    assert names("pixelcnn") == {"base.py", "progress.py", "nn/conv_autoregressive.py", "nn/conv_steps.py",
                                 "nn/masked_conv.py", "nn/sampling.py", "pixelcnn.py"}
    assert names("rnn") == {"base.py", "progress.py", "nn/causal_embedding.py", "nn/sampling.py", "rnn.py"}


def test_no_family_imports_another_familys_module():
    shared = {"base.py", "progress.py", *(f"nn/{path.name}" for path in (REPO_ROOT / "models" / "nn").glob("*.py"))}
    for family, entry in models.FAMILIES.items():
        own = entry.split(":")[0].split(".")[-1] + ".py"
        assert names(family) - shared == {own}, family


def test_the_digest_changes_with_the_code_and_the_registry_entry():
    registry = dict(models.FAMILIES)
    before = digest.family_digest("made", registry)
    assert "models/nn/masked_linear.py" in before and "models/flows" not in before
    registry["made"] = "models.made:Other"
    assert digest.family_digest("made", registry) != before

