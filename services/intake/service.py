"""Intake's command handlers: load what a decision needs, let the domain decide, append atomically, nudge.

Flask-free, so the same handlers serve HTTP and tests. A handler that loses a
race (``WrongExpectedVersion``) decides again on fresh state; after a few
lost races it gives up and the caller gets 409.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from shared.aggregates import (
    Folds,
    NotFound,
    case_fold,
    caseload_fold,
    erased_records,
    fold_of,
    found,
    programme_fold,
    programme_stream,
)
from shared.domain import events as ev
from shared.domain.access import Authority
from shared.domain.case import Case, Invalid, Refused, decide_reopen, earliest_closure, require_within_funding
from shared.domain.caseload import (
    Caseload,
    caseload_stream,
    decide_release,
    decide_wait_on_enrolment,
    last_assignment_change,
)
from shared.domain.cpr import Cpr, age_band, cpr_fingerprint, match_key
from shared.domain.programme import Programme
from shared.events import DomainEvent, NewEvent
from shared.events.envelope import start_of_day
from shared.eventstore import (
    ANY_VERSION,
    Alongside,
    AppendResult,
    EventStore,
    IdempotencyKey,
    StreamWrite,
    WrongExpectedVersion,
)
from shared.ids import random_hex
from shared.metrics import EVENTS
from shared.nudges import NUDGE_FLAG_TTL_S, enqueue_nudges, enqueue_offers, nudge_flags
from shared.vault import Vault

ATTEMPTS = 3


def cpr_stream(fingerprint: str) -> str:
    return f"cpr-{fingerprint}"


def course_streams(programme_id: str) -> tuple[str, str]:
    """Besides its own stream, what a case's status view is folded from."""
    return programme_stream(programme_id), caseload_stream(programme_id)


def new_case_id() -> str:
    return f"case-{random_hex()}"


@dataclass(frozen=True)
class Context:
    """Who acts, under which request, and the client's idempotency key if it sent one."""

    actor: str
    request_id: str
    idempotency: IdempotencyKey | None = None
    authority: Authority | None = None  # the caller's key as last seen, for the append to read-check


class AuthorityChanged(Exception):
    """The caller's partner changed since this process last saw it: authenticate afresh (not a retry here:
    the key itself may be gone)."""


@dataclass(frozen=True)
class Write:
    stream_id: str
    events: Sequence[DomainEvent]
    expected_version: int


@dataclass(frozen=True)
class Referral:
    """A referral as the caller sent it: personal data still in clear, sealed by ``Intake.refer``."""

    programme_id: str
    source: str
    consent_given: bool
    alias: str | None
    cpr: Cpr | None
    birth_date: date | None


def new_citizen_id() -> str:
    return f"citizen-{random_hex()}"


class Intake:
    def __init__(self, store: EventStore, prefix: str, vault: Vault, secret: bytes) -> None:
        self.store = store
        self.prefix = prefix
        self.vault = vault
        self.secret = secret  # for CPR fingerprints and match keys
        self.folds = Folds(store)

    # -- loading: the aggregates a decision needs, as the log has them now --------------------------

    def case(self, case_id: str, at: AppendResult | None = None) -> Case:
        """The case now, or as the append ``at`` left it (see ``Folds.current``)."""
        case: Case | None = self.folds.current(case_fold(case_id), at=at)[0]
        return found(case, "no such case")

    def programme(self, programme_id: str) -> Programme:
        programme: Programme | None = self.folds.current(programme_fold(programme_id))[0]
        return found(programme, "no such programme")

    def caseload(self, programme_id: str) -> Caseload:
        caseload: Caseload = self.folds.current(caseload_fold(programme_id))[0]
        return caseload

    def course(self, case_id: str, at: AppendResult | None = None) -> tuple[Case, Programme, Caseload]:
        """A case with its programme and caseload: one round trip when this process has seen the case before
        (a case never changes programme), two otherwise; none as the append ``at`` left them, when it wrote,
        read-checked or observed all three (see ``course_streams``) and this process holds them."""
        _, seen = self.folds.held(case_fold(case_id))
        if seen is None:
            raise NotFound("no such case")
        case, programme, caseload = self.folds.current(
            case_fold(case_id), programme_fold(seen.programme_id), caseload_fold(seen.programme_id), at=at
        )
        return found(case, "no such case"), found(programme, "no such programme"), caseload

    # -- writing ----------------------------------------------------------------------------------

    def write(
        self,
        ctx: Context,
        on: date,
        writes: Sequence[Write],
        offers_for: str | None = None,
        course_of: str | None = None,
        alongside: Sequence[Alongside] = (),
    ) -> AppendResult:
        """Append; the projections' nudge flags are set by the append itself, and a job is enqueued for each
        flag it set (none when a job is already waiting, as nearly always under load). ``course_of``: the
        programme of the case written, whose streams the append reports (``course_streams``), so the answer
        needs no read. ``alongside``: commands sent in the append's round trip (see ``append_many``)."""
        at = start_of_day(on)
        written = {w.stream_id for w in writes}
        observe = [s for s in course_streams(course_of) if s not in written] if course_of else []
        if ctx.authority is not None and ctx.authority.stream_id not in written:
            writes = [*writes, Write(ctx.authority.stream_id, [], ctx.authority.version)]
        flags = nudge_flags(self.prefix, self.store.partitions, [w.stream_id for w in writes if w.events])
        try:
            result = self._append(ctx, at, writes, list(flags), observe, alongside)
        except WrongExpectedVersion as lost:
            if ctx.authority is not None and lost.stream_id == ctx.authority.stream_id:
                raise AuthorityChanged(lost.stream_id) from None
            raise
        enqueue_nudges(self.store.redis, self.prefix, [flags[flag] for flag in result.flags_set], ctx.request_id)
        if not result.duplicate:
            for write in writes:
                if write.events and (fold := fold_of(write.stream_id)) is not None:
                    self.folds.appended(fold, write.expected_version, write.events, on)
                for event in write.events:
                    EVENTS.labels(type(event).__name__).inc()
        if offers_for and not result.duplicate:
            enqueue_offers(self.store.redis, self.prefix, offers_for)
        return result

    def _append(
        self,
        ctx: Context,
        at: datetime,
        writes: Sequence[Write],
        flags: Sequence[str],
        observe: Sequence[str],
        alongside: Sequence[Alongside],
    ) -> AppendResult:
        return self.store.append_many(
            [
                StreamWrite(
                    w.stream_id,
                    [
                        NewEvent(w.stream_id, e, at, ctx.actor, metadata={"request_id": ctx.request_id})
                        for e in w.events
                    ],
                    w.expected_version,
                )
                for w in writes
            ],
            idempotency=ctx.idempotency,
            flags=flags,
            flag_ttl_s=NUDGE_FLAG_TTL_S,
            observe=observe,
            alongside=alongside,
        )

    def retrying(self, ctx: Context, attempt: Callable[[], AppendResult]) -> AppendResult:
        """Run a load-decide-append attempt, again when another writer got there first.

        A request refused on a state that its own earlier sending made (the retry of an enrolment whose answer
        was lost finds the case enrolled) gets that sending's answer, if it carries the same idempotency key:
        the append checks the key only once the decision is taken. Looked up after a refusal only, so a request
        that is not refused pays nothing for it."""
        for remaining in range(ATTEMPTS - 1, -1, -1):
            try:
                return attempt()
            except WrongExpectedVersion as lost:
                self.folds.forget(lost.stream_id)
                if not remaining:
                    raise
            except (Refused, Invalid):
                if ctx.idempotency is not None and (earlier := self.store.replay(ctx.idempotency)) is not None:
                    return earlier
                raise
        raise AssertionError("unreachable")

    # -- commands that touch more than one stream -------------------------------------------------

    def refer(self, ctx: Context, on: date, referral: Referral) -> AppendResult:
        """A new case. A CPR number already known makes it the same citizen; nothing in the answer says so."""
        fingerprint = cpr_fingerprint(referral.cpr, self.secret) if referral.cpr else None
        born = referral.cpr.birth_date if referral.cpr else referral.birth_date

        def attempt() -> AppendResult:
            # The programme as this process last saw it; the append's read-check refuses a stale one (and the
            # retry reads it afresh), so a referral asks nothing of the log but the append itself.
            version, programme = self.folds.held(programme_fold(referral.programme_id))
            if programme is None:
                raise Invalid({"programme_id": ["no such programme"]})
            writes = [Write(programme_stream(referral.programme_id), [], version)]
            known = None
            if fingerprint:
                links = self.store.read_stream(cpr_stream(fingerprint))
                # The latest linked citizen not erased (an erased one's referral makes a new one). Not simply the
                # latest link: a referral that read the link just before an erasure may append it after the new
                # citizen's claim.
                linked = list(dict.fromkeys(link.payload.citizen_id for link in reversed(links)))  # type: ignore[attr-defined]
                erased = erased_records(self.store, linked)
                known = next((citizen for citizen in linked if citizen not in erased), None)
            citizen_id = known or new_citizen_id()
            if fingerprint:
                # Every referral with a number links it, a known number to its citizen again: a link only for a
                # new number was one event more, which the next answer's log positions (or /metrics' count of
                # CprLinked) showed to whoever referred, and told them whether the number was known. Only a new
                # citizen's claim needs the stream as read (racing referrals of a new number agree on one
                # citizen); a known one's link repeats the latest, so referrals of one person do not contend.
                version = ANY_VERSION if known else len(links)
                writes.append(Write(cpr_stream(fingerprint), [ev.CprLinked(citizen_id)], version))
            # A new citizen's key (if there is anything to seal) is made here and stored in the append's round
            # trip, just before the append.
            sealing = referral.alias is not None or born is not None
            new_key = self.vault.new_citizen(citizen_id) if sealing and not known else None

            def seal(text: str | None) -> str | None:
                return new_key.seal(text) if new_key else self.vault.seal(citizen_id, text)

            event = ev.ReferralReceived(
                programme_id=referral.programme_id,
                source=referral.source,
                consent_given=referral.consent_given,
                citizen_id=citizen_id,
                citizen_alias=seal(referral.alias),
                birth_date=seal(born.isoformat()) if born else None,
                age_band=age_band(born, on) if born else None,
                cpr_fingerprint=fingerprint,
                match_key=match_key(referral.alias, born, self.secret) if referral.alias and born else None,
            )
            result = self.write(
                ctx,
                on,
                [Write(new_case_id(), [event], 0), *writes],
                course_of=referral.programme_id,
                alongside=[new_key.store()] if new_key else (),
            )
            if new_key and not result.duplicate and not new_key.stored(result.alongside[0]):
                raise RuntimeError(f"{citizen_id} had a key already")  # a fresh uuid4: never in practice
            return result

        return self.retrying(ctx, attempt)

    def is_erased(self, citizen_id: str) -> bool:
        return citizen_id in erased_records(self.store, [citizen_id])

    def on_case(
        self,
        ctx: Context,
        case_id: str,
        on: date,
        decide: Callable[[Case, Programme, Caseload], Sequence[DomainEvent]],
        read: Case | None = None,
    ) -> AppendResult:
        """A command on one case, decided on the case, its programme's rules (the funding end for every one; the
        recruitment window, the phase plan, the scale for some) and its caseload (a star that enrols takes the
        method of the case's relation worker), read-checking the case and the programme. The caseload is
        read-checked too when the command takes something from it: an enrolment, or an ending, which frees the
        worker's slot in the same append (an assignment that lands first is decided on again, so a closed course
        never holds a slot). Other commands do not contend with every assignment in the programme.

        ``read``: the case as the caller just folded it for the scope check (``course``, which read its programme
        and caseload in the same round trip), used by the first attempt; the append's read-checks still refuse
        any of them if it moved on, and a retry reads all three afresh."""
        first = [(read, *self._held_with(read))] if read is not None else []

        def attempt() -> AppendResult:
            case, programme, caseload = first.pop() if first else self.course(case_id)
            events = decide(case, programme, caseload)
            writes = [
                Write(case_id, events, case.version),
                Write(programme_stream(programme.programme_id), [], programme.version),
            ]
            ending = next((e for e in events if _ends_case(e)), None)
            offers_for = None
            if ending is None:
                require_within_funding(case, programme, on)
                if enrolment := next((e for e in events if isinstance(e, ev.CitizenEnrolled)), None):
                    waits = decide_wait_on_enrolment(caseload, case_id, enrolment.method)
                    writes.append(Write(caseload_stream(case.programme_id), waits, caseload.version))
                    offers_for = case.programme_id if waits else None  # a slot of the method may be free
            else:
                floor = earliest_closure(case, last_assignment_change(caseload, case_id))
                require_within_funding(case, programme, on, earliest_closure=floor)
                release = decide_release(caseload, case_id, ENDINGS[type(ending)], on)
                writes.append(Write(caseload_stream(case.programme_id), release, caseload.version))
                offers_for = case.programme_id if release else None
            return self.write(ctx, on, writes, offers_for=offers_for, course_of=case.programme_id)

        return self.retrying(ctx, attempt)

    def _held_with(self, case: Case) -> tuple[Programme, Caseload]:
        """The programme and caseload as ``course`` read them with the case a moment ago: held, not read again.
        Never older ones (``Folds._hold`` keeps the later of two reads), as ``course`` read them afresh."""
        _, programme = self.folds.held(programme_fold(case.programme_id))
        _, caseload = self.folds.held(caseload_fold(case.programme_id), empty_is_an_answer=True)
        return found(programme, "no such programme"), caseload

    def on_caseload(
        self, ctx: Context, case_id: str, on: date, decide: Callable[[Caseload, Programme, Case], Sequence[DomainEvent]]
    ) -> AppendResult:
        """Assignment: the caseload changes only if the case and the programme are still as read."""

        def attempt() -> AppendResult:
            case = self.case(case_id)
            programme = self.programme(case.programme_id)
            caseload = self.caseload(case.programme_id)
            events = decide(caseload, programme, case)
            require_within_funding(case, programme, on)
            writes = [
                Write(caseload_stream(programme.programme_id), events, caseload.version),
                Write(case_id, [], case.version),
                Write(programme_stream(programme.programme_id), [], programme.version),
            ]
            # A freed slot, or a wait moved to a method that may have one free.
            may_offer = any(isinstance(e, ev.CaseReleased | ev.WaitingForChanged) for e in events)
            offers_for = programme.programme_id if may_offer else None
            return self.write(ctx, on, writes, offers_for=offers_for, course_of=programme.programme_id)

        return self.retrying(ctx, attempt)

    def on_programme(
        self, ctx: Context, programme_id: str, on: date, decide: Callable[[Programme, Caseload], Sequence[DomainEvent]]
    ) -> AppendResult:
        """Programme changes; capacity can grow, so the waitlist gets a look afterwards."""

        def attempt() -> AppendResult:
            programme = self.programme(programme_id)
            caseload = self.caseload(programme_id)
            writes = [
                Write(programme_stream(programme_id), decide(programme, caseload), programme.version),
                Write(caseload_stream(programme_id), [], caseload.version),
            ]
            return self.write(ctx, on, writes, offers_for=programme_id)

        return self.retrying(ctx, attempt)

    def reopen(self, ctx: Context, case_id: str, on: date, consent_given: bool) -> AppendResult:
        """A closed course reopens as a new course for the same citizen, in a new stream."""

        def attempt() -> AppendResult:
            old = self.case(case_id)
            decide_reopen(old, on)
            first = self.store.read_stream(case_id)[0].payload
            assert isinstance(first, ev.ReferralReceived)
            referral = replace(
                first, source=ctx.actor.split(":")[0], consent_given=consent_given, reopened_from=case_id
            )
            if first.citizen_id is None:
                referral = replace(referral, citizen_id=old.citizen_id)
            new_id = new_case_id()
            writes = [Write(new_id, [referral], 0), Write(case_id, [ev.CourseReopened(new_id)], old.version)]
            return self.write(ctx, on, writes, course_of=old.programme_id)

        return self.retrying(ctx, attempt)


ENDINGS: dict[type[DomainEvent], str] = {
    ev.CourseClosed: "course_closed",
    ev.ReferralDeclined: "declined",
    ev.ReferralWithdrawn: "withdrawn",
    ev.ReferredOn: "referred_on",
}


def _ends_case(event: DomainEvent) -> bool:
    return type(event) in ENDINGS


__all__ = ["Context", "Intake", "Invalid", "NotFound", "Refused", "Write", "programme_stream"]
