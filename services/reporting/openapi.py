"""The reporting API as an OpenAPI 3 document (GETs with query parameters), served at /openapi.json."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask

DATE = {"type": "string", "format": "date"}
MONTH = {"type": "string", "pattern": r"^\d{4}-\d{2}$"}
TEXT = {"type": "string"}
QUERY: dict[str, dict[str, dict[str, Any]]] = {  # endpoint -> its query parameters
    "reports.status": {"on": DATE, "partner": TEXT, "method": TEXT},
    "reports.intake": {"from": MONTH, "to": MONTH, "partner": TEXT},
    "reports.caseloads": {"on": DATE, "from": MONTH, "to": MONTH},
    "reports.measures": {"partner": TEXT, "method": TEXT},
    "reports.courses": {"on": DATE},
    "reports.success_criteria": {"on": DATE, "partner": TEXT, "method": TEXT},
    "reports.fidelity": {"on": DATE},
    "reports.status_report": {"on": DATE, "format": {"type": "string", "enum": ["json", "html"]}},
    "reports.dashboard": {"on": DATE},
    "reports.get_referrals_per_partner": {"from": MONTH, "to": MONTH},
}
# What a 200 is, where it is not JSON: the export's CSV, the pages for a person at a browser.
CONTENT: dict[str, list[str]] = {
    "reports.export": ["text/csv"],
    "reports.status_report": ["application/json", "text/html"],
    "reports.dashboard": ["text/html"],
    "reports.login": ["text/html"],
}
_ANY = re.compile(r"<any\(([^)]*)\):(\w+)>")
_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def openapi(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    error = {
        "description": "refused",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in ("/openapi.json", "/metrics") or "GET" not in (rule.methods or ()):
            continue
        match = _ANY.search(rule.rule)
        choices = [c.strip().strip("\"'") for c in match.group(1).split(",")] if match else [None]
        for choice in choices:
            raw = rule.rule[: match.start()] + str(choice) + rule.rule[match.end() :] if match else rule.rule
            path = _PARAM.sub(r"{\1}", raw)
            params = [{"name": n, "in": "path", "required": True, "schema": TEXT} for n in re.findall(r"{(\w+)}", path)]
            params += [
                {"name": n, "in": "query", "required": False, "schema": s}
                for n, s in QUERY.get(rule.endpoint, {}).items()
            ]
            paths[path] = {
                "get": {
                    "operationId": f"{rule.endpoint}:{path}",
                    "parameters": params,
                    "security": [{"apiKey": []}],
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {t: {} for t in CONTENT.get(rule.endpoint, ["application/json"])},
                        },
                        "302": {"description": "sign in"},
                        "4XX": error,
                    },
                }
            }
    paths["/login"]["post"] = {  # the sign-in form: a person at a browser gets the form back, not JSON
        "operationId": "reports.login:POST",
        "requestBody": {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"api_key": TEXT, "next": TEXT}}
                }
            }
        },
        "responses": {
            "302": {"description": "signed in"},
            "401": {"description": "the sign-in form again", "content": {"text/html": {}}},
        },
    }
    paths["/logout"] = {
        "post": {
            "operationId": "reports.logout:POST",
            "description": "Sign out of the pages: the session cookie is emptied (the key stays valid).",
            "responses": {"302": {"description": "to the sign-in form"}},
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "caseflow reporting", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": TEXT, "message": TEXT, "fields": {"type": "object"}},
                        }
                    },
                }
            },
        },
    }
