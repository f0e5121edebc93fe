"""Answers from the reporting read models. Each reads a bounded number of counters: never the events."""

from __future__ import annotations

import calendar
import json
from collections import Counter, defaultdict
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

import redis

from services.reporting.calendar_sums import totals_on
from services.reporting.citizens import most_telling, on_day, one_of
from services.reporting.criteria import citizen_on
from services.reporting.projection import (
    DAYS_WAITED,
    SERVED,
    WAITING,
    ReportingProjection,
    cohorts,
    course_deltas,
    course_doc,
    enrolments,
    first_referrals,
    load_deltas,
    measures,
    partners_of,
    phase_deltas,
    programme_doc,
    status_deltas,
    success_deltas,
    waiting,
    waitlist_deltas,
)
from services.reporting.settle import citizen_deltas, citizen_success_deltas, referrals_of, summaries_of
from shared.aggregates import load_identity, programme_stream
from shared.domain.calendar import add_months, months_between
from shared.domain.programme import PHASED_METHODS, Programme, course_dates, programme_from_doc
from shared.events.envelope import today as danish_today
from shared.eventstore import EventStore
from shared.projections import active_namespace
from shared.redis_values import as_text

STATUSES = ("referred", "in_assessment", "enrolled", "closed", "declined", "withdrawn", "referred_on")
DANISH = {
    "referred": "henvendelse",
    "in_assessment": "i afklaring",
    "enrolled": "indskrevet",
    "closed": "afsluttet",
    "declined": "afvist",
    "withdrawn": "trukket tilbage",
    "referred_on": "henvist videre",
}
COUNTERS = ("referrals", "accepted", "declined", "withdrawn", "referred_on", "enrolled")
OUTCOMES = ("accepted", "declined", "withdrawn", "referred_on")  # a referral's outcome, once it has one


def truncation_cutoff(programme: Programme) -> date:
    """The last enrolment day whose full course still ends by the funding end; later enrolments are cut short."""
    cutoff = add_months(programme.funding_end, -programme.course_months)
    while add_months(cutoff + timedelta(days=1), programme.course_months) <= programme.funding_end:
        cutoff += timedelta(days=1)
    while add_months(cutoff, programme.course_months) > programme.funding_end:
        cutoff -= timedelta(days=1)
    return cutoff


class Reports:
    def __init__(self, connection: redis.Redis, prefix: str, store: EventStore | None = None) -> None:
        self.redis = connection
        self.ns = active_namespace(connection, prefix, ReportingProjection())
        self.store = store  # to read which records coordinators confirmed are one person (the log's identity stream)

    def key(self, name: str) -> str:
        return f"{self.ns}:{name}"

    def _hash(self, name: str) -> dict[str, int]:
        return {as_text(k): int(v) for k, v in self.redis.hgetall(self.key(name)).items()}

    def status_on(
        self, programme_id: str, day: date, partner: str | None = None, method: str | None = None
    ) -> dict[str, Any]:
        """How many were referred, in assessment, enrolled, closed (by reason), declined... on a date."""
        family = family_of(partner, method)
        cutoff = day.isoformat()
        [totals] = totals_on(self.redis, self.key, status_deltas(programme_id, family), [day])
        by_reason = {s.split(":", 1)[1]: n for s, n in sorted(totals.items()) if s.startswith("closed:") and n}
        counts = {s: totals.get(s, 0) for s in STATUSES if s != "closed"} | {"closed": sum(by_reason.values())}
        citizens = by_status = None
        if not method:  # methods are a property of courses, not of citizens
            referred = self.key(first_referrals(programme_id, family))
            groups = self._merged(programme_id)
            citizens = int(self.redis.zcount(referred, "-inf", day.toordinal())) - sum(
                1 for later in self._merged_later(referred, groups) if later <= day.toordinal()
            )
            [settled] = totals_on(self.redis, self.key, citizen_deltas(programme_id, family), [day])
            people = Counter(totals)  # the referrals' counts, each citizen's correction added
            people.update(settled)
            people.update(self._one_person_each(programme_id, groups, family, cutoff))
            by_status = {s: people.get(s, 0) for s in STATUSES if s != "closed"} | {
                "closed": sum(n for s, n in people.items() if s.startswith("closed:"))
            }
        return {
            "programme_id": programme_id,
            "on": cutoff,
            "filter": {"partner": partner, "method": method},
            "counts": {s: counts[s] for s in STATUSES},
            "closed_by_reason": by_reason,
            "distinct_citizens": citizens,
            "citizens": {s: by_status[s] for s in STATUSES} if by_status is not None else None,
            "labels_da": DANISH,
        }

    def _merged(self, programme_id: str) -> list[set[str]]:
        """The groups of records that a coordinator confirmed are one person (read from the log)."""
        return load_identity(self.store, programme_id).merged() if self.store is not None else []

    def _merged_later(self, referred: str, groups: list[set[str]]) -> list[int]:
        """The first-referral days (ordinals) of the records that a coordinator confirmed are the same person as a
        record referred earlier: each counted as a citizen of its own in ``referred``, and not one."""
        if not groups:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for group in groups:
            pipe.zmscore(referred, sorted(group))
        return [int(s) for scores in pipe.execute() for s in sorted(s for s in scores if s is not None)[1:]]

    def _one_person_each(self, programme_id: str, groups: list[set[str]], family: str, day: str) -> dict[str, int]:
        """Records confirmed as one person, counted once: each record is counted by its own most telling referral
        (the settled counts), the person by the most telling of those."""
        records = sorted(set().union(*groups)) if groups else []
        cases = referrals_of(self.redis, self.ns, programme_id, records)
        courses = summaries_of(self.redis, self.ns, [c for r in records for c in cases[r]])
        change = Counter[str]()
        for group in groups:
            each = [on_day([courses[c] for c in cases[r] if c in courses], family, day) for r in sorted(group)]
            change.update(one_of([most_telling(counted) for counted in each if counted]))
        return dict(change)

    def _one_person_criteria(self, programme_id: str, family: str, day: str) -> Counter[str]:
        """Records confirmed as one person, counted once in the success criteria: each record counts over its own
        courses (the settled counts), the person over all of theirs."""
        groups = self._merged(programme_id)
        records = sorted(set().union(*groups)) if groups else []
        cases = referrals_of(self.redis, self.ns, programme_id, records)
        summaries = summaries_of(self.redis, self.ns, [c for r in records for c in cases[r]])
        change = Counter[str]()
        for group in groups:
            each = [
                [dict(s.criteria) for c in cases[r] if (s := summaries.get(c)) and family in s.families]
                for r in sorted(group)
            ]
            counted = [found for courses in each if (found := citizen_on(courses, day))]
            if len(counted) < 2:
                continue
            change.update(citizen_on([course for courses in each for course in courses], day))
            for found in counted:
                change.subtract(found)
        return change

    def _new_citizens(self, programme_id: str, family: str, months: list[str]) -> dict[str, int]:
        """Per month, the citizens first referred in it (in the family: a citizen new to a partner is new to it)."""
        referred = self.key(first_referrals(programme_id, family))
        bounds = [(date.fromisoformat(f"{m}-01").toordinal(), _month_end(m).toordinal()) for m in months]
        pipe = self.redis.pipeline(transaction=False)
        for first, last in bounds:
            pipe.zcount(referred, first, last)
        counts = dict(zip(months, pipe.execute(), strict=True))
        for later in self._merged_later(referred, self._merged(programme_id)):
            month = date.fromordinal(later).isoformat()[:7]
            if month in counts:
                counts[month] -= 1
        return counts

    def has_programme(self, programme_id: str) -> bool:
        """Whether the log holds the programme (the read model may not have projected it yet: its reports are
        then zeros, flagged as not caught up)."""
        if self.store is not None:
            return self.store.stream_version(programme_stream(programme_id)) > 0
        return bool(self.redis.exists(self.key(programme_doc(programme_id))))

    def programme(self, programme_id: str) -> Programme:
        raw = self.redis.get(self.key(programme_doc(programme_id)))
        if raw is None:
            raise LookupError(programme_id)
        return programme_from_doc(json.loads(raw))

    def caseloads(self, programme_id: str, day: date, months: list[str]) -> dict[str, Any]:
        """Each worker's caseload and capacity use on a day, month by month; waitlist length and waiting time."""
        programme = self.programme(programme_id)
        month_ends = [min(_month_end(month), day) for month in months]
        loads, *at_ends = totals_on(self.redis, self.key, load_deltas(programme_id), [day, *month_ends])
        workers = []
        for worker_id in sorted(programme.workers):
            capacity = programme.capacity_of(worker_id)
            load = loads.get(worker_id, 0)
            workers.append(
                {"worker_id": worker_id, "load": load, "capacity": capacity, "capacity_use": round(load / capacity, 2)}
            )
        over_time = []
        for month, at_end in zip(months, at_ends, strict=True):
            over_time.append({"month": month, "loads": {w: at_end.get(w, 0) for w in sorted(programme.workers)}})
        [waitlist] = totals_on(self.redis, self.key, waitlist_deltas(programme_id), [day])
        served = waitlist.get(SERVED, 0)
        return {
            "programme_id": programme_id,
            "on": day.isoformat(),
            "workers": workers,
            "waitlist": waitlist.get(WAITING, 0),
            "served_from_waitlist": served,
            "average_wait_days": round(waitlist.get(DAYS_WAITED, 0) / served, 1) if served else None,
            "over_time": over_time,
        }

    def courses(self, programme_id: str, day: date) -> dict[str, Any]:
        """Courses per method against the programme's targets on a day: completion, length, truncation, early
        discharges, and the phase each course was in."""
        programme = self.programme(programme_id)
        [counters] = totals_on(self.redis, self.key, course_deltas(programme_id), [day])
        [reached] = totals_on(self.redis, self.key, phase_deltas(programme_id), [day])  # courses in each phase
        cutoff, until = truncation_cutoff(programme).toordinal(), day.toordinal()
        targets = dict(programme.targets)
        rows = []
        for method in programme.methods:
            key = self.key(enrolments(programme_id, method))
            enrolled = int(self.redis.zcount(key, "-inf", until))
            closed = counters.get(f"{method}|closed", 0)
            completed = counters.get(f"{method}|completed", 0)
            rows.append(
                {
                    "method": method,
                    "target": targets.get(method),
                    "enrolled": enrolled,
                    "share_of_target": round(enrolled / targets[method], 2) if targets.get(method) else None,
                    "active": enrolled - closed,
                    "closed": closed,
                    "completed": completed,
                    "completion_rate": round(completed / closed, 2) if closed else None,
                    "truncated_by_funding_end": int(self.redis.zcount(key, f"({cutoff}", until)),
                    "average_length_days": round(counters.get(f"{method}|closed_days", 0) / closed, 1)
                    if closed
                    else None,
                    "early_discharges": counters.get(f"{method}|early_discharges", 0),
                }
            )
        return {
            "programme_id": programme_id,
            "on": day.isoformat(),
            "planned_months": programme.course_months,
            "funding_end": programme.funding_end.isoformat(),
            "by_method": rows,
            "phase_reached": {phase: reached.get(phase, 0) for phase in programme.phase_names()},
        }

    def measures(self, programme_id: str, partner: str | None = None, method: str | None = None) -> dict[str, Any]:
        """Per area: mean first and latest score, share improved (of the courses measured again), stages of the
        latest; WHO-5; goals per area."""
        programme = self.programme(programme_id)
        m = self._hash(measures(programme_id, family_of(partner, method)))
        areas = []
        for area in programme.scale_areas:
            n = m.get(f"star|{area}|n", 0)
            stages = dict.fromkeys(STAGES, 0)
            for score in range(programme.scale_min, programme.scale_max + 1):
                stages[stage_of(score, programme.scale_min, programme.scale_max)] += m.get(f"latest|{area}|{score}", 0)
            areas.append(
                {
                    "area": area,
                    "courses": n,
                    "mean_first": _mean(m.get(f"star|{area}|first_sum", 0), n),
                    "mean_latest": _mean(m.get(f"star|{area}|latest_sum", 0), n),
                    "courses_measured_again": m.get(f"star|{area}|again", 0),
                    "share_improved": _share(m.get(f"star|{area}|improved", 0), m.get(f"star|{area}|again", 0)),
                    "stages_latest": stages,
                }
            )
        n = m.get("who5|n", 0)
        who5 = {
            "courses": n,
            "mean_first": _mean(m.get("who5|first_sum", 0), n),
            "mean_latest": _mean(m.get("who5|latest_sum", 0), n),
            "share_latest_at_most_50": _share(m.get("who5|le50", 0), n),
            "share_latest_at_most_28": _share(m.get("who5|le28", 0), n),
            "courses_measured_again": m.get("who5|again", 0),
            "share_changed_10_or_more": _share(m.get("who5|changed10", 0), m.get("who5|again", 0)),
            "share_improved_10_or_more": _share(m.get("who5|improved10", 0), m.get("who5|again", 0)),
        }
        goal_areas = sorted({f.split("|")[1] for f in m if f.startswith("goal|")})
        goals = [
            {"life_area": a} | {o: m.get(f"goal|{a}|{o}", 0) for o in ("set", "achieved", "dropped")}
            for a in goal_areas
        ]
        return {
            "programme_id": programme_id,
            "filter": {"partner": partner, "method": method},
            "scale": {"min": programme.scale_min, "max": programme.scale_max},
            "areas": areas,
            "who5": who5,
            "goals": goals,
        }

    def success_criteria(
        self, programme_id: str, day: date, partner: str | None = None, method: str | None = None
    ) -> dict[str, Any]:
        """The Ballerup agreement's criteria on a day, each with numerator, denominator, percentage and target.
        A citizen counts once over all their courses (``criteria.citizen_on``): each course's counts, each
        citizen's settled correction, and records confirmed as one person joined here."""
        family = family_of(partner, method)
        sums = (success_deltas(programme_id, family), citizen_success_deltas(programme_id, family))
        [courses_and_settled] = totals_on(self.redis, self.key, sums, [day])
        counts = Counter(courses_and_settled)
        counts.update(self._one_person_criteria(programme_id, family, day.isoformat()))
        rows = []
        for criterion, description, numerator, denominator, target in SUCCESS_CRITERIA:
            n, d = counts.get(numerator, 0), counts.get(denominator, 0)
            percentage = round(100 * n / d, 1) if d else None
            rows.append(
                {
                    "criterion": criterion,
                    "description": description,
                    "numerator": n,
                    "denominator": d,
                    "percentage": percentage,
                    "target_percentage": target,
                    "met": None if percentage is None else percentage >= target,
                }
            )
        return {
            "programme_id": programme_id,
            "on": day.isoformat(),
            "filter": {"partner": partner, "method": method},
            "criteria": rows,
        }

    def fidelity(self, programme_id: str, today: date) -> dict[str, Any]:
        """CTI fidelity from recorded contacts, per CTI course and per relation worker (ICM and ACT courses are
        not CTI, so they are not rated against it)."""
        programme = self.programme(programme_id)
        raw = self.redis.get(self.key(waiting(programme_id)))
        worked_with: dict[str, list[str]] = json.loads(raw)["worked_with"] if raw else {}
        workers = []
        for worker_id in sorted(programme.workers):
            case_ids = sorted(set(worked_with.get(worker_id, [])))
            docs = self.redis.mget([self.key(course_doc(c)) for c in case_ids]) if case_ids else []
            enrolled = [(c, json.loads(d)) for c, d in zip(case_ids, docs, strict=True) if d is not None]
            rows = [
                {"case_id": c} | course_fidelity(doc, programme, today)
                for c, doc in enrolled
                if doc.get("method") in PHASED_METHODS
                and doc.get("enrolled_on")
                and doc["enrolled_on"] <= today.isoformat()  # courses begun by then
            ]
            if not rows and programme.workers[worker_id].method not in PHASED_METHODS:
                continue  # an ICM or ACT worker with no CTI course
            summary = {
                k: _share(
                    sum(1 for r in rows if r["criteria"][k]), sum(1 for r in rows if r["criteria"][k] is not None)
                )
                for k in FIDELITY_CRITERIA
            }
            workers.append({"worker_id": worker_id, "courses": rows, "share_meeting": summary})
        return {
            "programme_id": programme_id,
            "on": today.isoformat(),
            "equal_phases": len({p.months for p in programme.phases if p.name != "pre_cti"}) == 1,
            "workers": workers,
        }

    def status_report(self, programme_id: str, day: date) -> dict[str, Any]:
        """The ministry's status report: distinct users and how they were counted, courses, goals reached."""
        status = self.status_on(programme_id, day)
        return {
            "programme_id": programme_id,
            "on": day.isoformat(),
            "users": {
                "distinct_citizens": status["distinct_citizens"],
                "by_status": status["citizens"],
                "referrals_by_status": status["counts"],
                "how_counted": (
                    "Every contact (henvendelse) is registered. Citizens are counted once each: referrals with the "
                    "same CPR number are one citizen; without a CPR number each referral is its own citizen "
                    "unless a coordinator confirmed a match. A citizen's status on the report date is that of "
                    "their referral: of a citizen with several, an open referral before an ended one (indskrevet, "
                    "then i afklaring, then henvendelse), else the one that ended last."
                ),
            },
            "courses": self.courses(programme_id, day)["by_method"],
            "success_criteria": self.success_criteria(programme_id, day)["criteria"],
            "labels_da": DANISH,
        }

    def _cohorts(self, programme_id: str, start: str | None, end: str | None) -> list[tuple[str, str, str, int]]:
        rows = []
        for field, value in self._hash(cohorts(programme_id)).items():
            partner, month, counter = field.split("|")
            if (start is None or month >= start) and (end is None or month <= end):
                rows.append((partner, month, counter, value))
        return rows

    def intake(
        self, programme_id: str, start: str | None, end: str | None, partner: str | None = None
    ) -> dict[str, Any]:
        """Referrals per month (by referral date) and the average per month over the period: by default from
        the first month of recruitment (or an earlier referral) to its last month, or this month while it lasts
        (or a later referral), counting the months without a referral too. Beside them the citizens new that
        month ("2 citizens a month", DOMAIN.md): one referred by two partners, or again, or a record confirmed
        as the same person as one referred before, is new once."""
        programme = self.programme(programme_id)
        per_month: dict[str, int] = defaultdict(int)
        for who, month, counter, value in self._cohorts(programme_id, start, end):
            if counter == "referrals" and (partner is None or who == partner):
                per_month[month] += value
        recruiting_until = min(danish_today(), programme.recruitment_end).isoformat()[:7]
        earliest = min([programme.recruitment_start.isoformat()[:7], *per_month])
        months = period_months(start, end, earliest, max([recruiting_until, *per_month]))
        total = sum(per_month.values())
        citizens = self._new_citizens(programme_id, family_of(partner, None), months)
        return {
            "programme_id": programme_id,
            "filter": {"partner": partner, "from": months[0], "to": months[-1]},
            "months": [{"month": m, "referrals": per_month.get(m, 0), "new_citizens": citizens[m]} for m in months],
            "total": total,
            "average_per_month": round(total / len(months), 2) if months else 0,
            "new_citizens": sum(citizens.values()),
            "average_new_citizens_per_month": round(sum(citizens.values()) / len(months), 2) if months else 0,
        }

    def referrals_per_partner(
        self, programme_id: str, start: str | None = None, end: str | None = None, only_partner: str | None = None
    ) -> dict[str, Any]:
        """Each partner's referrals in the period and what became of them; days from referral to enrolment."""
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for partner, _, counter, value in self._cohorts(programme_id, start, end):
            sums[partner][counter] += value
        partners = sorted(as_text(m) for m in self.redis.smembers(self.key(partners_of(programme_id))))
        if only_partner is not None:
            partners = [p for p in partners if p == only_partner]
        rows = [_partner_row(p, sums[p]) for p in partners]
        total = _partner_row("all", {c: sum(sums[p][c] for p in partners) for c in (*COUNTERS, "days_to_enrolment")})
        return {
            "programme_id": programme_id,
            "filter": {"from": start, "to": end},
            "partners": rows,
            "total": {k: v for k, v in total.items() if k != "partner"},
        }


COURSE_FIGURES = ("enrolled", "average_days_to_enrolment")  # what became of an accepted referral: staff only


def outcomes_only(report: dict[str, Any]) -> dict[str, Any]:
    """A referring partner's view: whether its referrals were accepted, declined, withdrawn or referred on, and
    not what followed (an enrolment and when, for one referral in a month, is the citizen's course)."""
    rows = [{k: v for k, v in row.items() if k not in COURSE_FIGURES} for row in report["partners"]]
    total = {k: v for k, v in report["total"].items() if k not in COURSE_FIGURES}
    return report | {"partners": rows, "total": total}


def _partner_row(partner: str, counts: dict[str, int]) -> dict[str, Any]:
    """Each referral has one outcome now: pending, accepted, declined, withdrawn or referred on, which add up to the
    referrals; enrolled is a part of the accepted."""
    enrolled = counts.get("enrolled", 0)
    average = round(counts.get("days_to_enrolment", 0) / enrolled, 1) if enrolled else None
    row = {c: counts.get(c, 0) for c in COUNTERS}
    pending = row["referrals"] - sum(row[c] for c in OUTCOMES)
    return (
        {"partner": partner, "referrals": row["referrals"], "pending": pending}
        | row
        | {"average_days_to_enrolment": average}
    )


SUCCESS_CRITERIA = (
    (
        "housing_under_18",
        "suitable housing found: target group under 18",
        "housing|under_18|housed",
        "housing|under_18|n",
        100,
    ),
    ("housing_18_24", "suitable housing found: target group 18-24", "housing|18_24|housed", "housing|18_24|n", 90),
    (
        "still_housed",
        "still in permanent housing (latest situation) among those who moved into it",
        "kept|still",
        "kept|n",
        90,
    ),
    ("cti_or_icm", "received CTI or ICM among those who moved into permanent housing", "kept|cti_icm", "kept|n", 100),
    (
        "addiction_treatment",
        "in addiction treatment among those with an addiction (a treatment status recorded)",
        "addiction|in_treatment",
        "addiction|n",
        75,
    ),
    (
        "education_ready",
        "activity-ready to education-ready within one year (of the courses whose year is over, or that closed)",
        "jobcentre|education_ready",
        "jobcentre|n",
        20,
    ),
)
FIDELITY_CRITERIA = (
    "contact_falls_phase_by_phase",
    "community_meetings_phase_1",
    "supports_phase_1",
    "contacts_first_month",
    "within_9_months",
    "within_programme_length",
    "no_early_discharge",
)
SUPPORTS = ("provider_meeting", "informal_support_meeting")


PHASE_1_CRITERIA = ("community_meetings_phase_1", "supports_phase_1", "contacts_first_month", "within_9_months")


def course_fidelity(doc: dict[str, Any], programme: Programme, today: date) -> dict[str, Any]:
    """One course against the CTI self-assessment: contacts per phase (per 30 days) falling phase by phase,
    >= 3 community meetings and >= 2 with providers or informal supports in phase 1, >= 2 contacts in the
    first month, no longer than 9 months (and the programme's length), no discharge before the course ends."""
    enrolled = date.fromisoformat(doc["enrolled_on"])
    planned_end = course_dates(programme, enrolled).planned_end
    # As the course was on ``today``: what happened later (a closure, contacts, phase moves) is not counted.
    closed = date.fromisoformat(doc["closed_on"]) if doc.get("closed_on") else None
    closed = closed if closed and closed <= today else None
    end = closed or min(today, planned_end)
    phases = [(day, phase) for on, phase, *_ in doc.get("phases", []) if (day := date.fromisoformat(on)) <= today]
    contacts = [(day, kind) for on, kind in doc.get("contacts", []) if (day := date.fromisoformat(on)) <= today]
    spans = [
        (phase, start, phases[i + 1][0] if i + 1 < len(phases) else end) for i, (start, phase) in enumerate(phases)
    ]
    per_phase = []
    for phase, start, stop in spans:
        n = sum(1 for on, _ in contacts if start <= on < stop or (stop == end and on == end and start <= on))
        per_phase.append(
            {
                "phase": phase,
                "contacts": n,
                "days": (stop - start).days,
                "per_30_days": round(30 * n / max((stop - start).days, 1), 2),
            }
        )
    # CTI proper starts with phase 1: a contact-building period before it (pre-CTI) is neither in the fall of
    # contact from phase to phase nor in the 9 months and the first month, which count from phase 1's start.
    rates = [p["per_30_days"] for p in per_phase if p["phase"] != "pre_cti"]
    phase_1 = next((s for s in spans if s[0] == "phase_1"), None)
    in_pre_cti = phase_1 is None and bool(spans) and spans[-1][0] == "pre_cti"
    first = phase_1 or (spans[0] if spans and not in_pre_cti else None)
    in_phase_1 = [kind for on, kind in contacts if first and first[1] <= on < first[2]]
    cti_start = first[1] if first else enrolled
    closed_or_planned = closed or planned_end
    length = months_between(enrolled, closed_or_planned)
    phase_1_ends = _phase_1_ends(programme, first, spans, planned_end)

    def judged(met: bool, window_ends: date) -> bool | None:
        """Not met while its window is still open on ``today`` (and the course not closed) is pending, not failed."""
        return True if met else None if closed is None and today < window_ends else False

    criteria = {
        "contact_falls_phase_by_phase": all(a >= b for a, b in pairwise(rates)) if len(rates) > 1 else None,
        "community_meetings_phase_1": judged(in_phase_1.count("community_meeting") >= 3, phase_1_ends),
        "supports_phase_1": judged(sum(in_phase_1.count(k) for k in SUPPORTS) >= 2, phase_1_ends),
        "contacts_first_month": judged(
            sum(1 for on, _ in contacts if cti_start <= on < add_months(cti_start, 1)) >= 2,
            add_months(cti_start, 1),
        ),
        "within_9_months": months_between(cti_start, closed_or_planned) <= 9,
        "within_programme_length": length <= programme.course_months,
        "no_early_discharge": not (closed and doc.get("discharged_early")),
    }
    if in_pre_cti:  # CTI proper has not begun (or never did, if the course closed): nothing from phase 1 to judge
        criteria |= dict.fromkeys(PHASE_1_CRITERIA)
    return {"enrolled_on": doc["enrolled_on"], "contacts_per_phase": per_phase, "criteria": criteria}


def _phase_1_ends(
    programme: Programme, first: tuple[str, date, date] | None, spans: list[tuple[str, date, date]], planned_end: date
) -> date:
    """When phase 1 ends: the next phase's start once the course moved on, else the plan's (its start and the
    programme's months for it), and the course's planned end while phase 1 has not begun."""
    if first is None or first[0] != "phase_1":
        return planned_end
    if first is not spans[-1]:
        return first[2]
    months = next((p.months for p in programme.phases if p.name == "phase_1"), 0)
    return min(add_months(first[1], months), planned_end)


STAGES = ("stuck", "accepting_help", "believing", "learning", "self_reliance")  # the five-stage journey of change


def stage_of(score: int, low: int, high: int) -> str:
    """A score's stage on the programme's scale: five equal bands (1-2, 3-4, ... on the 1-10 default)."""
    return STAGES[min(4, (score - low) * 5 // (high - low + 1))]


def family_of(partner: str | None, method: str | None) -> str:
    return f"partner:{partner}" if partner else f"method:{method}" if method else "all"


def _mean(total: int, n: int) -> float | None:
    return round(total / n, 2) if n else None


def _share(count: int, n: int) -> float | None:
    return round(count / n, 2) if n else None


def _month_end(month: str) -> date:
    year, number = int(month[:4]), int(month[5:7])
    return date(year, number, calendar.monthrange(year, number)[1])


def period_months(start: str | None, end: str | None, earliest: str, latest: str) -> list[str]:
    """The months of a period asked for by ``from`` and ``to`` (``to`` not before ``from``), either left out: then
    the default's bound, but never past the one given (from a month after the default's last, or to one before its
    first, is that month, not no month at all)."""
    first = start or (min(earliest, end) if end else earliest)
    return month_range(first, end or max(latest, first))


def month_range(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    months = []
    while f"{year:04d}-{month:02d}" <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months
