"""The send-intent ledger: a send is recorded before its provider is called and marked done after.

DESIGN.md principle 6, "nothing lost, nothing twice". Every :class:`~actors.effects.SendIntent` carries
an idempotency key ``store:cart:run:step:channel``; an actor issues each key at most once per process.
A restart may make an actor issue a key *again* (it resumes from a snapshot taken before the send);
the ledger is what remembers the key across the restart:

=================  ==============================================  =======================================
entry state        meaning                                         when the key is issued again
=================  ==============================================  =======================================
``pending``        recorded; the message waits in its channel's    sent (the provider was never called)
                   queue (rate limit, pause, breaker, the
                   provider's Retry-After): not handed to the
                   provider yet
``attempted``      the pool is calling the provider for the first  *uncertain*: logged and counted, then the
                   time (marked durably before the call): it may   channel's ``on_uncertain`` policy: skip
                   or may not have gone out                        (default) or send again
``done``           the provider answered (or the send was          never sent again; the stored outcome is
                   cancelled): the outcome is stored               handed to the actors (attribution, cap)
``unsent``         the engine stopped before trying (graceful      sent (it never went out)
                   stop with messages still queued)
=================  ==============================================  =======================================

Entries found ``pending``, ``attempted`` or ``unsent`` at restore are resolved once restore is done
(:meth:`IntentLedger.resolve`) even if their key is never issued again. A ``pending`` or ``unsent`` one
goes through its channel's pool again, which asks the runtime whether its cart still wants it (bought,
cleared, opted out meanwhile: cancelled).

Two phases. :meth:`IntentLedger.admit` records the key ``pending`` before the message enters its pool;
right before the pool calls the provider for the message the first time (not for a retry), it asks
:meth:`IntentLedger.attempt`, which queues the ``attempted`` mark on the journal and returns a gate the
pool waits on before the call: the gate opens when the mark is durable (the marks of the messages
dispatched together share one group commit). So after a crash only the messages whose provider call
may have begun are uncertain; a backlog that was waiting in a queue is sent again, once. A retry after a
transient failure is not marked again: it stays ``attempted`` (uncertain after a crash).

Stored form: an entry is ``[1, key, intent fields, state, outcome, at, detail, invalidate, issue lsn,
done lsn, reported, attempted]``; ``attempted`` is stored as state 0 (``pending``) with the last element
true, so that an older engine reads it as ``pending`` (uncertain). An entry written before the
``attempted`` element existed (state 0 and no element) may have been attempted: it loads as
``attempted``, i.e. uncertain, as it always was.

Ordering with the provider: :meth:`IntentLedger.admit` queues the record on the
:class:`~engine.stores.journal.Journal` and holds the intent until the record is durable, then hands it
to ``offer`` (the dispatcher's pool path); :meth:`IntentLedger.attempt` does the same for the
``attempted`` mark, the pool holding the provider call. While the store is down intents go out at once,
from memory, and so do their provider calls: the engine keeps sending (issue 6), and such sends are
counted as ``unrecorded`` (records) and ``unmarked`` (provider calls); a crash during the outage may
repeat them. When the journal's writer has stopped (the engine is going down) no provider is called for
a message whose mark is not durable: the pool reports it not sent.

Pruning. An entry is needed only while an actor could issue its key again, i.e. until a snapshot whose
cart states are past the send is committed. So an entry is dropped when it is done and both its issue
and its outcome are covered by a committed cut (:meth:`prunable`). Entries loaded at restore whose
issue is *not* covered by the snapshot they were restored with are kept until their key is issued again
(or their cart's run is over; for a cart the restore did not bring back, whose events the client sends
again, until an attribution window after the send): the cart will issue them again when its timer fires. Such an entry is
stored as such (issue lsn ``-1``) by the first cut after the restore (:meth:`marks`): that cut covers
the lsn the entry was stored with, so a restore from it would take the send as covered by carts that are
still before it, and the cut after would prune the key.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgpack
from msgspec import Raw

from actors.effects import LogRecord, SendIntent
from actors.packing import packb as _packb
from actors.states import IN_RUN
from engine.stores.base import CorruptStore, Sequence, partition_of

__all__ = ["ATTEMPTED", "DONE", "PENDING", "UNSENT", "Entry", "IntentLedger"]

log = logging.getLogger("cartwheel.intents")

PENDING = 0  #: recorded; the provider has not been called (the message waits in its channel's queue)
DONE = 1  #: outcome known (sent, failed, cancelled, uncertain)
UNSENT = 2  #: known not sent (the engine stopped with the message still queued)
ATTEMPTED = 3  #: the provider may have been called (stored as PENDING with the attempted element true)
_STATE_NAMES = {PENDING: "pending", DONE: "done", UNSENT: "unsent", ATTEMPTED: "attempted"}
_STORED_STATES = (PENDING, DONE, UNSENT)
#: issue lsn of a loaded entry whose cart has not issued it again yet (stored as such). Not an lsn: a
#: large sentinel once leaked into the restored lsn counter (restore takes the highest lsn it finds),
#: after which every cut "covered" these entries and pruned them before their carts issued them again.
_UNCONSUMED = -1
_FIELDS = SendIntent.__slots__


class Entry:
    """One intent in the ledger."""

    __slots__ = (
        "_fields",
        "_fields_of",
        "at",
        "detail",
        "done_lsn",
        "intent",
        "invalidate",
        "issue_lsn",
        "loaded",
        "outcome",
        "part",
        "reported",
        "state",
    )

    def __init__(self, intent: SendIntent, part: int, issue_lsn: int) -> None:
        self.intent = intent
        self.state = PENDING
        self.outcome = ""
        self.at = 0.0
        self.detail = ""
        self.invalidate = False
        self.issue_lsn = issue_lsn
        self.done_lsn = 0
        self.part = part
        self.loaded = False  #: read from the store at restore (not issued by this process yet)
        self.reported = False  #: its outcome is already in this process's message log
        self._fields: Raw | None = None  # the intent's fields packed, while the entry is written again and again
        self._fields_of: SendIntent | None = None  # (the intent they were packed from)

    def pack(self) -> bytes:
        intent = self.intent
        # msgpack.packb's bytes through the actors' reusable encoder (on the loop's thread, as every
        # caller is). An entry is packed when it is recorded, attempted and done: the intent's fields,
        # most of the bytes, are packed once (Raw: spliced in as they are).
        fields = self._fields
        if fields is None or self._fields_of is not intent:
            fields = self._fields = Raw(_packb({name: getattr(intent, name) for name in _FIELDS}))
            self._fields_of = intent
        state = self.state
        attempted = state == ATTEMPTED
        return _packb([1, intent.key, fields, PENDING if attempted else state, self.outcome, self.at, self.detail,
                       self.invalidate, self.issue_lsn, self.done_lsn, self.reported, attempted])

    @classmethod
    def unpack(cls, data: bytes, *, where: str, partitions: int) -> Entry:
        """Raises: CorruptStore naming ``where``."""
        try:
            version, key, fields, state, outcome, at, detail, invalidate, issue_lsn, done_lsn, *more = msgpack.unpackb(
                data, raw=False, strict_map_key=False)
            if version != 1 or state not in _STORED_STATES or not isinstance(fields, dict):
                raise ValueError(f"version {version!r} state {state!r}")
            intent = SendIntent(**{name: fields[name] for name in _FIELDS if name in fields})
            if intent.key != key:
                raise ValueError("key does not match its intent")
        except Exception as exc:  # noqa: BLE001 - stored bytes: any failure is corrupt data naming the key
            raise CorruptStore(f"{where}: not a cartwheel intent entry ({type(exc).__name__}: {exc})") from None
        entry = cls(intent, partition_of(intent.store, intent.cart, partitions), int(issue_lsn))
        if state == PENDING and (len(more) < 2 or more[1]):
            # attempted, or written before the attempted element existed (its provider may have been
            # called): uncertain
            state = ATTEMPTED
        entry.state = state
        entry.outcome = outcome
        entry.at = float(at)
        entry.detail = detail
        entry.invalidate = bool(invalidate)
        entry.done_lsn = int(done_lsn)
        entry.loaded = True
        entry.reported = bool(more[0]) if more and state == ATTEMPTED else False  # an uncertain one already reported
        return entry

    def __repr__(self) -> str:
        return f"<Entry {self.intent.key} {_STATE_NAMES[self.state]} {self.outcome} issue={self.issue_lsn} done={self.done_lsn}>"


class IntentLedger:
    """Remembers send intents across restarts; see the module docstring.

    Args:
        journal: the write-ahead path (:class:`engine.stores.journal.Journal`).
        seq: the engine's lsn counter.
        partitions: partition count (ledger keys live in their cart's partition).
        runtime: the engine runtime (``delivered``, ``registry``, ``clock``).
        policy: ``on_uncertain`` per channel name (``"skip"`` or ``"resend"``; default skip).
    """

    def __init__(self, *, journal: Any, seq: Sequence, partitions: int, runtime: Any,
                 policy: dict[str, str] | None = None) -> None:
        self.journal = journal
        self.seq = seq
        self.partitions = partitions
        self.runtime = runtime
        self.policy = dict(policy or {})
        self.entries: dict[str, Entry] = {}
        self.offer: Callable[[SendIntent], None] | None = None  #: set by the dispatcher
        self.holding = False  #: during restore: recorded intents wait for :meth:`release_held`
        self._held: dict[str, SendIntent] = {}
        self._ready: set[str] = set()  # held during restore, record durable
        self._waiting = 0
        #: keys loaded as issued again whose stored entry still has its old issue lsn (see :meth:`marks`)
        self._unmarked: set[str] = set()
        #: journal group future -> [the gate of the first attempts whose mark is in that group, how many]
        self._gates: dict[asyncio.Future[None], list[Any]] = {}
        self._halted = False  #: the journal's writer stopped: no mark becomes durable any more
        journal.on_stopped.append(self._journal_stopped)
        self.recorded = 0  # counters (stats)
        self.attempted = 0
        self.unmarked = 0
        self.suppressed = 0
        self.uncertain = 0
        self.resent = 0
        self.unrecorded = 0
        self.pruned = 0

    # ------------------------------------------------------------------ the dispatcher's side
    def admit(self, intent: SendIntent) -> bool:
        """A send intent is about to go to its channel.

        Returns:
            True: the caller sends it now. False: the ledger took it — held until its record is durable
            (then handed to ``offer``), or not to be sent (a completed or uncertain key).
        """
        key = intent.key
        entry = self.entries.get(key)
        if entry is not None:
            return self._again(entry, intent)
        entry = self.entries[key] = Entry(intent, partition_of(intent.store, intent.cart, self.partitions), 0)
        return self._record(entry)

    def _record(self, entry: Entry) -> bool:
        entry.issue_lsn = self.seq.next()
        entry.state = PENDING
        future = self.journal.add_ledger(entry.issue_lsn, entry.part, entry.intent.key.encode(), entry.pack())
        self.recorded += 1
        key = entry.intent.key
        if not self.journal.health.up and not self.holding:
            self.unrecorded += 1
            return True  # the store is down: send from memory (the record is written when it is back)
        self._held[key] = entry.intent
        self._waiting += 1
        future.add_done_callback(lambda _f, k=key: self._recorded(k))
        return False

    def _recorded(self, key: str) -> None:
        self._waiting -= 1
        if self.holding:
            self._ready.add(key)  # durable; goes out when restore is complete
            return
        intent = self._held.pop(key, None)
        if intent is not None and self.offer is not None:
            self.offer(intent)

    def release_held(self) -> None:
        """End of restore: hand every held intent whose record is durable to ``offer``; the others go
        when theirs is."""
        self.holding = False
        ready, self._ready = self._ready, set()
        for key in ready:
            intent = self._held.pop(key, None)
            if intent is not None and self.offer is not None:
                self.offer(intent)

    def attempt(self, key: str) -> asyncio.Future[bool] | None:
        """A pool is about to call the provider for ``key``'s message the first time: mark it attempted.

        Returns:
            None: call it now (no entry to mark, already marked, or the store is down: from memory).
            Otherwise a future the pool awaits before the call: True once the mark is durable (or the
            store went down meanwhile), False when it never will be (the journal's writer stopped: the
            engine is going down) and the provider must not be called.
        """
        entry = self.entries.get(key)
        if entry is None or entry.state != PENDING:
            return None
        if self._halted:
            gate: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            gate.set_result(False)
            return gate
        entry.state = ATTEMPTED
        future = self.journal.add_ledger(self.seq.next(), entry.part, key.encode(), entry.pack())
        self.attempted += 1
        if not self.journal.health.up:
            self.unmarked += 1
            return None  # the store is down: call the provider from memory (the mark is written when it is back)
        waiting = self._gates.get(future)  # one gate per journal group: a dispatch batch's marks open together
        if waiting is None:
            waiting = self._gates[future] = [asyncio.get_running_loop().create_future(), 0]
            future.add_done_callback(self._marked)
        waiting[1] += 1
        return waiting[0]  # type: ignore[no-any-return]

    def _marked(self, future: asyncio.Future[None]) -> None:
        """A journal group holding attempted marks is durable (or failed: the store is down): open its gate."""
        waiting = self._gates.pop(future, None)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_result(True)

    def _journal_stopped(self) -> None:
        """The journal's writer stopped (engine stopping, or a crash): marks still queued never become
        durable; the provider calls waiting for them do not happen (their stored entries stay pending:
        sent after the restart)."""
        self._halted = True
        gates, self._gates = self._gates, {}
        for gate, _n in gates.values():
            if not gate.done():
                gate.set_result(False)

    def release_all(self) -> None:
        """The store went down: stop waiting for records and marks, send what was held (from memory)."""
        gates, self._gates = self._gates, {}
        for gate, n in gates.values():
            if not gate.done():
                self.unmarked += n
                gate.set_result(True)
        if self.holding:
            return
        held, self._held = self._held, {}
        self._ready.clear()
        for intent in held.values():
            self.unrecorded += 1
            if self.offer is not None:
                self.offer(intent)

    def waiting(self) -> int:
        """Intents held until their record is durable."""
        return len(self._held)

    def _again(self, entry: Entry, intent: SendIntent) -> bool:
        """A key the ledger already knows was issued (after a restart)."""
        state = entry.state
        if entry.issue_lsn == _UNCONSUMED:
            entry.issue_lsn = self.seq.next()  # the restored cart is now past this send
        if state == DONE:
            self.suppressed += 1
            if not entry.reported:
                entry.reported = True
                self.runtime.delivered(intent, entry.outcome, entry.at, detail=entry.detail,
                                       invalidate_contact=entry.invalidate)
            return False
        if not entry.loaded:
            log.warning("intent %s issued twice in one process; the second is dropped", intent.key)
            return False
        if state == UNSENT or state == PENDING:  # never handed to the provider: send it
            entry.loaded = False
            entry.intent = intent
            self.resent += 1
            return self._record(entry)
        return self._uncertain(entry, intent)  # attempted before the restart

    def _report_uncertain(self, entry: Entry) -> None:
        """Log and count a send whose outcome is unknown (once per entry)."""
        if entry.reported:
            return
        entry.reported = True
        self.uncertain += 1
        intent = entry.intent
        policy = self.policy.get(intent.channel, "skip")
        action = "sending again (on_uncertain = resend)" if policy == "resend" else "not sent again (on_uncertain = skip)"
        self.runtime.record(LogRecord(
            id=intent.key, at=self.runtime.clock.now(), store=intent.store, cart=intent.cart, profile=intent.profile,
            run=intent.run, step=intent.step, channel=intent.channel, outcome="uncertain",
            reason=f"outcome unknown after a restart; {action}",
        ))
        log.warning("intent %s: outcome unknown after a restart; %s", intent.key, action)
        if entry.state == ATTEMPTED:  # remember the report, so that another restart does not repeat it
            self.journal.add_ledger(self.seq.next(), entry.part, intent.key.encode(), entry.pack())

    def _uncertain(self, entry: Entry, intent: SendIntent) -> bool:
        """An attempted entry from before the restart: report it, then apply the channel's policy.

        Returns True when the caller sends ``intent`` now (resend, store down).
        """
        self._report_uncertain(entry)
        entry.loaded = False
        if self.policy.get(intent.channel, "skip") == "resend":
            self.resent += 1
            entry.intent = intent
            return self._record(entry)
        self._finish(entry, "uncertain", self.runtime.clock.now(), "outcome unknown after a restart", False)
        return False

    def done(self, intent: SendIntent, outcome: str, *, detail: str = "", invalidate: bool = False,
             unsent: bool = False) -> None:
        """The channel reported ``outcome`` for ``intent`` (``unsent``: it never tried, engine stopping)."""
        entry = self.entries.get(intent.key)
        if entry is None:
            return
        now = self.runtime.clock.now()
        if unsent:
            entry.state = UNSENT
            entry.done_lsn = self.seq.next()
            entry.at = now
            self.journal.add_ledger(entry.done_lsn, entry.part, intent.key.encode(), entry.pack())
            return
        self._finish(entry, outcome, now, detail, invalidate)
        entry.reported = True

    def _finish(self, entry: Entry, outcome: str, at: float, detail: str, invalidate: bool) -> None:
        entry.state = DONE
        entry.outcome = str(outcome)
        entry.at = at
        entry.detail = detail
        entry.invalidate = invalidate
        entry.done_lsn = self.seq.next()
        self.journal.add_ledger(entry.done_lsn, entry.part, entry.intent.key.encode(), entry.pack())
        entry._fields = entry._fields_of = None  # written for the last time (but by a full rewrite)

    # ------------------------------------------------------------------ restore
    def load(self, entries: list[Entry], cut: int) -> None:
        """Entries read from the store; ``cut`` is the lsn of the snapshot the carts came from."""
        for entry in entries:
            if entry.issue_lsn > cut:
                self._unmarked.add(entry.intent.key)
            if entry.issue_lsn > cut or entry.issue_lsn < 0:
                entry.issue_lsn = _UNCONSUMED  # its cart's snapshot predates the send: it will issue it again
            self.entries[entry.intent.key] = entry

    def late_outcomes(self, cut: int) -> list[Entry]:
        """Done entries issued before ``cut`` whose outcome came after it: replay hands them to the actors."""
        out = [e for e in self.entries.values()
               if e.loaded and e.state == DONE and e.issue_lsn != _UNCONSUMED and e.done_lsn > cut]
        out.sort(key=lambda e: e.done_lsn)
        return out

    def deliver_late(self, entry: Entry) -> None:
        """Replay: the outcome of ``entry`` arrives now (in lsn order)."""
        if entry.reported:
            return
        entry.reported = True
        self.runtime.delivered(entry.intent, entry.outcome, entry.at, detail=entry.detail,
                               invalidate_contact=entry.invalidate)

    def resolve(self) -> tuple[int, int]:
        """After restore: report every entry still attempted (uncertain) and act on what cannot wait.

        An entry whose send is covered by the restored carts (their state is past it) is handled now:
        an attempted one gets its channel's policy (skip, or send again); a pending or unsent one (never
        handed to the provider) is sent. An entry the restored carts will issue again (their snapshot
        predates it) is handled when it is issued; an attempted one is reported now.

        Returns ``(uncertain, resent)`` counts of this call.
        """
        uncertain = resent = 0
        for entry in list(self.entries.values()):
            if not entry.loaded or entry.state == DONE:
                continue
            if entry.state == ATTEMPTED:
                uncertain += 1
                self._report_uncertain(entry)
            if entry.issue_lsn == _UNCONSUMED:
                continue  # its cart issues it again when its timer fires: _again decides then
            if entry.state == ATTEMPTED:
                send_now = self._uncertain(entry, entry.intent)
            else:  # PENDING or UNSENT: never handed to the provider
                entry.loaded = False
                self.resent += 1
                send_now = self._record(entry)
            if entry.state != DONE:
                resent += 1
            if send_now and self.offer is not None:
                self.offer(entry.intent)
        return uncertain, resent

    # ------------------------------------------------------------------ snapshots
    def prunable(self, cut: int) -> dict[int, list[bytes]]:
        """Keys that a committed cut up to ``cut`` makes unnecessary (partition -> keys).

        Also drops entries whose cart can no longer issue them although their issue was not covered:
        the cart is gone and its id may have been reused (a reused cart id must never find an old key
        here: an attribution window after the send; until then a cart the restore did not bring back is
        one whose events the client sends again after the crash), or it is past the entry's
        run (a later run, or the same run over: final, or active again). A cart restored from before the
        send (an earlier run, or the same run before the step) will issue the key again: its entry stays.
        """
        out: dict[int, list[bytes]] = {}
        registry = self.runtime.registry
        now = self.runtime.now()
        dirty = self.runtime.dirty  # carts changed since the cut
        for entry in self.entries.values():
            if entry.state != DONE:
                continue
            if entry.issue_lsn == _UNCONSUMED:
                if entry.done_lsn > cut:
                    continue
                intent = entry.intent
                if dirty is not None and (intent.store, intent.cart) in dirty:
                    continue  # changed since the cut: its state now is not the one the cut holds
                actor = registry.cart(intent.store, intent.cart)
                if actor is None:
                    # Gone, or not restored at all: its events came after the client's last sync (snapshot
                    # durability) and the client re-sends them, recreating the cart, which issues the key
                    # again. Kept while the cart id cannot have been reused: a cart that issued a send keeps
                    # its tombstone (its run counter) at least an attribution window after its run ended.
                    rules = registry.stores.get(intent.store)
                    if rules is not None and now < intent.created_at + rules.flow.attribution_window_s:
                        continue
                    out.setdefault(entry.part, []).append(intent.key.encode())
                elif actor.run > intent.run or (actor.run == intent.run and actor.state not in IN_RUN):
                    out.setdefault(entry.part, []).append(intent.key.encode())
            elif entry.issue_lsn <= cut and entry.done_lsn <= cut:
                out.setdefault(entry.part, []).append(entry.intent.key.encode())
        return out

    def marks(self) -> dict[int, list[bytes]]:
        """Entries loaded as issued again whose stored copy still has the issue lsn it was stored with,
        packed (partition -> [key, entry, key, entry, ...]): the cut writes them as they are now (issue
        lsn ``-1``, or the lsn of their new issue). The cut covers the old lsn (restore continues the lsn
        counter above it), while their carts may still be before the send."""
        out: dict[int, list[bytes]] = {}
        for key in self._unmarked:
            entry = self.entries.get(key)
            if entry is not None:
                flat = out.setdefault(entry.part, [])
                flat.append(key.encode())
                flat.append(entry.pack())
        return out

    def forget(self, keys: dict[int, list[bytes]]) -> None:
        """The cut that pruned ``keys`` (and wrote :meth:`marks`) is committed: drop them from memory."""
        self._unmarked.clear()
        entries = self.entries
        for part_keys in keys.values():
            for key in part_keys:
                if entries.pop(key.decode(), None) is not None:
                    self.pruned += 1

    def live(self) -> dict[int, list[bytes]]:
        """Every entry, packed (partition -> [key, entry, key, entry, ...]): for a full rewrite."""
        out: dict[int, list[bytes]] = {}
        for entry in self.entries.values():
            flat = out.setdefault(entry.part, [])
            flat.append(entry.intent.key.encode())
            flat.append(entry.pack())
        return out

    def statistics(self) -> dict[str, int]:
        return {
            "entries": len(self.entries), "waiting": len(self._held), "recorded": self.recorded,
            "attempted": self.attempted, "suppressed": self.suppressed, "uncertain": self.uncertain,
            "resent": self.resent, "unrecorded": self.unrecorded, "unmarked": self.unmarked, "pruned": self.pruned,
        }

    def __repr__(self) -> str:
        return (f"<IntentLedger entries={len(self.entries)} waiting={len(self._held)} suppressed={self.suppressed} "
                f"uncertain={self.uncertain}>")
