"""Structured JSON logs: one object per line, with the request id that intake gave a request carried
through the queue (in the job's meta) into the worker's log lines. Messages hold ids, never personal data."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO

import orjson


class RequestIdFilter(logging.Filter):
    """Attach the request id of the HTTP request or RQ job being handled, if any, unless the line was given one
    (the request's own line, written once per request: looking it up was a fifth of that line's cost)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _current_request_id()
        return True


def _current_request_id() -> str | None:
    from flask import has_app_context

    if has_app_context():
        from shared.http import this_g  # only where an app runs: a worker's lines need none of the HTTP module

        if request_id := this_g().get("request_id"):
            return str(request_id)
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        request_id = job.meta.get("request_id")
        return str(request_id) if request_id else None
    return None


class JsonFormatter(logging.Formatter):
    """A line per record, written by orjson: intake writes one per request (its log line was 3.5 % of a referral's
    instructions, a third of that the standard library's JSON)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            line["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "error"
        return orjson.dumps(line).decode()


def configure_logging(service: str, stream: IO[str] | None = None, level: int = logging.INFO) -> logging.Handler:
    """JSON lines on stderr for the whole process (RQ's own lines included)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Our lines hold none of the caller's file and line, its thread, its process or the process's name, so the
    # logging module need not look them up for every record (the knobs of the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    for noisy in ("rq.worker", "rq.queue", "rq.scheduler", "rq.cron"):  # RQ installs its own handlers: use ours
        logger = logging.getLogger(noisy)
        logger.handlers.clear()
        logger.propagate = True
    return handler
