"""Console scripts: ``caseflow-worker`` (scale it freely) and ``caseflow-scheduler`` (run one)."""

from shared.worker import run_scheduler, run_worker


def main() -> None:
    run_worker("caseflow", "caseflow-worker")


def scheduler() -> None:
    run_scheduler()
