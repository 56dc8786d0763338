"""Using what the pipeline trained: the Python API, scoring images, MLflow models, the MLflow UI's
comparison table and the notebook, all on the smoke profile's outputs (one shared `dvc repro`)."""
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data import load_split
from pipeline.progress import in_ci
from pipeline.trained import load
from tests.drills.workspace import BIN, GIT, run

pytestmark = pytest.mark.e2e


def binarized_test_set(repo: Path) -> torch.Tensor:
    return load_split("test", root=repo / "data" / "binarized")


def current_runs(repo: Path) -> dict:
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("binarized-mnist")
    return {r.data.tags["name"]: r for r in client.search_runs([experiment.experiment_id], "tags.current = 'true'")}


def metrics_of(repo: Path, name: str) -> dict:
    return json.loads((repo / "results" / name / "metrics.json").read_text())


@pytest.mark.parametrize("name", ["nade", "made", "pixelcnn_grey"])
def test_a_loaded_model_gives_the_evaluate_stages_nlls(smoke_pipeline, name):
    repo = smoke_pipeline[0]
    evaluated = np.load(repo / "results" / name / "test_nll.npy")
    model = load(name, repo=repo)
    test_set = load_split("test", root=repo / "data" / metrics_of(repo, name)["data"])
    with torch.no_grad():
        nll = model.nll(test_set[:len(evaluated)]).double().numpy()
    np.testing.assert_allclose(nll, evaluated, rtol=1e-5)
    samples = model.sample(2)
    assert samples.shape == (2, 1, 28, 28) and samples.max() <= model.pixel_levels - 1


def test_a_model_of_another_revision_is_read_through_dvc(smoke_pipeline):
    repo, env, _, _ = smoke_pipeline
    run([*GIT, "add", "dvc.lock"], repo, env)
    run([*GIT, "commit", "-qm", "trained", "--allow-empty"], repo, env)
    rev = run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    here, there = load("nade", repo=repo), load("nade", rev=rev, repo=repo)
    for key, value in here.state_dict().items():
        assert torch.equal(value, there.state_dict()[key]), key
    with pytest.raises(LookupError, match="unknown model 'nope'"):
        load("nope", repo=repo)
    with pytest.raises(FileNotFoundError, match="no-such-rev"):
        load("nade", rev="no-such-rev", repo=repo)


def write_png(path: Path, bits: torch.Tensor) -> Path:
    """A test digit as a user would bring it: dark ink on white paper, in colour, four times larger."""
    grey = ((1 - bits.numpy()) * 255).astype(np.uint8)
    Image.fromarray(grey).convert("RGB").resize((112, 112), Image.Resampling.NEAREST).save(path)
    return path


def test_scoring_prefers_a_real_digit_to_noise_and_reports_unreadable_files(smoke_pipeline, tmp_path):
    repo, env, names, _ = smoke_pipeline
    digit = write_png(tmp_path / "digit.png", binarized_test_set(repo)[0, 0])
    noise = tmp_path / "noise.npy"
    np.save(noise, np.random.default_rng(0).integers(0, 2, (1, 28, 28)).astype(np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    result = run([sys.executable, "-m", "pipeline.score", str(digit), str(broken), str(noise)], repo, env,
                 check=False, timeout=600)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: {broken}: " + result.stderr.split(f"{broken}: ")[1].strip()]
    scores = {}
    for line in result.stdout.splitlines():
        fields = line.split()
        if fields and fields[0] in (str(digit), str(noise)):
            scores[fields[0], fields[1]] = float(fields[2])
    # smoke models see 200 images once: only binarized ones that learned more than "pixels are mostly off"
    # can tell (a smoke grey model beats uniform levels long before it knows a digit's shape; scoring grey
    # levels is checked in tests/test_score.py)
    binarized = [n for n in names if metrics_of(repo, n)["data"] == "binarized"]
    learned = [n for n in binarized if metrics_of(repo, n)["test_nll"] < 0.9 * 28 * 28 * math.log(2)]
    assert learned, "no smoke model learned more than the uniform distribution"
    for name in learned:
        assert scores[str(digit), name] < scores[str(noise), name], name
    assert set(names) <= {model for _, model in scores}


def test_every_models_mlflow_run_holds_a_model_that_samples(smoke_pipeline):
    import mlflow.pytorch
    repo, _, names, _ = smoke_pipeline
    runs = current_runs(repo)
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    for name in names:
        tags = runs[name].data.tags
        assert tags["mlflow.source.name"] == "pipeline/track.py" and len(tags["mlflow.source.git.commit"]) == 40
        data = metrics_of(repo, name)["data"]
        assert {d.dataset.name for d in runs[name].inputs.dataset_inputs} >= {f"{data}-mnist-train", f"{data}-mnist-test"}
        model = mlflow.pytorch.load_model(f"runs:/{runs[name].info.run_id}/model")
        images = model.sample(2)
        assert images.shape == (2, 1, 28, 28) and set(images.unique().tolist()) <= set(range(model.pixel_levels)), name


# --- the MLflow UI in a browser ---------------------------------------------------------------------

def browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_ui(smoke_pipeline):
    """The URL of `mlflow ui` serving the smoke pipeline's store."""
    repo, env, _, _ = smoke_pipeline
    port = free_port()
    server = subprocess.Popen([str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{repo / 'mlflow.db'}",
                               "--host", "127.0.0.1", "--port", str(port)], cwd=repo, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # its own process group: the server starts job workers
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def headless_chromium(paths):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=3200,1800"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(paths[1]), options=options)


def table_rows(driver) -> dict[int, str]:
    """The runs table's rows by position: ag-grid splits each row between its pinned and scrolling
    parts, which share a row-index."""
    rows: dict[int, str] = {}
    for element in driver.find_elements("css selector", "[role=row][row-index]"):
        index = int(element.get_attribute("row-index"))
        rows[index] = rows.get(index, "") + "\n" + element.text
    return rows


def rows_by_name(driver, names: list[str], timeout: float = 120) -> dict[str, tuple[int, str]]:
    """{run name: (row position, row text)} once every name has its row (the UI loads lazily)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for index, text in table_rows(driver).items():
            tokens = set(text.split())
            found.update({name: (index, text) for name in names if name in tokens})
        if set(found) == set(names) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def numbers(text: str) -> list[float]:
    values = []
    for token in text.split():
        try:
            values.append(float(token))
        except ValueError:
            pass
    return values


def browser_or_skip() -> tuple[str, str]:
    """The browser's and its driver's paths; in CI their absence fails the test rather than skipping it."""
    paths = browser_paths()
    try:
        import selenium  # noqa: F401
    except ImportError:
        paths = None
    if paths is None:
        reason = "no chromium, chromedriver and selenium here (apt-get install chromium chromium-driver)"
        if in_ci():
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)
    return paths


def test_the_html_report_shows_every_models_row_and_samples_offline(smoke_pipeline):
    paths = browser_or_skip()
    repo, _, names, _ = smoke_pipeline
    page = repo / "reports" / "index.html"
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # nothing to fetch
    driver = headless_chromium(paths)
    try:
        driver.get(page.as_uri())
        for name in names:
            row = driver.find_element("id", f"row-{name}")
            image = row.find_element("css selector", "td.samples img")
            assert row.is_displayed() and name in row.text, name
            assert image.is_displayed() and driver.execute_script("return arguments[0].naturalWidth", image) > 0, name
        charts = driver.find_elements("css selector", "figure img")
        assert len(charts) == 2 and all(driver.execute_script("return arguments[0].naturalWidth", c) > 0
                                        for c in charts)
    finally:
        driver.quit()


def test_the_ui_url_opens_the_comparison_table_of_current_runs(smoke_pipeline, request):
    paths = browser_or_skip()
    repo, env, names, _ = smoke_pipeline
    ui = request.getfixturevalue("mlflow_ui")
    url = run([sys.executable, "-m", "pipeline.tracking", "--ui-url", ui], repo, env).stdout.strip()
    driver = headless_chromium(paths)
    try:
        driver.get(url)
        rows = rows_by_name(driver, names)
    finally:
        driver.quit()
    runs = current_runs(repo)
    assert set(rows) == set(names), f"rows found for {sorted(rows)} only"
    for name in names:
        expected = runs[name].data.metrics["test_nll"]
        assert any(abs(value - expected) < 0.01 for value in numbers(rows[name][1])), (name, rows[name][1], expected)
    assert sorted(names, key=lambda n: rows[n][0]) == sorted(names, key=lambda n: runs[n].data.metrics["test_nll"])


def test_the_notebook_runs_on_the_trained_models(smoke_pipeline):
    import nbformat
    from nbclient import NotebookClient
    repo, env, _, _ = smoke_pipeline
    notebook = nbformat.read(repo / "notebooks" / "tour.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(repo / "notebooks")}}).execute(env={**env, "PYTHONPATH": str(repo)})
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "nats on" in outputs and "percentile" in outputs


def test_a_budgeted_report_shows_the_compute_frontier_and_samples_large_enough_to_read(smoke_pipeline, tmp_path,
                                                                                       monkeypatch):
    """The page of a run at the searched budget, from the smoke pipeline's outputs and a toy search table."""
    from pipeline import charts, report
    from pipeline import params as P
    from pipeline import search_table as search
    from pipeline.results import ReportFiles
    paths = browser_or_skip()
    repo, _, names, _ = smoke_pipeline
    monkeypatch.chdir(repo)
    table = report.collect(names, "smoke", P.load())
    rows = [{"model": m, "data": d, "family": f, "settings": "{}", "seed": 0, "state": search.FINISHED,
             "budget_flops": 8.0, "val_nll": v,
             "curve": [[4.0, v + 10], [8.0, v]]} for m, d, f, v in zip(table.model, table.data, table.family, table.test_nll)]
    found = search.summarize(rows, 8.0, 2)
    files = ReportFiles(tmp_path)
    for figure in (files.compute, files.curves):
        shutil.copy(repo / "reports" / figure.name, figure)
    charts.compute_frontier(found.frontiers, found.flops, found.leaders, report.baselines(found), files.frontier)
    files.page.write_text(report.html_page(table, "quick", None, found, files))
    driver = headless_chromium(paths)
    try:
        driver.get(files.page.as_uri())
        headings = [h.text for h in driver.find_elements("css selector", "h2")]
        assert all("not converged" in h for h in headings if h.startswith(("Binarized", "Grey")))
        frontier = driver.find_element("css selector", "img[alt^='The compute frontier']")
        assert frontier.is_displayed() and driver.execute_script("return arguments[0].naturalWidth", frontier) > 0
        leaders = {model for changes in found.leaders.values() for _, model in changes}
        assert leaders and all(f"{m} from" in driver.find_element("tag name", "body").text for m in leaders)
        grid = math.isqrt(P.evaluate_config(P.load()).samples)  # images a side of the sample grid
        image = driver.find_element("css selector", f"#row-{names[0]} td.samples img")
        small = image.size["height"]
        image.click()
        assert small / grid >= 28 / 2 and image.size["height"] / grid >= 28 * 2, "a digit at twice its pixels when enlarged"
    finally:
        driver.quit()
