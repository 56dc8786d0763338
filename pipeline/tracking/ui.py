"""The comparison table in MLflow's UI: `python -m pipeline.tracking --ui-url` prints its URL."""
from __future__ import annotations

import os

from pipeline.tracking.failure import OPTIONAL_ENV, TrackingError, connect, failure
from pipeline.tracking.store import _experiment_id, store_lock

# The UI restores a saved view from the experiment tag `mlflow.sharedViewState.<key>` when its URL
# carries `viewStateShareKey=<key>` (read from MLflow 3.17's UI bundle). The view holds the search
# facets (searchFilter, orderByKey, orderByAsc) and the runs table's selectedColumns, whose keys are
# `<group>.`<name>``. Plain URL parameters cannot choose columns, hence the saved view.
VIEW_KEY = "genbench-comparison"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
DEFAULT_UI = "http://127.0.0.1:5000"
COMPARISON_VIEW = {
    "searchFilter": "tags.current = 'true'",
    "orderByKey": "metrics.`test_nll`",
    "orderByAsc": True,
    "selectedColumns": ["attributes.`Source`", "attributes.`Models`", "attributes.`Dataset`",
                        "metrics.`test_nll`", "metrics.`test_bpd`", "tags.`estimator`"],
    "runsHiddenMode": "SHOW_ALL",
}


def comparison_url(ui: str = DEFAULT_UI) -> str:
    """Save the comparison view in the store and return the URL that opens it: current runs only,
    test_nll, test_bpd and the estimator as columns, best test_nll first."""
    import json
    os.environ.pop(OPTIONAL_ENV, None)  # this command is about the store: a failure must say so
    client = connect()
    if client is None:
        raise TrackingError("MLflow is not installed")
    try:
        with store_lock():
            experiment = _experiment_id(client)
            client.set_experiment_tag(experiment, VIEW_TAG_PREFIX + VIEW_KEY, json.dumps(COMPARISON_VIEW))
    except Exception as e:
        failure("saving the comparison view", e)
    # the runs tab of a model-training experiment: without workflowType the UI opens its GenAI overview
    return (f"{ui.rstrip('/')}/#/experiments/{experiment}/runs?workflowType=machine_learning"
            f"&viewStateShareKey={VIEW_KEY}")
