"""The shared state store on Redis (one server or a Redis Cluster).

Keys (``P`` is the prefix, default ``nba``)::

    P:{c:<customer>}:contacts   ZSET  send time (epoch microseconds) -> "<event>|<channel>"
    P:{c:<customer>}:resp       STR   epoch microseconds of the customer's last response
    P:{c:<customer>}:counts     HASH  "<channel>:sent|opened|clicked" -> count (the response history)
    P:{c:<customer>}:token      STR   the customer's log token (engine.privacy)
    P:{c:<customer>}:pending    SET   the customer's pending decisions' event ids (for forget)
    P:{b}:<budget>:<period>     HASH  paid, committed (integer cents)
    P:{p}:e:<event>             HASH  d = pending decision (JSON), o:<outcome id> = "<type>|<value>",
                                      settled = 1 once redeemed, ch = channel, first:<kind> = 1
                                      once an outcome of a counted kind was counted
    P:{p}:queue                 ZSET  matures at (epoch microseconds) -> event id
    P:{p}:seq                   INT   reservation counter: matured decisions come out in this order
    P:{p}:closed:<event>        STR   set when the event matured (a late outcome: "window closed")

``<customer>`` is the customer's id (or its pseudonym) with '%', '{' and '}' escaped (``tag``), so
that the hash tag stays whole. Hash tags put each customer's keys in one slot, budgets in one slot and the pending decisions
with their queue in one slot, so that every Lua script touches a single slot and the store works
on Redis Cluster.

A reservation is the Lua script ``RESERVE`` (one ``EVALSHA``): on a single server it checks the
caps, the gap and the budget and then writes contact, commitment and pending decision in one
round trip. On a cluster the same script runs once per slot -- customer, then budget, then
pending -- and a refused budget undoes the contact it follows; the window in between can only
make a concurrent decision more cautious, never break a cap or overspend.

Every connection or timeout error becomes ``StoreUnavailable`` (the engine then decides in safe
mode). After a failure the store does not touch Redis for ``retry_after`` seconds, so an outage
costs no time per call, and tries again after that: service resumes by itself.

Budget safety across a Redis restart needs persistence: run Redis with ``appendonly yes``, or a
restart forgets what was committed. ``appendfsync everysec`` (what the tests and load tests
use) survives a killed Redis process; ``always`` also survives the machine going down.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Sequence

import redis
import redis.cluster

from engine.constraints import BudgetKey, BudgetUsage, Pressure
from engine.domain import AttributionClosed, OutcomeType, UnknownEvent
from engine.privacy import new_log_token
from engine.state import (COUNTED, RESPONSES, CustomerState, Forgotten, PendingDecision, Snapshot, StoreUnavailable, epoch,
                          from_epoch, micros)

# Last-response keys live as long as the history features look back.
HORIZON_SECONDS = 30 * 86400
# A customer's response counts live this long after their last change.
COUNTS_SECONDS = 400 * 86400

# Shared Lua: the checks and writes of each part of a reservation.
_PRELUDE = r"""
local function contact_check(key, s)
  local lo = s.send - s.horizon
  local rows = redis.call('ZRANGEBYSCORE', key, '(' .. lo, '(' .. (s.send + s.horizon), 'WITHSCORES')
  for i = 1, #rows, 2 do
    local t = tonumber(rows[i + 1])
    if math.abs(t - s.send) < s.gap then
      return 'min_gap: another contact less than ' .. (s.gap / 3.6e9) .. ' h away'
    end
  end
  for _, cap in ipairs(s.caps) do
    if cap.channels[s.channel] then
      local n = 0
      for i = 1, #rows, 2 do
        local ch = string.match(rows[i], '|([^|]*)$')
        if cap.channels[ch] and math.abs(tonumber(rows[i + 1]) - s.send) < cap.window then
          n = n + 1
        end
      end
      if n >= cap.max then return 'cap ' .. cap.id .. ': ' .. cap.text end
    end
  end
  return nil
end

local function contact_apply(key, counts, s)
  redis.call('ZADD', key, s.send, s.member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (s.now - s.horizon))
  redis.call('EXPIRE', key, math.ceil((s.send - s.now + s.horizon) / 1e6 + 86400))
  redis.call('HINCRBY', counts, s.channel .. ':sent', 1)
  redis.call('EXPIRE', counts, s.counts_ttl)
end

local function token_check(tkey, c)
  if c.token then
    local t = redis.call('GET', tkey)
    if t and t ~= c.token then return 'log token: a concurrent decision gave the customer one' end
  end
  return nil
end

local function customer_apply(pset, tkey, c)
  redis.call('HSET', pset, c.event, '')
  redis.call('EXPIRE', pset, c.ttl)
  if c.token then redis.call('SET', tkey, c.token, 'EX', c.token_ttl) end
end

local function budget_check(key, b)
  local v = redis.call('HMGET', key, 'paid', 'committed')
  local spend = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  if spend + b.cents > b.amount then
    return string.format('budget %s: %.2f EUR left, the offer costs %.2f',
                         b.id, (b.amount - spend) / 100, b.cents / 100)
  end
  return nil
end

local function budget_apply(key, b)
  redis.call('HINCRBY', key, 'committed', b.cents)
end

local function pending_apply(key, dkey, queue, p, data)
  local seq = redis.call('INCR', p.seq_key)
  redis.call('HSET', key, 'c', p.customer, 'k', p.commit, 'n', seq, 'ch', p.channel)
  redis.call('EXPIRE', key, p.ttl)
  redis.call('SET', dkey, data, 'EX', p.ttl)
  redis.call('ZADD', queue, p.matures, p.event)
end
"""

# KEYS: [contacts counts open-decisions token] [budget] [pending data queue], in that order, each
# present when its part is. ARGV: the spec (JSON), then the pending decision (PendingDecision.pack)
# when it is stored.
RESERVE = _PRELUDE + r"""
local spec = cjson.decode(ARGV[1])
local k = 1
local ckey, nkey, skey, tkey, bkey, pkey, dkey, qkey
if spec.customer then ckey = KEYS[k]; nkey = KEYS[k + 1]; skey = KEYS[k + 2]; tkey = KEYS[k + 3]; k = k + 4 end
if spec.budget then bkey = KEYS[k]; k = k + 1 end
if spec.pending then pkey = KEYS[k]; dkey = KEYS[k + 1]; qkey = KEYS[k + 2] end
if skey then
  local why = token_check(tkey, spec.customer)
  if why then return why end
end
if spec.contact then
  local why = contact_check(ckey, spec.contact)
  if why then return why end
end
if bkey then
  local why = budget_check(bkey, spec.budget)
  if why then return why end
end
if spec.contact then contact_apply(ckey, nkey, spec.contact) end
if skey then customer_apply(skey, tkey, spec.customer) end
if bkey then budget_apply(bkey, spec.budget) end
if pkey then pending_apply(pkey, dkey, qkey, spec.pending, ARGV[2]) end
return ''
"""

# KEYS: pending hash, queue, pending data. Removes a pending decision (erasure); returns its
# commitment text ("<budget key>|<cents>") when unsettled, '' when settled or without one, nil
# when gone.
DROP = r"""
local v = redis.call('HMGET', KEYS[1], 'k', 'settled')
if redis.call('EXISTS', KEYS[1]) == 0 then return nil end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
if v[2] then return '' end
return v[1] or ''
"""

# KEYS: pending hash, closed marker. ARGV: outcome id, "type|value", redeemed (0/1), the
# counted kind ("opened", "clicked") or "".
# Returns {status, customer, commitment, channel, first}: status ok | dup | settle | unknown |
# closed; first = 1 when this is the decision's first outcome of the counted kind.
OUTCOME = r"""
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'closed'} end
  return {'unknown'}
end
if redis.call('HSETNX', KEYS[1], 'o:' .. ARGV[1], ARGV[2]) == 0 then return {'dup'} end
local v = redis.call('HMGET', KEYS[1], 'c', 'k', 'ch')
local first = '0'
if ARGV[4] ~= '' and redis.call('HSETNX', KEYS[1], 'first:' .. ARGV[4], '1') == 1 then first = '1' end
local status = 'ok'
if ARGV[3] == '1' and v[2] ~= '' and redis.call('HSETNX', KEYS[1], 'settled', '1') == 1 then
  status = 'settle'
end
return {status, v[1], v[2], v[3] or '', first}
"""

# KEYS: queue. ARGV: now (epoch us), limit, pending key prefix, closed key prefix, closed ttl,
# pending data key prefix. Returns each decision's hash fields, and its data as field 'd' (which
# older versions kept in the hash). Pending keys share the queue's slot ({p}), so the script
# stays on one node.
POP = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local key, dkey = ARGV[3] .. id, ARGV[6] .. id
  local h = redis.call('HGETALL', key)
  local d = redis.call('GET', dkey)
  if #h > 0 then
    redis.call('DEL', key, dkey)
    redis.call('SET', ARGV[4] .. id, '1', 'EX', tonumber(ARGV[5]))
    if d then
      table.insert(h, 'd')
      table.insert(h, d)
    end
    table.insert(out, h)
  end
end
return out
"""

# KEYS: budget hash. ARGV: paid delta, committed delta (cents). Settles or releases.
LEDGER = r"""
redis.call('HINCRBY', KEYS[1], 'paid', tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[1], 'committed', tonumber(ARGV[2]))
return 1
"""

# KEYS: customer's last-response key, response counts. ARGV: epoch us, ttl s, the count to
# add 1 to (or ""), its ttl s. Keeps the latest response time.
RESPONSE = r"""
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > old then redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2])) end
if ARGV[3] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
end
return 1
"""

_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                redis.exceptions.BusyLoadingError)


def tag(customer_id: str) -> str:
    """The customer's part of a hash tag, whole whatever the id: a '}' would end the tag early
    (Redis Cluster hashes only up to the first '}'), so '%', '{' and '}' are escaped."""
    return customer_id.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class RedisStateStore:
    """``StateStore`` on Redis. ``url``: ``redis://host:port/db``; ``cluster=True`` for a cluster
    (any node's address). ``round_trips`` counts the Redis calls made (a benchmark figure)."""

    def __init__(self, url: str, *, cluster: bool = False, prefix: str = "nba",
                 socket_timeout: float = 0.5, retry_after: float = 0.2,
                 closed_ttl: dt.timedelta = dt.timedelta(days=7)):
        self.url, self.cluster, self.prefix = url, cluster, prefix
        options = dict(socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
        try:
            if cluster:
                self.r = redis.cluster.RedisCluster.from_url(url, **options)
            else:
                self.r = redis.Redis.from_url(url, health_check_interval=0, **options)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"redis at {url}: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"redis url {url!r}: {exc}") from None
        self.retry_after = retry_after
        self.closed_ttl = int(closed_ttl.total_seconds())
        self._reserve = self.r.register_script(RESERVE)
        self._outcome = self.r.register_script(OUTCOME)
        self._pop = self.r.register_script(POP)
        self._response = self.r.register_script(RESPONSE)
        self._ledger = self.r.register_script(LEDGER)
        self._drop = self.r.register_script(DROP)
        self._down_until = 0.0
        self._lock = threading.Lock()
        self.round_trips = 0
        self.failures = 0

    # -- keys ---------------------------------------------------------------------------------

    def contacts_key(self, customer_id: str) -> str:
        return f"{self.prefix}:{{c:{tag(customer_id)}}}:contacts"

    def response_key(self, customer_id: str) -> str:
        return f"{self.prefix}:{{c:{tag(customer_id)}}}:resp"

    def counts_key(self, customer_id: str) -> str:
        return f"{self.prefix}:{{c:{tag(customer_id)}}}:counts"

    def token_key(self, customer_id: str) -> str:
        return f"{self.prefix}:{{c:{tag(customer_id)}}}:token"

    def pending_set_key(self, customer_id: str) -> str:
        """The customer's open decisions: a hash whose fields are their event ids (small, so
        Redis keeps it compact; a set of strings it would not)."""
        return f"{self.prefix}:{{c:{tag(customer_id)}}}:open"

    def legacy_pending_set_key(self, customer_id: str) -> str:
        """Where older versions kept the customer's pending event ids (a set)."""
        return f"{self.prefix}:{{c:{tag(customer_id)}}}:pending"

    def customer_keys(self, customer_id: str) -> list[str]:
        return [self.contacts_key(customer_id), self.response_key(customer_id), self.counts_key(customer_id),
                self.token_key(customer_id), self.pending_set_key(customer_id), self.legacy_pending_set_key(customer_id)]

    def budget_key(self, key: BudgetKey) -> str:
        return f"{self.prefix}:{{b}}:{key.name}"

    def pending_key(self, event_id: str) -> str:
        return f"{self.prefix}:{{p}}:e:{event_id}"

    def pending_data_key(self, event_id: str) -> str:
        """The pending decision itself (``PendingDecision.pack``), beside its small hash: a
        value this long would make Redis keep the hash in its large, slower-to-read form."""
        return f"{self.prefix}:{{p}}:d:{event_id}"

    def closed_key(self, event_id: str) -> str:
        return f"{self.prefix}:{{p}}:closed:{event_id}"

    @property
    def queue_key(self) -> str:
        return f"{self.prefix}:{{p}}:queue"

    # -- calls --------------------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        """One Redis round trip; connection trouble becomes StoreUnavailable."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"redis at {self.url} unreachable; retrying shortly")
        try:
            result = fn(*args, **kwargs)
        except _UNAVAILABLE as exc:
            with self._lock:
                self.failures += 1
                self._down_until = time.monotonic() + self.retry_after
            raise StoreUnavailable(f"redis at {self.url}: {exc}") from exc
        with self._lock:
            self.round_trips += 1
        return result

    def durability_problem(self) -> str | None:
        """Why a restart of this Redis could forget caps, budgets and pending decisions, or None
        when every node appends every write to its log (``appendonly yes``)."""
        try:
            if self.cluster:
                replies = self.r.config_get("appendonly", target_nodes=redis.cluster.RedisCluster.ALL_NODES)
                values = [v.get("appendonly") for v in replies.values()] if isinstance(replies, dict) and \
                    all(isinstance(v, dict) for v in replies.values()) else [replies.get("appendonly")]
            else:
                values = [self.r.config_get("appendonly").get("appendonly")]
        except redis.exceptions.ResponseError as exc:
            return f"cannot tell whether Redis at {self.url} persists its data (CONFIG GET refused: {exc})"
        except _UNAVAILABLE as exc:
            return f"cannot tell whether Redis at {self.url} persists its data (unreachable: {exc})"
        if all(v == "yes" for v in values):
            return None
        return (f"Redis at {self.url} runs with appendonly no: a Redis restart forgets the caps' contacts, "
                "the budgets' commitments and the pending decisions (a budget could then be spent twice)")

    def ping(self) -> bool:
        try:
            return bool(self._call(self.r.ping))
        except StoreUnavailable:
            return False

    # -- StateStore ---------------------------------------------------------------------------

    def snapshot(self, customer_id: str, now: dt.datetime, horizon: dt.timedelta,
                 budgets: Sequence[BudgetKey]) -> Snapshot:
        pipe = self.r.pipeline(transaction=False)
        pipe.zrangebyscore(self.contacts_key(customer_id), f"({epoch(now - horizon)}", "+inf",
                           withscores=True)
        pipe.get(self.response_key(customer_id))
        pipe.hgetall(self.counts_key(customer_id))
        pipe.get(self.token_key(customer_id))
        for key in budgets:
            pipe.hmget(self.budget_key(key), "paid", "committed")
        rows, resp, counts, token, *ledgers = self._call(pipe.execute)
        contacts = tuple((from_epoch(score), member.decode().rsplit("|", 1)[1]) for member, score in rows)
        usage = {key.budget_id: BudgetUsage(key, int(paid or 0), int(committed or 0))
                 for key, (paid, committed) in zip(budgets, ledgers)}
        state = CustomerState(contacts, from_epoch(float(resp)) if resp else None,
                              {k.decode(): int(v) for k, v in counts.items()})
        return Snapshot(state, usage, token.decode() if token else None)

    def reserve(self, pending: PendingDecision, pressure: Pressure) -> str | None:
        parts: list[tuple[list[str], dict]] = []  # (keys, spec) per slot
        ttl = max(60, int((pending.matures_at - pending.decision_time).total_seconds()) * 2 + 86400)
        customer: dict = {"customer": {"event": pending.event_id, "ttl": ttl}}
        if pending.log_token is not None:
            customer["customer"].update(token=pending.log_token, token_ttl=COUNTS_SECONDS)
        if pending.channel is not None and pending.send_at is not None:
            customer["contact"] = {
                "send": epoch(pending.send_at), "now": epoch(pending.decision_time),
                "channel": pending.channel, "member": f"{pending.event_id}|{pending.channel}",
                "horizon": micros(pressure.horizon), "gap": micros(pressure.min_gap),
                "caps": [{"id": c.id, "max": c.max_contacts, "window": micros(c.window),
                          "channels": {ch: True for ch in c.channels}, "text": c.describe()}
                         for c in pressure.caps],
                "counts_ttl": COUNTS_SECONDS,
            }
        parts.append(([self.contacts_key(pending.customer_id), self.counts_key(pending.customer_id),
                       self.pending_set_key(pending.customer_id), self.token_key(pending.customer_id)], customer))
        c = pending.commitment
        if c is not None:
            parts.append(([self.budget_key(c.key)],
                          {"budget": {"id": c.key.budget_id, "cents": c.cents, "amount": c.key.amount_cents}}))
        parts.append(([self.pending_key(pending.event_id), self.pending_data_key(pending.event_id), self.queue_key],
                      {"pending": {"matures": epoch(pending.matures_at),
                                   "event": pending.event_id, "ttl": ttl,
                                   "seq_key": f"{self.prefix}:{{p}}:seq",
                                   "customer": pending.customer_id, "commit": self._commitment_text(pending),
                                   "channel": pending.channel or ""}}))
        data = pending.pack()
        if not self.cluster:
            keys = [k for part_keys, _ in parts for k in part_keys]
            spec = {name: value for _, part in parts for name, value in part.items()}
            why = self._call(self._reserve, keys=keys, args=[json.dumps(spec), data])
            return why.decode() or None
        done = []
        for part_keys, spec in parts:
            args = [json.dumps(spec), data] if "pending" in spec else [json.dumps(spec)]
            try:
                why = self._call(self._reserve, keys=part_keys, args=args).decode()
            except StoreUnavailable:
                self._undo(done, pending)
                raise
            if why:
                self._undo(done, pending)
                return why
            done.append(spec)
        return None

    def _commitment_text(self, pending: PendingDecision) -> str:
        c = pending.commitment
        return f"{self.budget_key(c.key)}|{c.cents}" if c is not None else ""

    def _undo(self, done: list[dict], pending: PendingDecision) -> None:
        """Take back the parts of a cluster reservation already written (best effort: what
        cannot be undone only leaves the state more cautious)."""
        for spec in reversed(done):
            try:
                if "customer" in spec:
                    self._call(self.r.hdel, self.pending_set_key(pending.customer_id), pending.event_id)
                if "contact" in spec:
                    self._call(self.r.zrem, self.contacts_key(pending.customer_id), spec["contact"]["member"])
                    self._call(self.r.hincrby, self.counts_key(pending.customer_id), f"{pending.channel}:sent", -1)
                elif "budget" in spec:
                    self._call(self._ledger, keys=[self.budget_key(pending.commitment.key)],
                               args=[0, -spec["budget"]["cents"]])
            except StoreUnavailable:
                pass

    def add_outcome(self, event_id: str, outcome_id: str, kind: OutcomeType, value: float,
                    time: dt.datetime) -> bool:
        counted = COUNTED.get(kind, "")
        reply = self._call(self._outcome, keys=[self.pending_key(event_id), self.closed_key(event_id)],
                           args=[outcome_id, f"{kind.value}|{value!r}", "1" if kind is OutcomeType.REDEEMED else "0",
                                 counted])
        status = reply[0].decode()
        if status == "unknown":
            raise UnknownEvent(f"unknown event_id {event_id!r}")
        if status == "closed":
            raise AttributionClosed(f"event {event_id!r}: attribution window has closed")
        if status == "dup":
            return False
        customer_id, commitment, channel, first = (part.decode() for part in reply[1:5])
        count = f"{channel}:{counted}" if channel and first == "1" else ""
        if kind in RESPONSES:  # every counted kind is a response
            self._call(self._response, keys=[self.response_key(customer_id), self.counts_key(customer_id)],
                       args=[epoch(time), HORIZON_SECONDS, count, COUNTS_SECONDS])
        if status == "settle":
            budget_key, cents = commitment.rsplit("|", 1)
            self._call(self._ledger, keys=[budget_key], args=[int(cents), -int(cents)])
        return True

    def pop_matured(self, now: dt.datetime, limit: int = 10_000) -> list[PendingDecision]:
        rows = self._call(self._pop, keys=[self.queue_key],
                          args=[epoch(now), limit, self.pending_key(""), self.closed_key(""), self.closed_ttl,
                                self.pending_data_key("")])
        matured, releases, order = [], [], {}
        for flat in rows:
            fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
            if "d" not in fields:
                continue
            pending = PendingDecision.unpack(fields["d"])
            pending.settled = "settled" in fields
            order[pending.event_id] = int(fields.get("n", 0))
            for name, raw in fields.items():
                if name.startswith("o:"):
                    kind, val = raw.decode().split("|", 1)
                    pending.outcome_ids.add(name[2:])
                    pending.outcomes.append((OutcomeType(kind), float(val)))
            if pending.commitment is not None and not pending.settled:
                releases.append(pending.commitment)
            matured.append(pending)
        totals: dict[str, int] = {}
        for c in releases:
            totals[self.budget_key(c.key)] = totals.get(self.budget_key(c.key), 0) + c.cents
        for budget_key, cents in totals.items():
            self._call(self._ledger, keys=[budget_key], args=[0, -cents])
        # The order decisions were reserved in, as the in-memory store does.
        matured.sort(key=lambda p: (p.matures_at, order[p.event_id]))
        return matured

    def budget_usage(self, keys: Sequence[BudgetKey]) -> list[BudgetUsage]:
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self.budget_key(key), "paid", "committed")
        ledgers = self._call(pipe.execute) if keys else []
        return [BudgetUsage(key, int(p or 0), int(c or 0)) for key, (p, c) in zip(keys, ledgers)]

    def next_maturity(self) -> dt.datetime | None:
        first = self._call(self.r.zrange, self.queue_key, 0, 0, withscores=True)
        return from_epoch(first[0][1]) if first else None

    def pending_count(self) -> int:
        return int(self._call(self.r.zcard, self.queue_key))

    def log_token(self, customer_id: str) -> str:
        key = self.token_key(customer_id)
        self._call(self.r.set, key, new_log_token(), nx=True, ex=COUNTS_SECONDS)
        return self._call(self.r.get, key).decode()

    def forget(self, customer_id: str) -> Forgotten:
        events = {e.decode() for e in self._call(self.r.hkeys, self.pending_set_key(customer_id))}
        events |= {e.decode() for e in self._call(self.r.smembers, self.legacy_pending_set_key(customer_id))}
        dropped, releases = 0, {}
        for event in sorted(events):
            commitment = self._call(self._drop, keys=[self.pending_key(event), self.queue_key,
                                                      self.pending_data_key(event)], args=[event])
            if commitment is None:
                continue  # matured already
            dropped += 1
            if commitment:
                budget_key, cents = commitment.decode().rsplit("|", 1)
                releases[budget_key] = releases.get(budget_key, 0) + int(cents)
        for budget_key, cents in releases.items():
            self._call(self._ledger, keys=[budget_key], args=[0, -cents])
        contacts = self._call(self.r.zcard, self.contacts_key(customer_id))
        existed = self._call(self.r.delete, *self.customer_keys(customer_id))
        return Forgotten(contacts, dropped, sum(releases.values()), bool(existed or dropped))

    def close(self) -> None:
        self.r.close()


