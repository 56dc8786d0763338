"""docs/adding-a-model.md followed on its toy family in a temporary copy of the repository: the family
file and the registry line from the guide, the params section from the guide, the guide's commands, then
`dvc repro` of the toy's stages on the smoke profile, and the report."""
import json
import os
import re

import pytest
import yaml

from tests.conftest import GIT_IDENTITY, dvc
from tests.drills.workspace import BIN, REPO, copy_repo, edit_params, git_repo, run

pytestmark = pytest.mark.e2e
GUIDE = (REPO / "docs" / "adding-a-model.md").read_text()


def block(language: str, first_line: str) -> str:
    """The guide's code block of `language` whose first line starts with `first_line`."""
    bodies = re.findall(rf"^```{language}\n(.*?)^```", GUIDE, re.S | re.M)
    return next(body for body in bodies if body.startswith(first_line))


def test_the_guide_followed_on_a_toy_family_gives_a_green_repro_of_its_stages(tmp_path, mnist_mirror):
    repo = copy_repo(tmp_path / "repo")
    # 1. the family file
    (repo / "models" / "toy.py").write_text(block("python", '"""Toy'))
    # 2. the registry line
    line = re.search(r'`("toy": "models\.toy:\w+",)`', GUIDE).group(1)
    init = repo / "models" / "__init__.py"
    init.write_text(init.read_text().replace("FAMILIES = {\n", f"FAMILIES = {{\n    {line}\n", 1))
    # 5. the section under models:, on the smoke profile
    section = yaml.safe_load(block("yaml", "  toy:"))
    edit_params(repo, lambda p: (p.update(profile="smoke"), p["models"].update(section)))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(MNIST_MIRROR=str(mnist_mirror), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", CI="true",
               OMP_NUM_THREADS="1", **GIT_IDENTITY)
    git_repo(repo, env)
    # 6 and 7: the guide's commands, up to the toy's own stages (the whole `dvc repro` would train every model)
    bash = re.findall(r"^```bash\n(.*?)^```", GUIDE, re.S | re.M)
    commands = [text.split("#")[0].split() for body in bash[:2] for text in body.splitlines()]
    assert commands[:3] == [["python", "-m", "pipeline.dvcfile"], ["python", "-m", "pipeline.dvcfile", "--check"],
                            ["dvc", "repro", "train@toy", "evaluate@toy"]]
    stale = run([str(BIN / "python"), *commands[1][1:]], repo, env, check=False)
    assert stale.returncode == 1 and "python -m pipeline.dvcfile" in stale.stderr, "the check names the fix"
    run([str(BIN / "python"), *commands[0][1:]], repo, env)
    run([str(BIN / "python"), *commands[1][1:]], repo, env)
    dvc(commands[2][1:], repo, env)

    metrics = json.loads((repo / "results" / "toy" / "metrics.json").read_text())
    assert metrics["estimator"] == "exact" and 0 < metrics["test_nll"] < 784
    assert "artifacts" in (dvc_yaml := yaml.safe_load((repo / "dvc.yaml").read_text())) and "toy" in dvc_yaml["artifacts"]
    status = json.loads(dvc(["status", "--json", "train@toy", "evaluate@toy"], repo, env))
    assert status == {}, status
    output = dvc(["repro", "--single-item", "report"], repo, env)
    table = (repo / "reports" / "results.csv").read_text()
    assert "toy" in table.splitlines()[1], table
    assert "not evaluated yet, left out: bernoulli" in output
