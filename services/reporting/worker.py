"""Console script ``caseflow-reporting-worker``: projects the reporting read models."""

from shared.worker import run_worker


def main() -> None:
    run_worker("reporting", "reporting-worker")
