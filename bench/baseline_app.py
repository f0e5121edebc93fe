"""The baseline for the intake benchmark: a bare Flask endpoint that does one Redis round trip and nothing else."""

from __future__ import annotations

import os

import redis
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue

app = Flask("baseline")
connection = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.post("/referrals")
def referral() -> ResponseReturnValue:
    return jsonify(position=connection.incr("baseline:counter")), 201
