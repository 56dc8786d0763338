"""Every command the README and docs/ give, checked offline and fast: each `python -m` module exists and
takes the flags it is given, each `make` target exists, each `dvc exp run -S key=value` names a real params
key and changes the settings of the stages it names, each Python block compiles and imports what exists,
and each results file and JSON key named is in pipeline/results.py's contract. The slower commands
(running the stages without DVC) run in tests/test_e2e.py."""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import io
import re
import runpy
import shlex
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import pytest

from pipeline import params as P
from pipeline.digit_classifier import ClassifierConfig
from pipeline.model_params import model_spec
from pipeline.results import CLASSIFIER_METRICS, CLASSIFIER_MODEL, REPORT, EvalTiming, Metrics, ModelResults, TrainSummary
from pipeline.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "RESULTS.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
JSON_FILES = {"metrics.json": Metrics, "train.json": TrainSummary, "eval.json": EvalTiming}


def blocks(text: str, languages: set[str]) -> list[str]:
    return [body for language, body in BLOCK.findall(text) if language in languages]


def shell_commands(body: str) -> list[list[str]]:
    """The commands of a shell block, each as its words (`a && b` is two; comments and prompts dropped)."""
    lines = body.replace("\\\n", " ").splitlines()
    if any(line.startswith("$ ") for line in lines):  # a console block: only the prompted lines
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    commands = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words: list[str] = []
        for word in [*lexer, ";"]:
            if word in {"&&", "||", ";", "|", "&"}:
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before a command
                    words.pop(0)
                if words:
                    commands.append(words)
                words = []
            else:
                words.append(word)
    return commands


@functools.cache
def module_help(module: str) -> str | None:
    """`python -m module --help`, or None when there is no such module to run."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return None
    if spec is None or (spec.submodule_search_locations and importlib.util.find_spec(f"{module}.__main__") is None):
        return None
    out, argv = io.StringIO(), sys.argv
    sys.argv = [module, "--help"]
    try:  # as `python -m module --help` would, in this process: the imports are paid once
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module was imported before, by another
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return out.getvalue() if e.code in (0, None) else None
    finally:
        sys.argv = argv
    return None  # it ran without parsing --help


def python_module_problems(words: list[str]) -> list[str]:
    start = next(i for i, word in enumerate(words) if word.endswith(("python", "python3"))) + 2
    module, flags = words[start], {w.strip("[]").split("=")[0] for w in words[start + 1:] if w.strip("[").startswith("--")}
    help_text = module_help(module)
    if help_text is None:
        return [f"python -m {module}: no such module, or its --help fails"]
    return [f"python -m {module}: no flag {flag}" for flag in sorted(flags)
            if not re.search(rf"{re.escape(flag)}\b", help_text)]


def make_problems(words: list[str]) -> list[str]:
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    return [f"make {target}: no such target" for target in words[1:] if not target.startswith("-") and target not in targets]


def overrides_and_targets(words: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    overrides, targets, i = [], [], 3
    while i < len(words):
        if words[i] in ("-S", "--set-param"):
            overrides.append(words[i + 1])
            i += 1
        elif words[i] in ("-n", "--name", "-j", "--jobs"):
            i += 1
        elif not words[i].startswith("-"):
            targets.append(words[i])
        i += 1
    return tuple(overrides), tuple(targets)


@functools.cache
def settings(params_text: str) -> dict[str, object]:
    """What each stage reads under the params' profile: each model's spec, and the shared sections."""
    params = _load(params_text)
    read = {name: model_spec(params, name) for name in P.model_names(params)}
    return {**read, "evaluate": P.evaluate_config(params), "data": P.data_config(params),
            "classifier": P.section_config(params, "classifier", ClassifierConfig)}


def _load(params_text: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "params.yaml").write_text(params_text)
        return P.load(Path(tmp) / "params.yaml")


@functools.cache
def override_problems(overrides: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    """DVC's own `-S` on a copy of params.yaml; what it changes must include the model each override
    or target names."""
    from dvc.utils.hydra import apply_overrides
    shown = f"dvc exp run {' '.join('-S ' + o for o in overrides)}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "params.yaml"
            shutil.copy(REPO / "params.yaml", copy)
            apply_overrides(copy, list(overrides))
            before, after = settings((REPO / "params.yaml").read_text()), settings(copy.read_text())
    except Exception as e:  # DVC's InvalidArgumentError (a key params.yaml lacks), a PipelineError (a bad value)
        return [f"{shown}: {type(e).__name__}: {e}"]
    changed = {name for name in before if before[name] != after.get(name)}
    if not changed:
        return [f"{shown}: changes nothing any stage reads under params.yaml's profile"]
    named = {o.lstrip("+").split(".")[1] for o in overrides if o.lstrip("+").startswith("models.")}
    named |= {target.split("@")[1] for target in targets if "@" in target}
    return [f"{shown}: does not change the settings of {name}'s stages" for name in sorted(named - changed)]


def python_block_problems(body: str) -> list[str]:
    """The block compiles; each module it imports exists, and each attribute it reads of one exists."""
    try:
        tree = ast.parse(body)
    except SyntaxError as e:
        return [f"python block does not compile: {e}"]
    modules, problems = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                modules[bound] = alias.name if alias.asname else bound
                if importlib.util.find_spec(alias.name) is None:
                    problems.append(f"import {alias.name}: no such module")
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            problems += [f"from {node.module} import {a.name}: no such name" for a in node.names if not hasattr(module, a.name)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            module = importlib.import_module(modules[node.value.id])
            if not hasattr(module, node.attr) and importlib.util.find_spec(f"{module.__name__}.{node.attr}") is None:
                problems.append(f"{node.value.id}.{node.attr}: no such attribute")
    return problems


def contract_paths() -> set[str]:
    model = ModelResults("<model>")
    paths = {getattr(model, name) for name, value in vars(ModelResults).items() if isinstance(value, property)}
    return {p.as_posix() for p in (*paths, *REPORT.all(), CLASSIFIER_METRICS, CLASSIFIER_MODEL)}


def file_and_key_problems(text: str) -> list[str]:
    """Results and report files named must be in the contract; `x.json` (`key`, ...) and the key lists under
    a heading `### `x.json`` must name its record's keys, and a heading's list all of them."""
    known, problems = contract_paths(), []
    for span in re.findall(r"`((?:results/<model>|reports|classifier)/[^`\s]+)`", text):
        if span not in known:
            problems.append(f"{span}: not a file of pipeline/results.py's contract")
    for name, keys in re.findall(r"`(\w+\.json)` \(([^)]*)\)", text):
        if name in JSON_FILES:
            fields = {f.name for f in dataclasses.fields(JSON_FILES[name])}
            problems += [f"{name}: no key {key}" for key in re.findall(r"`([a-z_][a-z0-9_]*)`", keys) if key not in fields]
    for name, section in re.findall(r"^### `(\w+\.json)`\n(.*?)(?=^#|\Z)", text, re.S | re.M):
        listed = {key for item in re.findall(r"^- (.*?):", section, re.M) for key in re.findall(r"`(\w+)`", item)}
        fields = {f.name for f in dataclasses.fields(JSON_FILES[name])}
        problems += [f"{name}: no key {key}" for key in sorted(listed - fields)]
        problems += [f"{name}: key {key} not described" for key in sorted(fields - listed)]
    return problems


def problems(path: Path) -> list[str]:
    """Everything wrong with the commands, code and file names of one Markdown file."""
    text = path.read_text()
    found = file_and_key_problems(text)
    for body in blocks(text, SHELL):
        for words in shell_commands(body):
            if any(w.endswith(("python", "python3")) for w in words[:1]) and words[1:2] == ["-m"]:
                found += python_module_problems(words)
            elif words[0] == "make":
                found += make_problems(words)
            elif words[:3] == ["dvc", "exp", "run"] and overrides_and_targets(words)[0]:
                found += override_problems(*overrides_and_targets(words))
    for body in blocks(text, {"python"}):
        found += python_block_problems(body)
    return [f"{path.name}: {problem}" for problem in found]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_command_and_name_in_the_docs_is_real(path):
    assert problems(path) == []


def test_the_docs_give_commands_of_every_kind_checked():
    """The checks above have something to check: modules, -S overrides, make targets, Python code."""
    words = [w for path in DOCS for body in blocks(path.read_text(), SHELL) for w in shell_commands(body)]
    assert sum(w[:2] == ["python", "-m"] for w in words) >= 20
    assert sum("-S" in w for w in words) >= 8
    assert {"pipeline", "test", "bench"} <= {w[1] for w in words if w[0] == "make"}
    assert sum(len(blocks(path.read_text(), {"python"})) for path in DOCS) >= 3


@pytest.mark.parametrize("wrong, expected", [
    ("-S 'models.made.quick.hidden_sizes=[64]'", "-S models.made.smoke.hidden_sizes=[64]: changes nothing"),
    ("python -m pipeline.score my_digit.png", "no such module"),
    ("python -m pipeline.tracking --ui-url", "no flag --ui-address"),
    ("-S train.quick.budget_flops=3e11", "InvalidArgumentError"),
    ("from pipeline.trained import load", "no such name"),
    ("`metrics.json` (`test_nll`,", "metrics.json: no key test_nlll"),
])
def test_a_wrong_key_module_flag_or_name_in_a_copy_of_the_readme_turns_the_check_red(tmp_path, wrong, expected):
    readme = (REPO / "README.md").read_text()
    wrongs = {"-S 'models.made.quick.hidden_sizes=[64]'": "-S 'models.made.smoke.hidden_sizes=[64]'",
              "python -m pipeline.score my_digit.png": "python -m pipeline.scores my_digit.png",
              "python -m pipeline.tracking --ui-url": "python -m pipeline.tracking --ui-address",
              "-S train.quick.budget_flops=3e11": "-S train.quick.budget_flop=3e11",
              "from pipeline.trained import load": "from pipeline.trained import loads",
              "`metrics.json` (`test_nll`,": "`metrics.json` (`test_nlll`,"}
    assert wrong in readme, "the README no longer holds the line this test breaks"
    copy = tmp_path / "README.md"
    copy.write_text(readme.replace(wrong, wrongs[wrong], 1))
    found = problems(copy)
    assert any(expected in problem for problem in found), found


def test_the_readme_lists_every_model_of_params_yaml_once():
    table = (REPO / "README.md").read_text().split("## The models", 1)[1].split("\n\n", 2)[1]
    listed = [name for row in table.splitlines()[2:] for name in re.findall(r"`(\w+)`", row.split("|")[2])]
    assert sorted(listed) == sorted(P.model_names(P.load(REPO / "params.yaml")))


def test_the_training_keys_table_lists_every_training_key():
    text = (REPO / "docs" / "configuration.md").read_text().split("## Training keys", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+)` \|", text, re.M)
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(TrainConfig))


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_link_to_a_file_or_heading_of_the_repository_leads_somewhere(path):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"\w+://", target):
            continue
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        markdown = linked.read_text() if linked.suffix == ".md" and linked.exists() else ""
        headings = {anchor(h) for h in re.findall(r"^#+ (.*)$", markdown, re.M)}
        if not linked.exists() or (fragment and fragment not in headings):
            broken.append(target)
    assert broken == []


def test_the_readme_reads_in_ten_minutes():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250
