"""Lua scripts of the Redis store: each queue operation is one atomic script, so replicas
never see a half-done enqueue, claim or settlement.

Layout per queue (``B`` = ``{prefix}:q:<queue>:``):
- ``B job:<id>``   hash: key, dk (dedupe key), ots (order ts), payload, attempts, enq, due, err
- ``B keyq:<key>`` zset of a customer's job ids (zero-padded) by order ts: head = next job
- ``B ready``      zset of customers whose head is not leased, by the head's due time
- ``B leased``     zset of customers with a job in flight, by lease expiry
- ``B lease``      hash customer → "<job id>:<token>" of the claim that holds the lease
- ``B all``        zset of every job id by enqueue time (depth, oldest age)
- ``B dedupe``     zset of dedupe keys by first-seen time
- ``B dead:<n>``   hash per dead letter, ``B deadidx`` their numbers by time of failure
Times come from the caller's clock (ARGV), as with SQLite.

The intake log (``I`` = ``{prefix}:intake:``): ``I log`` a stream of raw webhooks (fields
``b`` body, ``t`` time received) whose entry ids are ``<n>-0`` with ``n`` from ``I seq``,
so a position is one integer; ``I pos`` the consumer's position. Consumed entries leave the
stream in the script that moves the position. Dead letters of entries go to the ``intake``
queue's dead-letter keys.
"""

from __future__ import annotations

# Shared Lua: put a customer back in ``ready`` at its head's due time, if it has a head.
_SCHEDULE = """
local function schedule(base, key)
  local head = redis.call('ZRANGE', base .. 'keyq:' .. key, 0, 0)[1]
  if head then
    local due = redis.call('HGET', base .. 'job:' .. tonumber(head), 'due')
    redis.call('ZADD', base .. 'ready', due, key)
  end
end
local function release(base, key)
  redis.call('HDEL', base .. 'lease', key)
  redis.call('ZREM', base .. 'leased', key)
  schedule(base, key)
end
"""

# Shared Lua: add jobs (and customers' latest message times) from ARGV[i..] — a window
# count, (key, ms)* then (key, dedupe, ots, payload)* up to ARGV[last] — as enqueue does.
_ADD = """
local function add_jobs(base, windows, now, i, last)
  local count = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, count do
    redis.call('ZADD', windows, 'GT', ARGV[i + 1], ARGV[i])
    i = i + 2
  end
  local accepted, duplicates = 0, 0
  while i <= last do
    local key, dk, ots, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    i = i + 4
    if redis.call('ZADD', base .. 'dedupe', 'NX', now, dk) == 0 then
      duplicates = duplicates + 1
    else
      local id = redis.call('INCR', base .. 'seq')
      redis.call('HSET', base .. 'job:' .. id, 'key', key, 'dk', dk, 'ots', ots,
        'payload', payload, 'attempts', 0, 'enq', now, 'due', now)
      redis.call('ZADD', base .. 'keyq:' .. key, ots, string.format('%020d', id))
      redis.call('ZADD', base .. 'all', now, id)
      accepted = accepted + 1
      -- A job older than the current head becomes the head: reschedule unless in flight.
      if not redis.call('ZSCORE', base .. 'leased', key) then
        schedule(base, key)
      end
    end
  end
  return {accepted, duplicates}
end
"""

# ARGV: base, windows key, now, window count, (key, ms)*, then (key, dedupe, ots, payload)*
ENQUEUE = (
    _SCHEDULE
    + _ADD
    + """
return add_jobs(ARGV[1], ARGV[2], ARGV[3], 4, #ARGV)
"""
)

# ARGV: intake base, now, body*. Returns the new entries' ids.
APPEND_INTAKE = """
local base, now = ARGV[1], ARGV[2]
local ids = {}
for i = 3, #ARGV do
  local n = redis.call('INCR', base .. 'seq')
  redis.call('XADD', base .. 'log', n .. '-0', 'b', ARGV[i], 't', now)
  ids[#ids + 1] = n
end
return ids
"""

# ARGV: intake base, expected position, new position, dead-letter base, now, unreadable
# count, (entry id, reason, body)*, then as ENQUEUE: base, windows key, now, window count,
# (key, ms)*, (key, dedupe, ots, payload)*. Returns {-1, 0} when the position moved (nothing
# changed), else {accepted, duplicates}: the position, the consumed entries' removal, their
# dead letters and the new jobs in one step.
CONSUME_INTAKE = (
    _SCHEDULE
    + _ADD
    + """
local intake = ARGV[1]
if tonumber(redis.call('GET', intake .. 'pos') or '0') ~= tonumber(ARGV[2]) then
  return {-1, 0}
end
redis.call('SET', intake .. 'pos', ARGV[3])
redis.call('XTRIM', intake .. 'log', 'MINID', (tonumber(ARGV[3]) + 1) .. '-0')
local dead, now = ARGV[4], ARGV[5]
local i = 7
for _ = 1, tonumber(ARGV[6]) do
  local n = redis.call('INCR', dead .. 'deadseq')
  redis.call('HSET', dead .. 'dead:' .. n, 'key', '', 'dk', ARGV[i], 'payload', ARGV[i + 2],
    'reason', ARGV[i + 1], 'attempts', 1, 'at', now)
  redis.call('ZADD', dead .. 'deadidx', now, n)
  i = i + 3
end
return add_jobs(ARGV[i], ARGV[i + 1], ARGV[i + 2], i + 3, #ARGV)
"""
)

# ARGV: old intake queue base, intake base. Moves the raw webhooks an older version kept
# as jobs of an ``intake`` queue into the log, in the order they were enqueued, and drops
# that queue's keys (its dead letters stay). Returns how many moved.
UPGRADE_INTAKE = """
local old, intake = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGE', old .. 'all', 0, -1)
for _, id in ipairs(ids) do
  local j = redis.call('HMGET', old .. 'job:' .. id, 'key', 'payload', 'enq')
  if j[2] then
    local n = redis.call('INCR', intake .. 'seq')
    redis.call('XADD', intake .. 'log', n .. '-0', 'b', j[2], 't', j[3])
    redis.call('DEL', old .. 'keyq:' .. j[1])
  end
  redis.call('DEL', old .. 'job:' .. id)
end
redis.call('DEL', old .. 'all', old .. 'ready', old .. 'leased', old .. 'lease',
  old .. 'dedupe', old .. 'seq', old .. 'leaseseq')
return #ids
"""

# ARGV: base, now, limit, lease expiry.
# Returns [id, key, dk, ots, payload, attempts, enq, lease token]*.
CLAIM = (
    _SCHEDULE
    + """
local base, now, limit, expiry = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
-- Leases that expired belong to a replica that died or stalled: hand their jobs out again.
for _, key in ipairs(redis.call('ZRANGEBYSCORE', base .. 'leased', '-inf', now)) do
  release(base, key)
end
local out = {}
local scanned = 0
while #out < limit and scanned < limit * 4 do
  local keys = redis.call('ZRANGEBYSCORE', base .. 'ready', '-inf', now, 'LIMIT', 0, limit)
  if #keys == 0 then break end
  for _, key in ipairs(keys) do
    scanned = scanned + 1
    redis.call('ZREM', base .. 'ready', key)
    local head = redis.call('ZRANGE', base .. 'keyq:' .. key, 0, 0)[1]
    if head then
      local id = tostring(tonumber(head))
      local j = redis.call('HMGET', base .. 'job:' .. id, 'dk', 'ots', 'payload', 'attempts',
        'enq', 'due')
      if tonumber(j[6]) > now then
        redis.call('ZADD', base .. 'ready', j[6], key)  -- stale score: not due yet
      elseif #out < limit then
        local token = id .. ':' .. redis.call('INCR', base .. 'leaseseq')
        redis.call('ZADD', base .. 'leased', expiry, key)
        redis.call('HSET', base .. 'lease', key, token)
        out[#out + 1] = {id, key, j[1], j[2], j[3], j[4], j[5], token}
      else
        redis.call('ZADD', base .. 'ready', j[6], key)
      end
    end
  end
end
return out
"""
)

# ARGV: base, now, expiry, (key, id, token)*. Returns the ids whose lease ran out or
# moved on to another claim.
RENEW = """
local base, now, expiry = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local lost = {}
for i = 4, #ARGV, 3 do
  local key, id, token = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local held = tonumber(redis.call('ZSCORE', base .. 'leased', key) or '0')
  if held > now and redis.call('HGET', base .. 'lease', key) == token then
    redis.call('ZADD', base .. 'leased', expiry, key)
  else
    lost[#lost + 1] = id
  end
end
return lost
"""

# ARGV: base, id, key, lease token, mode (done|retry|dead), then for retry: due, error;
# for dead: reason, now. A job done is done whoever reports it; a retry from a claim
# that lost its lease is ignored (the new holder decides). Only the holder's outcome
# releases the lease and schedules the customer's next job.
SETTLE = (
    _SCHEDULE
    + """
local base, id, key, token, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local jk = base .. 'job:' .. id
local holder = redis.call('HGET', base .. 'lease', key) == token
if mode == 'retry' then
  if holder and redis.call('EXISTS', jk) == 1 then
    redis.call('HINCRBY', jk, 'attempts', 1)
    redis.call('HSET', jk, 'due', ARGV[6], 'err', ARGV[7])
  end
else
  if mode == 'dead' then
    local j = redis.call('HMGET', jk, 'dk', 'payload', 'attempts', 'ots')
    if j[1] then
      local n = redis.call('INCR', base .. 'deadseq')
      redis.call('HSET', base .. 'dead:' .. n, 'key', key, 'dk', j[1], 'payload', j[2],
        'reason', ARGV[6], 'attempts', tonumber(j[3]) + 1, 'at', ARGV[7], 'ots', j[4])
      redis.call('ZADD', base .. 'deadidx', ARGV[7], n)
    end
  end
  redis.call('DEL', jk)
  redis.call('ZREM', base .. 'keyq:' .. key, string.format('%020d', tonumber(id)))
  redis.call('ZREM', base .. 'all', id)
end
if holder then
  release(base, key)
end
return 1
"""
)

# ARGV: base, cutoff. Drops dead letters that failed before the cutoff.
PRUNE_DEAD = """
local base = ARGV[1]
local old = redis.call('ZRANGEBYSCORE', base .. 'deadidx', '-inf', '(' .. ARGV[2])
for _, n in ipairs(old) do
  redis.call('DEL', base .. 'dead:' .. n)
end
redis.call('ZREMRANGEBYSCORE', base .. 'deadidx', '-inf', '(' .. ARGV[2])
return #old
"""

# ARGV: base, dead letter number, now. Puts the dead letter back as a fresh job of its
# queue (attempts 0, due now, its key, dedupe key and order time; no dedupe check: the key
# was seen already) and drops the dead letter, in one step. Returns 1, or 0 when there is
# no such dead letter, it holds no job (an intake one: a raw webhook) or its text was
# blanked (retention).
REPLAY_DEAD = (
    _SCHEDULE
    + """
local base, n, now = ARGV[1], ARGV[2], ARGV[3]
local d = redis.call('HMGET', base .. 'dead:' .. n, 'key', 'dk', 'payload', 'ots')
if not d[2] or d[1] == '' or d[3] == '' then return 0 end
local key = d[1]
local id = redis.call('INCR', base .. 'seq')
redis.call('HSET', base .. 'job:' .. id, 'key', key, 'dk', d[2], 'ots', d[4] or 0,
  'payload', d[3], 'attempts', 0, 'enq', now, 'due', now)
redis.call('ZADD', base .. 'keyq:' .. key, d[4] or 0, string.format('%020d', id))
redis.call('ZADD', base .. 'all', now, id)
if not redis.call('ZSCORE', base .. 'leased', key) then
  schedule(base, key)
end
redis.call('DEL', base .. 'dead:' .. n)
redis.call('ZREM', base .. 'deadidx', n)
return 1
"""
)

# ARGV: base, cutoff (failed before it; 'inf': any), number*. Drops those dead letters
# (each only if it failed before the cutoff); returns how many.
PURGE_DEAD = """
local base, cutoff = ARGV[1], tonumber(ARGV[2])
local removed = 0
for i = 3, #ARGV do
  local at = redis.call('ZSCORE', base .. 'deadidx', ARGV[i])
  if at and tonumber(at) < cutoff then
    redis.call('DEL', base .. 'dead:' .. ARGV[i])
    redis.call('ZREM', base .. 'deadidx', ARGV[i])
    removed = removed + 1
  end
end
return removed
"""

# KEYS: record, index, due index, set of record namespaces; ARGV: expected-present flag
# ('1'/'0'), expected, value, key, time to live in ms ('0': none), index score (expiry time
# or 'inf'), due time ('': none, out of the due index), namespace.
COMPARE_AND_PUT = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[5] == '0' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[5])
end
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[4])
if ARGV[7] == '' then
  redis.call('ZREM', KEYS[3], ARGV[4])
else
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[4])
end
redis.call('SADD', KEYS[4], ARGV[8])
return 1
"""

# KEYS: index, due index; ARGV: now. Forgets the index entries of records whose time to
# live has passed (Redis expired the records themselves), in both indexes.
PRUNE_RECORD_INDEXES = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for i = 1, #gone, 500 do
  redis.call('ZREM', KEYS[2], unpack(gone, i, math.min(i + 499, #gone)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return #gone
"""

# ARGV: base, cutoff. Blanks the payload of dead letters that failed before the cutoff
# (their reason and ids stay); returns how many were blanked now.
BLANK_DEAD_PAYLOADS = """
local base = ARGV[1]
local blanked = 0
for _, n in ipairs(redis.call('ZRANGEBYSCORE', base .. 'deadidx', '-inf', '(' .. ARGV[2])) do
  local key = base .. 'dead:' .. n
  if redis.call('HSTRLEN', key, 'payload') > 0 then
    redis.call('HSET', key, 'payload', '')
    blanked = blanked + 1
  end
end
return blanked
"""

# ARGV: base, customer. Removes the customer's jobs from one queue as a settlement would
# (job hashes, their order, the ready/leased/lease entries); returns how many.
FORGET_JOBS = """
local base, key = ARGV[1], ARGV[2]
local ids = redis.call('ZRANGE', base .. 'keyq:' .. key, 0, -1)
for _, padded in ipairs(ids) do
  local id = tostring(tonumber(padded))
  redis.call('DEL', base .. 'job:' .. id)
  redis.call('ZREM', base .. 'all', id)
end
redis.call('DEL', base .. 'keyq:' .. key)
redis.call('ZREM', base .. 'ready', key)
redis.call('ZREM', base .. 'leased', key)
redis.call('HDEL', base .. 'lease', key)
return #ids
"""
