"""``caseflow-suite up``: the whole suite on one machine, as child processes, with a demo loaded.

Uses ``REDIS_URL`` when set (with the deployment's secrets); otherwise serves an embedded, non-durable
store from this process, with development keys. Ctrl-C (or SIGTERM) stops every child cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from shared.config import DEVELOPMENT_SECRETS, Settings
from shared.demo import demo_programme, generate
from shared.embedded import EmbeddedRedis
from shared.events.envelope import today as copenhagen_today


@dataclass(frozen=True)
class Child:
    name: str
    entry_point: str  # "module:function"


EXAMPLE_REFERRAL = {"programme_id": "demo-cph", "consent": {"given": True}, "citizen": {"alias": "Maja"}}

CHILDREN = (
    Child("intake", "services.intake.app:main"),
    Child("reporting", "services.reporting.app:main"),
    Child("caseflow-worker", "services.caseflow.worker:main"),
    Child("reporting-worker", "services.reporting.worker:main"),
    Child("scheduler", "services.caseflow.worker:scheduler"),
)


LOG_DIR = Path(".suite/logs")


def _spawn(child: Child, env: dict[str, str]) -> subprocess.Popen[bytes]:
    module, function = child.entry_point.split(":")
    code = f"from {module} import {function}; {function}()"
    with (LOG_DIR / f"{child.name}.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)


def _call(method: str, url: str, body: dict[str, Any] | None = None, key: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _wait_healthy(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _call("GET", f"{url}/healthz")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout_s:.0f}s")


# Demo partners and the keys the demo issues them: (variable, partner, name, kind, role, programme, worker)
DEMO_KEYS = (
    ("COORDINATOR_KEY", "kk-socialforvaltning", "Københavns Kommune", "municipality", "coordinator", "demo-cph", None),
    ("WORKER_BO_KEY", "kk-socialforvaltning", "Københavns Kommune", "municipality", "worker", "demo-cph", "bo"),
    ("REDEN_KEY", "reden", "Reden", "ngo", "referrer", None, None),
    ("LIVAREHAB_KEY", "livarehab", "LivaRehab", "ngo", "referrer", None, None),
    ("EVALUATOR_KEY", "vive", "VIVE (evaluator)", "other", "evaluator", None, None),
    ("ADMIN_KEY", "kk-socialforvaltning", "Københavns Kommune", "municipality", "admin", None, None),
    (
        "CPH_2016_COORDINATOR_KEY",
        "kk-socialforvaltning",
        "Københavns Kommune",
        "municipality",
        "coordinator",
        "cph-2016",
        None,
    ),
    (
        "BALLERUP_2012_COORDINATOR_KEY",
        "ballerup-kommune",
        "Ballerup Kommune",
        "municipality",
        "coordinator",
        "ballerup-2012",
        None,
    ),
)
KEYS_FILE = Path(".suite/demo-keys.env")
# For the operators' commands (``flask --app ... projections status``, ``jobs status``, ``log export``) on the
# embedded store: its address and the development secrets it runs with. Apart from the keys' file, so that
# sourcing those does not point a later ``make run`` at a store that has gone; removed when the suite stops.
STORE_FILE = Path(".suite/store.env")
FLASK = os.path.relpath(Path(sys.executable).parent / "flask")  # the project's, as ``make run`` installed it
STATUS_COMMAND = "services.reporting.app projections status"


def provision_demo_keys(env: dict[str, str]) -> dict[str, str]:
    """Register the demo partners and issue fresh keys, exactly as the admin command does."""
    from services.intake.admin import issue_key, load_partner, register_partner
    from services.intake.service import Context, Intake
    from shared.bootstrap import connect, event_store
    from shared.vault import Vault

    settings = Settings.from_env(env)
    connection = connect(settings)
    vault = Vault(connection, settings.key_prefix, settings.master_key)
    intake = Intake(event_store(connection, settings), settings.key_prefix, vault, settings.cpr_hmac_secret)
    ctx = Context(actor="caseflow-suite:demo", request_id="demo")
    keys = {}
    for variable, partner, name, kind, role, programme, worker in DEMO_KEYS:
        if load_partner(intake, partner) is None:
            register_partner(intake, ctx, partner, name, kind)
        keys[variable] = issue_key(intake, ctx, partner, role, programme, worker, f"demo {variable}")
    KEYS_FILE.write_text("".join(f"export {v}={k}\n" for v, k in keys.items()))
    KEYS_FILE.chmod(0o600)
    return keys


def demo_loaded(intake: str, coordinator_key: str) -> bool:
    """Whether an earlier run loaded the demo into this Redis (a configured one outlives the suite)."""
    try:
        _call("GET", f"{intake}/programmes/demo-cph", key=coordinator_key)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise
    return True


def load_demo(intake: str, reporting: str, keys: dict[str, str]) -> dict[str, Any]:
    """A programme, two relation workers, referrals from several partners, and one course under way."""
    today = copenhagen_today()
    staff = keys["COORDINATOR_KEY"]
    _call("POST", f"{intake}/programmes", demo_programme(today), staff)
    for worker in ("anna", "bo"):
        _call("POST", f"{intake}/programmes/demo-cph/workers", {"worker_id": worker, "method": "cti"}, staff)
    referrals = [
        (keys["REDEN_KEY"], {"alias": "Demo A"}),
        (keys["REDEN_KEY"], {"alias": "Demo B"}),
        (keys["LIVAREHAB_KEY"], {"alias": "Demo C"}),
        (staff, {}),
    ]
    ids = []
    for partner, citizen in referrals:
        body = {
            "programme_id": "demo-cph",
            "consent": {"given": True},
            "citizen": citizen,
            "referred_on": (today - timedelta(days=50)).isoformat(),
        }
        ids.append(_call("POST", f"{intake}/referrals", body, partner)["case_id"])
    course = f"{intake}/cases/{ids[0]}"
    on = (today - timedelta(days=45)).isoformat()
    _call("POST", f"{intake}/referrals/{ids[0]}/assessment", {"on": on}, staff)
    _call("POST", f"{course}/enrolment", {"on": on, "scores": {"housing": 2, "mental_health": 4, "finances": 3}}, staff)
    _call("POST", f"{course}/assignment", {"on": on, "worker_id": "anna"}, staff)
    _call("POST", f"{course}/who5", {"on": on, "items": [2, 1, 2, 3, 1]}, staff)
    _call("POST", f"{course}/goals", {"on": on, "life_area": "housing", "description": "find a home"}, staff)
    _call("POST", f"{course}/contacts", {"on": on, "kind": "community_meeting"}, staff)
    _call("POST", f"{intake}/referrals/{ids[2]}/decline", {"reason": "outside target group"}, staff)
    deadline = time.monotonic() + 30
    while True:
        report: dict[str, Any] = _call("GET", f"{reporting}/programmes/demo-cph/referrals-per-partner", key=staff)
        if (report["caught_up"] and report["total"]["referrals"] >= len(referrals)) or time.monotonic() > deadline:
            return report


def _load_synthetic(intake: str, reporting: str, keys: dict[str, str], citizens: int, seed: int) -> None:
    """Synthetic history for the reports, posted through intake while the suite is already in use."""
    print(f"Loading {citizens} synthetic citizens into cph-2016 and ballerup-2012 in the background...", flush=True)
    try:
        made = generate(_call, intake, keys, citizens, seed)
    except Exception as e:  # the suite stays up; say what went wrong without a trace of data
        print(f"The synthetic demo stopped: {type(e).__name__}", flush=True)
        return
    for programme, count in made.items():
        print(
            f"Synthetic programme {programme}: {count} citizens loaded; dashboard "
            f"{reporting}/programmes/{programme}/dashboard (sign in with its coordinator key)",
            flush=True,
        )


def _stop_children(children: list[subprocess.Popen[bytes]], grace_s: float = 10) -> None:
    """Terminate every child and wait for it, killing what is left after ``grace_s``. A further Ctrl-C or SIGTERM
    meanwhile (pressed twice, or a service manager signalling the whole group) kills them at once: it used to
    interrupt this wait, and the suite died with the embedded store its children were still talking to."""

    def kill_now(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.kill()

    signal.signal(signal.SIGINT, kill_now)
    signal.signal(signal.SIGTERM, kill_now)
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace_s
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="caseflow-suite")
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--no-demo", action="store_true", help="start empty")
    parser.add_argument(
        "--demo-citizens",
        type=int,
        default=None,
        help="synthetic citizens, loaded in the background (0: none; default 12 embedded, 40 on Redis)",
    )
    parser.add_argument("--demo-seed", type=int, default=1, help="the synthetic generator's seed")
    args = parser.parse_args()

    env = dict(os.environ)
    embedded = None
    if not env.get("REDIS_URL"):
        port = int(env.get("EMBEDDED_REDIS_PORT", "6399"))
        try:
            embedded = EmbeddedRedis(port=port).start()
        except OSError:
            sys.exit(f"caseflow-suite: port {port} is taken (is another suite running?); set EMBEDDED_REDIS_PORT")
        env["REDIS_URL"] = embedded.url
        env |= {name: env.get(name, value) for name, value in DEVELOPMENT_SECRETS.items()}  # it keeps nothing
        print(
            "\n  !! No REDIS_URL given: using the EMBEDDED in-memory store at "
            f"{embedded.url}.\n  !! It is NOT durable: every event is lost when the suite stops.\n"
            "  !! For real use set REDIS_URL to a Redis with AOF on, and the secrets (see .env.example).\n",
            flush=True,
        )
    try:
        Settings.from_env(env)  # a Redis of one's own needs secrets of one's own: say so before starting anything
    except ValueError as e:
        if embedded:
            embedded.stop()
        sys.exit(f"caseflow-suite: {e}")
    intake = f"http://127.0.0.1:{env.setdefault('INTAKE_PORT', '5001')}"
    reporting = f"http://127.0.0.1:{env.setdefault('REPORTING_PORT', '5002')}"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if embedded:
        store_env = {"REDIS_URL": embedded.url, **{name: env[name] for name in DEVELOPMENT_SECRETS}}
        STORE_FILE.write_text("".join(f"export {name}={value}\n" for name, value in store_env.items()))
        STORE_FILE.chmod(0o600)
    children = [_spawn(child, env) for child in CHILDREN]
    print(f"Started {', '.join(c.name for c in CHILDREN)}; their logs are in {LOG_DIR}/", flush=True)

    # A stop signal interrupts start-up wherever it is; once the suite is up, it only says so to the loop below. An
    # exception raised from a handler can land anywhere, and one that landed inside a child's poll, between its
    # taking the child's wait lock and the ``try`` that gives it back, left the lock held: the stop then waited for
    # that child for ever. (Flags, not events: a handler that took a lock the code it interrupted held would wait
    # for itself.)
    up = stop_requested = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        if not up:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        _wait_healthy(intake)
        _wait_healthy(reporting)
        keys = provision_demo_keys(env)
        print(
            f"Demo API keys (coordinator, worker bo, Reden, LivaRehab, evaluator, admin) are in {KEYS_FILE}", flush=True
        )
        if not args.no_demo and demo_loaded(intake, keys["COORDINATOR_KEY"]):
            print("The demo programme is in this Redis already (from an earlier run): left as it is.", flush=True)
        elif not args.no_demo:
            report = load_demo(intake, reporting, keys)
            print("\nDemo loaded. Referrals per partner, from the reporting service:\n", flush=True)
            print(json.dumps(report, indent=2), flush=True)
            citizens = args.demo_citizens if args.demo_citizens is not None else (12 if embedded else 40)
            if citizens:
                threading.Thread(
                    target=_load_synthetic, args=(intake, reporting, keys, citizens, args.demo_seed), daemon=True
                ).start()
        print(
            f"\nThe suite is up: intake {intake}, reporting {reporting}. Try:\n"
            f"  source {KEYS_FILE}\n"
            f"  curl -s -X POST {intake}/referrals -H 'Content-Type: application/json' \\\n"
            '    -H "Authorization: Bearer $REDEN_KEY" \\\n'
            f"    -d '{json.dumps(EXAMPLE_REFERRAL)}'\n"
            f"  curl -s {reporting}/programmes/demo-cph/referrals-per-partner \\\n"
            '    -H "Authorization: Bearer $COORDINATOR_KEY"\n'
            + (f"  (source {STORE_FILE}; {FLASK} --app {STATUS_COMMAND})\n" if embedded else "")
            + "Ctrl-C stops everything.\n",
            flush=True,
        )
        up = True
        while not stop_requested:
            if any(c.poll() is not None for c in children):
                print(f"a child process exited (see {LOG_DIR}/); stopping the suite", file=sys.stderr)
                sys.exit(1)
            time.sleep(0.5)
        print("\nstopping...", flush=True)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        _stop_children(children)
        if embedded:
            embedded.stop()
            STORE_FILE.unlink(missing_ok=True)
