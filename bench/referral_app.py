"""For the intake benchmark: a referral's work without its HTTP interface, between the baseline and intake.

The route calls the same ``Intake.refer`` that ``POST /referrals`` calls (a new citizen's key and the sealed
alias, the domain's event, the one-round-trip append that read-checks the programme and sets the nudges),
for a fixed referral like the benchmark's body, and answers the case id. Left out is what only the HTTP
interface does: the key's authentication, the request's validation, and the course view as the answer. Where
this lands between the baseline and intake says how much of intake's distance from the baseline is the store
and the domain, and how much the handling of the request.
"""

from __future__ import annotations

import os
import uuid
from datetime import date

import redis
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

from services.intake.service import Context, Intake, Referral
from shared.bootstrap import event_store
from shared.config import Settings
from shared.vault import Vault

app = Flask("referral-without-http")
settings = Settings.from_env()  # as intake under gunicorn: REDIS_URL and the rest from the environment
connection = redis.Redis.from_url(settings.redis_url)
vault = Vault(connection, settings.key_prefix, settings.master_key)
intake = Intake(event_store(connection, settings), settings.key_prefix, vault, settings.cpr_hmac_secret)
REFERRAL = Referral(
    programme_id=os.environ.get("BENCH_PROGRAMME", "demo-cph"),
    source=os.environ.get("BENCH_PARTNER", "kk-socialforvaltning"),
    consent_given=True,
    alias="Maja",
    cpr=None,
    birth_date=None,
)


@app.post("/referrals")
def referral() -> ResponseReturnValue:
    with vault.remembering():
        result = intake.refer(Context("bench", uuid.uuid4().hex), date(2016, 1, 15), REFERRAL)
    return jsonify(case_id=result.stream_id), 201
