"""Several caseflow workers racing on assignments never overfill a worker nor lose a waitlisted citizen."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from datetime import date, timedelta

import pytest
import redis

from services.caseflow.projection import CaseflowProjection
from services.intake.app import create_app
from shared.bootstrap import event_store
from shared.config import Settings
from shared.domain import events as ev
from shared.domain.caseload import Caseload, caseload_stream, evolve_caseload
from shared.events.envelope import today
from shared.nudges import OFFER_JOB
from shared.projections import ProjectionRunner, replay
from tests.conftest import COPENHAGEN, STAFF, referral_body
from tests.support import grant_test_keys, snapshot, stop_workers, suite_queue

WORKERS = {"anna": 2, "bo": 2, "cy": 1}


def spawn_worker(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from services.caseflow.worker import main; main()"],
        env={**os.environ, "REDIS_URL": url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_racing_assignments_respect_capacity_and_keep_the_waitlist(
    real_connection: redis.Redis, real_redis_url: str
) -> None:
    grant_test_keys(event_store(real_connection, Settings.from_env({})))
    app = create_app(real_connection, Settings.from_env({}))
    client = app.test_client()
    # Funded past today: the caseflow workers offer free slots today, and none after the funding end.
    funded = {**COPENHAGEN, "funding_end": (today() + timedelta(days=365)).isoformat()}
    assert client.post("/programmes", json=funded, headers=STAFF).status_code == 201
    for worker, capacity in WORKERS.items():
        body = {"worker_id": worker, "method": "cti", "capacity": capacity, "on": "2016-01-02"}
        assert client.post("/programmes/demo-cph/workers", json=body, headers=STAFF).status_code == 201

    def enrolled_case() -> str:
        case = client.post("/referrals", json=referral_body(), headers=STAFF).get_json()["case_id"]
        client.post(f"/referrals/{case}/assessment", json={"on": "2016-01-20"}, headers=STAFF)
        enrolled = client.post(
            f"/cases/{case}/enrolment", json={"on": "2016-02-01", "scores": {"housing": 3}}, headers=STAFF
        )
        assert enrolled.status_code == 201
        return str(case)

    cases = [enrolled_case() for _ in range(16)]

    workers = [spawn_worker(real_redis_url) for _ in range(3)]
    statuses: list[int] = []

    def partner_traffic(seed: int) -> None:
        rng = random.Random(seed)
        own = app.test_client()
        for _ in range(25):
            case = rng.choice(cases)
            if rng.random() < 0.75:
                body = {"worker_id": rng.choice(list(WORKERS)), "waitlist_if_full": True, "on": "2016-02-02"}
                response = own.post(f"/cases/{case}/assignment", json=body, headers=STAFF)
            else:
                response = own.post(
                    f"/cases/{case}/closure", json={"reason": "completed", "on": "2016-03-01"}, headers=STAFF
                )
            statuses.append(response.status_code)
            # Extra offer jobs, so several caseflow workers race on the same waitlist.
            suite_queue(real_connection, "caseflow").enqueue(OFFER_JOB, "demo-cph")

    try:
        threads = [threading.Thread(target=partner_traffic, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(statuses) <= {201, 409}, statuses  # refusals (closed, full, already...) are 409, never 5xx
        assert statuses.count(201) > 10

        # Then for certain: fill every worker, waitlist three citizens, and close one course to free a slot.
        on = {"on": "2016-03-02"}
        for worker in WORKERS:
            while True:
                body = {"worker_id": worker, **on}
                if client.post(f"/cases/{enrolled_case()}/assignment", json=body, headers=STAFF).status_code == 409:
                    break
        for _ in range(3):
            body = {"worker_id": "anna", "waitlist_if_full": True, **on}
            assert client.post(f"/cases/{enrolled_case()}/assignment", json=body, headers=STAFF).status_code == 201
        anna_case = client.get("/programmes/demo-cph/caseload", headers=STAFF).get_json()["workers"][0]["cases"][0]
        closing = client.post(f"/cases/{anna_case}/closure", json={"reason": "completed", **on}, headers=STAFF)
        assert closing.status_code == 201

        store = event_store(real_connection, Settings.from_env({}))
        deadline = time.monotonic() + 60
        while True:  # wait until the workers have offered every free slot they can
            caseload = Caseload("demo-cph")
            for event in store.read_stream(caseload_stream("demo-cph")):
                caseload = evolve_caseload(caseload, event.payload, event.occurred_on)
            free = sum(cap - caseload.load(w) for w, cap in WORKERS.items())
            queued = suite_queue(real_connection, "caseflow").count
            if queued == 0 and (free == 0 or not caseload.waitlist):
                break
            assert time.monotonic() < deadline, f"waitlist {caseload.waitlist} with {free} free slots"
            time.sleep(0.2)
    finally:
        stop_workers(workers)

    history = store.read_stream(caseload_stream("demo-cph"))
    replayed = Caseload("demo-cph")
    ever_waitlisted: set[str] = set()
    for event in history:  # the invariant holds at every version of the caseload, not just at the end
        replayed = evolve_caseload(replayed, event.payload, event.occurred_on)
        for worker, capacity in WORKERS.items():
            assert replayed.load(worker) <= capacity, f"{worker} over capacity at version {replayed.version}"
        if isinstance(event.payload, ev.CaseWaitlisted):
            ever_waitlisted.add(event.payload.case_id)
        if isinstance(event.payload, ev.CaseLeftWaitlist):
            assert event.payload.reason == "course_closed"
            assert store.read_stream(event.payload.case_id)[-1].event_type == "CourseClosed"
    offered = [e for e in history if isinstance(e.payload, ev.CaseAssigned) and e.payload.via == "waitlist"]
    assert offered and all(e.actor == "caseflow" for e in offered), "the caseflow workers made the offers"
    assert ever_waitlisted, "the traffic should have filled the workers"
    for case_id in ever_waitlisted:  # nobody vanished: still waiting, assigned, or their course closed
        closed = store.read_stream(case_id)[-1].event_type == "CourseClosed"
        assert replayed.is_waitlisted(case_id) or case_id in replayed.assignments or closed, case_id
    assert date(2016, 2, 2) <= min(e.occurred_on for e in offered)

    # The projection the racing workers built (programmes, cases, caseloads) equals one in-order replay.
    runner = ProjectionRunner(store, CaseflowProjection())
    runner.catch_up_all()  # anything the terminated workers left queued
    replay(store, CaseflowProjection(), "reference")
    assert snapshot(real_connection, runner.namespace) == snapshot(real_connection, "reference")
