"""The per-family code digests that tell DVC which stages an edit makes stale."""
import models
from pipeline import digest


def names(family: str) -> set[str]:
    return {path.name for path in digest.code_files(models.FAMILIES[family].split(":")[0])}


def test_the_registry_is_read_from_the_source_as_python_sees_it():
    assert digest.family_registry() == models.FAMILIES


def test_each_family_uses_its_module_and_the_shared_modules_it_imports():
    assert names("bernoulli") == {"base.py", "progress.py", "bernoulli.py"}
    assert names("made") == {"base.py", "progress.py", "masked.py", "made.py"}
    assert names("maf") == {"base.py", "progress.py", "masked.py", "transforms.py", "dequantized.py", "maf.py"}
    assert names("glow") == {"base.py", "progress.py", "transforms.py", "dequantized.py", "glow.py"}
    assert names("pixelcnn") == {"base.py", "progress.py", "causal.py", "layers.py", "pixelcnn.py"}


def test_no_family_imports_another_familys_module():
    shared = {"base.py", "progress.py", "masked.py", "transforms.py", "dequantized.py", "causal.py", "layers.py"}
    for family, entry in models.FAMILIES.items():
        own = entry.split(":")[0].split(".")[-1] + ".py"
        assert names(family) - shared == {own}, family


def test_the_digest_changes_with_the_code_and_the_registry_entry():
    registry = dict(models.FAMILIES)
    before = digest.family_digest("made", registry)
    assert "models/masked.py" in before and "models/flows" not in before
    registry["made"] = "models.made:Other"
    assert digest.family_digest("made", registry) != before

