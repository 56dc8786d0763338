"""`python -m pipeline.tracking`: the URI of the store the pipeline logs to, or with --ui-url the URL
of the comparison table in the MLflow UI."""
from __future__ import annotations

from pipeline.tracking.store import tracking_uri
from pipeline.tracking.ui import DEFAULT_UI, comparison_url


def main(argv=None) -> None:
    import argparse
    parser = argparse.ArgumentParser(description="The MLflow store the pipeline logs to.")
    parser.add_argument("--ui-url", nargs="?", const=DEFAULT_UI, metavar="UI",
                        help=f"print the URL of the comparison table in the MLflow UI at UI (default {DEFAULT_UI})")
    args = parser.parse_args(argv)
    if args.ui_url is None:
        print(tracking_uri())
        return
    print(comparison_url(args.ui_url))


if __name__ == "__main__":
    from pipeline import stage
    stage.run(main)
