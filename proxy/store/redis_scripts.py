"""The Lua scripts of the Redis usage ledger; each runs atomically inside Redis.

Amounts are integers of nano-USD (10⁻⁹ USD) kept by `HINCRBY` (exact int64). Lua
compares them as doubles, which is exact below 2⁵³ nano-USD (about 9 million USD
per key or organization). Negative amounts are built by string manipulation
(`neg('5')` is `'-5'`), never by Lua arithmetic, so no number is ever formatted as
`1e+15`.

Layout under the prefix P (default `gw:`):

    P k:<key>     hash usage, reserved, limit ('' = unlimited)  -- the key's ledger
    P o:<org>     hash credits, reserved                         -- the org's ledger
    P held        zset reservation -> expiry (ms, Redis clock): one member per
                  reservation, naming what it holds: res, key, org, amount, then key
                  window and project window when it holds one, each field after the
                  first preceded by the byte 255 (never in UTF-8 text: any id is safe)
    P r:<res>, P exp   the layout before `held` (a hash key, org, amount[, kw, pw]
                  per reservation and a zset res -> expiry): still reclaimed, never
                  written (see below)
    P pend:k      hash key -> usage settled, not yet in PostgreSQL
    P pend:o      hash org -> credits change, not yet in PostgreSQL
    P flushing:k / flushing:o / flushing:id   the batch being written to PostgreSQL
    P gen         bumped after every completed flush
    P seq         the admission ticket sequence
    P q:k:<key> / q:o:<org>   zset ticket -> seq: requests waiting for admission, in order
    P tx          hash ticket -> expiry (ms): a ticket not refreshed stops counting
    P wake        pub/sub channel: "<key>\t<org>" when room may have been freed
    P b:<window>  hash usage, reserved: one period-budget window, named
                  `k:<key>|<start>` or `p:<project>|<start>` (proxy.budgets); it
                  expires a while after its last use (then reloads from PostgreSQL)
    P pend:b / flushing:b   window -> usage settled, not yet in PostgreSQL
    P rw:<s>      zset res -> request time (s, the gateway's clock): subject s's rate
                  window (s = k:<key> or p:<project>, only those with rate limits)
    P rt:<s>      hash res -> tokens, and '#sum': the tokens of the window
    P rp:<s>      zset res -> reservation expiry (ms, Redis clock): requests in flight
                  (the three expire together 2 minutes after the reservation TTL from
                  the subject's last admission)

A key's and an organization's ledger also hold `qu`: the latest expiry of any of
their tickets; while it is past nobody waits, so admission skips the line and
settlements publish nothing.

A reservation is its member in `held` alone: admission writes one ZADD, settlement's
ZREM says whether it was still held (not reclaimed), three commands fewer a request
than a hash beside an index entry (HSET, DEL and the reclaim's HMGET), which at one
request at a time is Redis's time on the request's path. The scripts build the
member from the arguments both calls already carry (id, key, organization, amount,
windows), so the caller sends nothing more.

Upgrading from the `r:`/`exp` layout: the two live side by side under one prefix.
Instances of the previous version keep writing and reclaiming `r:`/`exp`, and settle
and release only their own reservations; they never read `held`, so nothing of this
version's is reclaimed or dropped by them. This version writes only `held`; its
RECLAIM (at start and on demand) and LEDGER (every key read, and the key cache's
refresh of a key in use, about twice a second) also reclaim expired `r:`/`exp`
reservations, left behind by a previous instance that stopped without settling
them. Its ADMIT reclaims only `held`, and only for a claim that does not fit
otherwise: an expired old-layout reservation is dropped by the next key read instead,
so until then it can only make admission wait, never admit past a limit. Going back
to the previous version leaves `held` unread: a reservation of an instance that
stopped without settling it stays counted as reserved until its ledger is reloaded.
"""

from __future__ import annotations

__all__ = [
    "ADMIT",
    "FLUSH_DONE",
    "FLUSH_START",
    "LEDGER",
    "LOAD",
    "LOAD_WINDOWS",
    "RATE_WINDOWS",
    "RECLAIM",
    "RELEASE",
    "RESERVE",
    "SETTLE",
    "SET_CREDITS",
    "WINDOWS",
    "WITHDRAW",
]

# Shared helpers, each a piece of Lua text: a script includes the ones it calls (defining
# a function costs Redis a closure on every run).
_NEG = """
local function neg(s)
    if s == '0' then return '0' end
    if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
    return '-' .. s
end
"""
_NOW_MS = """
local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""
# The previous layout's reservation (`r:<res>` and its `exp` entry).
_DROP_ONE = """
local function drop(p, rid)
    local r = p .. 'r:' .. rid
    local fields = redis.call('HMGET', r, 'key', 'org', 'amount', 'kw', 'pw')
    redis.call('ZREM', p .. 'exp', rid)
    if not fields[3] then return false end
    redis.call('DEL', r)
    for i = 4, 5 do
        if fields[i] and fields[i] ~= '' then
            local w = p .. 'b:' .. fields[i]
            if redis.call('EXISTS', w) == 1 then
                redis.call('HINCRBY', w, 'reserved', neg(fields[3]))
            end
        end
    end
    local k = p .. 'k:' .. fields[1]
    if redis.call('EXISTS', k) == 1 then
        redis.call('HINCRBY', k, 'reserved', neg(fields[3]))
    end
    if fields[2] ~= '' then
        local o = p .. 'o:' .. fields[2]
        if redis.call('EXISTS', o) == 1 then
            redis.call('HINCRBY', o, 'reserved', neg(fields[3]))
        end
    end
    return fields[3]
end
"""
# A reservation of this layout, by its member in `held`: false if it was not held
# (already settled, released or reclaimed), else its fields {res, key, org, amount[,
# key window, project window]}, its amounts no longer reserved.
_DROP_HELD = """
local function drop_held(p, member)
    if redis.call('ZREM', p .. 'held', member) == 0 then return false end
    local f, from = {}, 1
    while true do
        local stop = string.find(member, '\\255', from, true)
        if not stop then break end
        f[#f + 1] = string.sub(member, from, stop - 1)
        from = stop + 1
    end
    f[#f + 1] = string.sub(member, from)
    local back = neg(f[4])
    for i = 5, 6 do
        if f[i] and f[i] ~= '' then
            local w = p .. 'b:' .. f[i]
            if redis.call('EXISTS', w) == 1 then redis.call('HINCRBY', w, 'reserved', back) end
        end
    end
    local k = p .. 'k:' .. f[2]
    if redis.call('EXISTS', k) == 1 then redis.call('HINCRBY', k, 'reserved', back) end
    if f[3] ~= '' then
        local o = p .. 'o:' .. f[3]
        if redis.call('EXISTS', o) == 1 then redis.call('HINCRBY', o, 'reserved', back) end
    end
    return f
end
"""
_WAKE = """
local function wake(p, key, org)
    local now = now_ms()
    local waiting = tonumber(redis.call('HGET', p .. 'k:' .. key, 'qu') or '0') > now
    if not waiting and org ~= '' then
        waiting = tonumber(redis.call('HGET', p .. 'o:' .. org, 'qu') or '0') > now
    end
    if waiting then redis.call('PUBLISH', p .. 'wake', key .. '\t' .. org) end
end
"""
_LEAVE = """
local function leave(p, tid, key, org)
    redis.call('ZREM', p .. 'q:k:' .. key, tid)
    if org ~= '' then redis.call('ZREM', p .. 'q:o:' .. org, tid) end
    redis.call('HDEL', p .. 'tx', tid)
end
"""
_RATE_WINDOW = """
-- One subject's rate window at request time `now` (seconds): entries that left it are
-- dropped (their tokens leave '#sum'), so the cost is O(1) per admission on average.
-- Returns requests, tokens, parallel, oldest, newest (the last two '' when empty).
local function rate_window(p, s, now, wall)
    local rw, rt, rp = p .. 'rw:' .. s, p .. 'rt:' .. s, p .. 'rp:' .. s
    local gone = redis.call('ZRANGEBYSCORE', rw, '-inf', now - 60)
    if #gone > 0 then
        local freed = 0
        for _, rid in ipairs(gone) do
            freed = freed + tonumber(redis.call('HGET', rt, rid) or '0')
            redis.call('HDEL', rt, rid)
        end
        redis.call('ZREMRANGEBYSCORE', rw, '-inf', now - 60)
        if freed ~= 0 then redis.call('HINCRBY', rt, '#sum', -freed) end
    end
    redis.call('ZREMRANGEBYSCORE', rp, '-inf', wall)
    local first = redis.call('ZRANGE', rw, 0, 0, 'WITHSCORES')
    local last = redis.call('ZRANGE', rw, -1, -1, 'WITHSCORES')
    return {redis.call('ZCARD', rw), tonumber(redis.call('HGET', rt, '#sum') or '0'),
            redis.call('ZCARD', rp), first[2] or '', last[2] or ''}
end
"""
_RATE_TEXT = """
local function rate_text(w)
    if not w then return '-' end
    return w[1] .. ',' .. w[2] .. ',' .. w[3] .. ',' .. w[4] .. ',' .. w[5]
end
"""
_RATE_CLOSE = """
-- The request is no longer in flight; its tokens in the windows of the subjects given
-- from ARGV[first] on become `tokens`, or (`forget`) it leaves them altogether.
local function rate_close(p, rid, tokens, forget, first)
    for i = first, #ARGV do
        local s = ARGV[i]
        local rt = p .. 'rt:' .. s
        local old = redis.call('HGET', rt, rid)
        if old then
            if forget then
                redis.call('HDEL', rt, rid)
                redis.call('ZREM', p .. 'rw:' .. s, rid)
                redis.call('HINCRBY', rt, '#sum', -tonumber(old))
            else
                redis.call('HSET', rt, rid, tokens)
                redis.call('HINCRBY', rt, '#sum', tonumber(tokens) - tonumber(old))
            end
        end
        redis.call('ZREM', p .. 'rp:' .. s, rid)
    end
end
"""
_RECLAIM = """
local function reclaim(p, max, now)
    local expired = redis.call('ZRANGEBYSCORE', p .. 'held', '-inf', now or now_ms(), 'LIMIT', 0,
        max)
    for _, member in ipairs(expired) do drop_held(p, member) end
    return #expired
end
"""
# Both layouts' expired reservations (the module doc: upgrading).
_RECLAIM_BOTH = """
local function reclaim_both(p, max)
    local now = now_ms()
    local expired = redis.call('ZRANGEBYSCORE', p .. 'exp', '-inf', now, 'LIMIT', 0, max)
    for _, rid in ipairs(expired) do drop(p, rid) end
    return #expired + reclaim(p, max, now)
end
"""
# All of them, for the scripts off the request path.
_DROP = (
    _NEG
    + _NOW_MS
    + _DROP_ONE
    + _DROP_HELD
    + _WAKE
    + _LEAVE
    + _RATE_WINDOW
    + _RATE_TEXT
    + _RATE_CLOSE
    + _RECLAIM
    + _RECLAIM_BOTH
)

# ARGV: prefix, reservation id, key id, org id or '', amount, ttl ms.
# Returns 'ok' | 'limit' | 'credits' | 'load'.
RESERVE = (
    _DROP
    + """
local p, rid, key, org, amount, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
reclaim_both(p, 100)
local k = p .. 'k:' .. key
local o = p .. 'o:' .. org
if redis.call('EXISTS', k) == 0 or (org ~= '' and redis.call('EXISTS', o) == 0) then
    return 'load'
end
local kv = redis.call('HMGET', k, 'usage', 'reserved', 'limit')
-- INVARIANT: admitted only while usage + in-flight reservations < limit.
if kv[3] ~= '' and tonumber(kv[1]) + tonumber(kv[2]) >= tonumber(kv[3]) then
    return 'limit'
end
if org ~= '' then
    local ov = redis.call('HMGET', o, 'credits', 'reserved')
    if tonumber(ov[1]) - tonumber(ov[2]) <= 0 then return 'credits' end
    redis.call('HINCRBY', o, 'reserved', amount)
end
redis.call('HINCRBY', k, 'reserved', amount)
redis.call('ZADD', p .. 'held', now_ms() + tonumber(ttl),
    rid .. '\\255' .. key .. '\\255' .. org .. '\\255' .. amount)
return 'ok'
"""
)

# ARGV: prefix, reservation id, key id, org id or '', cost, reserved amount; then, for a
# reservation holding a budget window or rate limits (nothing for one without): key
# window or '', project window or '', window ttl ms, tokens, then its rate subjects.
# The id, key, organization, amount and windows are the ones ADMIT (RESERVE) was given:
# they make the reservation's member in `held`.
# The cost is charged even when the reservation expired: the request did complete;
# budget windows are charged in the window the request was admitted in, rate windows
# get the tokens the provider reported.
SETTLE = (
    _NEG
    + _NOW_MS
    + _RATE_CLOSE
    + """
local p, rid, key, org, cost, amount = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local k = p .. 'k:' .. key
local o = p .. 'o:' .. org
-- Each ledger is read once: whether it is loaded (its settled figure is there) and its
-- line's `qu` (below, whether anyone waits).
local kv = redis.call('HMGET', k, 'usage', 'qu')
local ov = {false, false}
if org ~= '' then ov = redis.call('HMGET', o, 'credits', 'qu') end
-- drop_held without parsing the member: the caller passes what it names, and its
-- removal (it was not reclaimed after expiring) is what says it was still held.
local kwn, pwn = ARGV[7] or '', ARGV[8] or ''
local member = rid .. '\\255' .. key .. '\\255' .. org .. '\\255' .. amount
if kwn ~= '' or pwn ~= '' then member = member .. '\\255' .. kwn .. '\\255' .. pwn end
if redis.call('ZREM', p .. 'held', member) == 1 then
    local back = neg(amount)
    for _, name in ipairs({kwn, pwn}) do
        if name ~= '' then
            local w = p .. 'b:' .. name
            if redis.call('EXISTS', w) == 1 then redis.call('HINCRBY', w, 'reserved', back) end
        end
    end
    if kv[1] then redis.call('HINCRBY', k, 'reserved', back) end
    if org ~= '' and ov[1] then redis.call('HINCRBY', o, 'reserved', back) end
end
for i = 7, 8 do
    local name = ARGV[i] or ''
    if name ~= '' then
        local w = p .. 'b:' .. name
        if redis.call('EXISTS', w) == 1 then
            redis.call('HINCRBY', w, 'usage', cost)
            redis.call('PEXPIRE', w, ARGV[9])
        end
        redis.call('HINCRBY', p .. 'pend:b', name, cost)
    end
end
rate_close(p, rid, ARGV[10], false, 11)
if kv[1] then redis.call('HINCRBY', k, 'usage', cost) end
redis.call('HINCRBY', p .. 'pend:k', key, cost)
if org ~= '' then
    if ov[1] then redis.call('HINCRBY', o, 'credits', neg(cost)) end
    redis.call('HINCRBY', p .. 'pend:o', org, neg(cost))
end
-- wake(p, key, org) with the `qu` fields already read (this script never sets them); a
-- ledger whose line never opened has none, and then the clock is not read.
if kv[2] or ov[2] then
    local now = now_ms()
    if tonumber(kv[2] or '0') > now or tonumber(ov[2] or '0') > now then
        redis.call('PUBLISH', p .. 'wake', key .. '\t' .. org)
    end
end
return 'ok'
"""
)

# ARGV: prefix, reservation id, 'forget' (an admission taken back: it leaves its rate
# windows) or '' (it still counts as a request, with 0 tokens), key id, org id or '',
# reserved amount, key window or '', project window or '' (as SETTLE: its member in
# `held`), then its rate subjects.
RELEASE = (
    _DROP
    + """
local p, rid, key, org, amount, kwn, pwn =
    ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local member = rid .. '\\255' .. key .. '\\255' .. org .. '\\255' .. amount
if kwn ~= '' or pwn ~= '' then member = member .. '\\255' .. kwn .. '\\255' .. pwn end
local held = drop_held(p, member)
rate_close(p, rid, '0', ARGV[3] == 'forget', 9)
if held then wake(p, key, org) end
return 'ok'
"""
)

# Fair admission (Store.admit). ARGV: prefix, ticket, reservation id, key id, org id or
# '', amount, reservation ttl ms, ticket ttl ms; with a budget window or rate limits,
# then key budget or '', key window or '', project budget or '', project window or '',
# window ttl ms; with rate limits, then
# project id, request time (s), tokens, then for the key and for the project: rated
# ('1' or ''), rpm, tpm, max parallel ('' = no ceiling). Without rate limits nothing
# follows the window ttl, without windows either nothing follows the ticket ttl (every
# argument costs Redis about a thousand instructions: a string and a table slot).
# Returns 'ok' | 'queued' | 'limit' | 'key_budget' | 'project_budget' | 'credits' |
# 'load' | a rate reason; with rate limits, 'ok' and a rate reason are followed by the
# windows (common.parse_rate_state).
# Every step costs on the request path (one request's admission waits for it): numbers
# are parsed once (`tonumber` is a strtod), names built only when used.
ADMIT = (
    _NEG
    + _NOW_MS
    + _DROP_HELD
    + _RECLAIM
    + _LEAVE
    + _RATE_WINDOW
    + _RATE_TEXT
    + """
local p, tid, rid, key, org, amount, ttl, tttl =
    ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local kb, kwn, pb, pwn, wttl = ARGV[9] or '', ARGV[10] or '', ARGV[11] or '', ARGV[12] or '',
    ARGV[13]
local rated = ARGV[17] == '1' or ARGV[21] == '1'
-- One clock reading for the whole admission (the reclaim's and the lines').
local now = now_ms()
local k = p .. 'k:' .. key
local o = p .. 'o:' .. org
local kw = kwn ~= '' and p .. 'b:' .. kwn
local pw = pwn ~= '' and p .. 'b:' .. pwn
-- Each ledger is read once; a ledger not loaded has no settled figure (LOAD and
-- LOAD_WINDOWS always write it, and nothing removes it but the whole hash's expiry).
local kv = redis.call('HMGET', k, 'usage', 'reserved', 'limit', 'qu')
local ov = {'0', '0', false}
if org ~= '' then ov = redis.call('HMGET', o, 'credits', 'reserved', 'qu') end
local kwv = {'0', '0'}
if kw then kwv = redis.call('HMGET', kw, 'usage', 'reserved') end
local pwv = {'0', '0'}
if pw then pwv = redis.call('HMGET', pw, 'usage', 'reserved') end
if not kv[1] or not ov[1] or not kwv[1] or not pwv[1] then return 'load' end
-- Whether a live ticket other than `tid` is ahead of it in line `q` (expired ones go).
local function ahead_in(q, now)
    for _, other in ipairs(redis.call('ZRANGE', q, 0, -1)) do
        if other == tid then return false end
        local expiry = redis.call('HGET', p .. 'tx', other)
        if expiry and tonumber(expiry) > now then return true end
        redis.call('ZREM', q, other)
        redis.call('HDEL', p .. 'tx', other)  -- its other line drops it on sight
    end
    return false
end
-- A line's `qu`: the latest expiry of its tickets (none while it never opened).
local kqu = kv[4] and tonumber(kv[4]) or 0
local oqu = ov[3] and tonumber(ov[3]) or 0
-- A ticket only exists while the key's (organization's) line is open.
local waiting = kqu > now or oqu > now
-- The settled figures alone decide a refusal (false: no such ceiling).
local usage, limit = tonumber(kv[1]), kv[3] ~= '' and tonumber(kv[3])
if limit and usage >= limit then
    if waiting then leave(p, tid, key, org) end
    return 'limit'
end
local kwu, kbn = kw and tonumber(kwv[1]), kw and tonumber(kb)
if kw and kwu >= kbn then
    if waiting then leave(p, tid, key, org) end
    return 'key_budget'
end
local pwu, pbn = pw and tonumber(pwv[1]), pw and tonumber(pb)
if pw and pwu >= pbn then
    if waiting then leave(p, tid, key, org) end
    return 'project_budget'
end
local credits = org ~= '' and tonumber(ov[1])
if credits and credits <= 0 then
    if waiting then leave(p, tid, key, org) end
    return 'credits'
end
-- Rate limits refuse at once, never queue.
-- INVARIANT: the same rule as common.rate_refusal and policies/gateway.rego.
local windows, limits, at, tokens = {}, nil, nil, nil
if rated then
    at, tokens = tonumber(ARGV[15]), tonumber(ARGV[16])
    limits = {{rated = ARGV[17] == '1', s = 'k:' .. key, rpm = ARGV[18], tpm = ARGV[19],
               par = ARGV[20]},
              {rated = ARGV[21] == '1', s = 'p:' .. ARGV[14], rpm = ARGV[22], tpm = ARGV[23],
               par = ARGV[24]}}
    for i, l in ipairs(limits) do
        if l.rated then windows[i] = rate_window(p, l.s, at, now) end
    end
    for i, l in ipairs(limits) do
        local w = windows[i]
        local reason = nil
        if w then
            if l.rpm ~= '' and w[1] >= tonumber(l.rpm) then
                reason = 'rate_limit_requests'
            elseif l.tpm ~= '' and w[2] + tokens > tonumber(l.tpm) then
                reason = 'rate_limit_tokens'
            elseif l.par ~= '' and w[3] >= tonumber(l.par) then
                reason = 'max_parallel'
            end
        end
        if reason then
            if waiting then leave(p, tid, key, org) end
            return reason .. '\t' .. rate_text(windows[1]) .. '\t' .. rate_text(windows[2])
        end
    end
end
-- INVARIANT: admitted only while usage + in-flight reservations < limit (each budget
-- window's settled + in-flight usage < its budget, credits - in-flight credit
-- reservations > 0), in ticket order.
local function fits_now()
    return (not limit or usage + tonumber(kv[2]) < limit)
        and (not kw or kwu + tonumber(kwv[2]) < kbn)
        and (not pw or pwu + tonumber(pwv[2]) < pbn)
        and (not credits or credits - tonumber(ov[2]) > 0)
end
local fits = fits_now()
-- Expired reservations (of an instance that stopped without settling them) hold room
-- until reclaimed: reclaimed here only when they may be what keeps this claim out, not
-- on every admission (a command fewer on the request path; reclaiming only frees room,
-- and LEDGER, every key read, sweeps them too).
if not fits and reclaim(p, 100, now) > 0 then
    kv[2] = redis.call('HGET', k, 'reserved')
    if org ~= '' then ov[2] = redis.call('HGET', o, 'reserved') end
    if kw then kwv[2] = redis.call('HGET', kw, 'reserved') end
    if pw then pwv[2] = redis.call('HGET', pw, 'reserved') end
    fits = fits_now()
end
local ahead = false
if fits and kqu > now then ahead = ahead_in(p .. 'q:k:' .. key, now) end
if fits and not ahead and oqu > now then ahead = ahead_in(p .. 'q:o:' .. org, now) end
if fits and not ahead then
    if waiting then leave(p, tid, key, org) end
    if org ~= '' then redis.call('HINCRBY', o, 'reserved', amount) end
    redis.call('HINCRBY', k, 'reserved', amount)
    if kw then
        redis.call('HINCRBY', kw, 'reserved', amount)
        redis.call('PEXPIRE', kw, wttl)
    end
    if pw then
        redis.call('HINCRBY', pw, 'reserved', amount)
        redis.call('PEXPIRE', pw, wttl)
    end
    -- The windows only when it holds one (SETTLE and RELEASE build the same member).
    local member = rid .. '\\255' .. key .. '\\255' .. org .. '\\255' .. amount
    if kw or pw then member = member .. '\\255' .. kwn .. '\\255' .. pwn end
    redis.call('ZADD', p .. 'held', now + tonumber(ttl), member)
    if not rated then return 'ok' end
    for i, l in ipairs(limits) do
        local w = windows[i]
        if w then
            redis.call('ZADD', p .. 'rw:' .. l.s, ARGV[15], rid)
            redis.call('HSET', p .. 'rt:' .. l.s, rid, ARGV[16])
            redis.call('HINCRBY', p .. 'rt:' .. l.s, '#sum', ARGV[16])
            redis.call('ZADD', p .. 'rp:' .. l.s, now + tonumber(ttl), rid)
            -- An idle subject's window goes once its last request has left it and can
            -- no longer be in flight (a deleted key leaves nothing behind).
            local keep = tonumber(ttl) + 120000
            for _, part in ipairs({'rw:', 'rt:', 'rp:'}) do
                redis.call('PEXPIRE', p .. part .. l.s, keep)
            end
            local oldest, newest = ARGV[15], ARGV[15]
            if w[4] ~= '' and tonumber(w[4]) < at then oldest = w[4] end
            if w[5] ~= '' and tonumber(w[5]) > at then newest = w[5] end
            windows[i] = {w[1] + 1, w[2] + tokens, w[3] + 1, oldest, newest}
        end
    end
    return 'ok\t' .. rate_text(windows[1]) .. '\t' .. rate_text(windows[2])
end
local expiry = now + tonumber(tttl)
if not redis.call('HGET', p .. 'tx', tid) then
    local seq = redis.call('INCR', p .. 'seq')
    redis.call('ZADD', p .. 'q:k:' .. key, seq, tid)
    if org ~= '' then redis.call('ZADD', p .. 'q:o:' .. org, seq, tid) end
end
redis.call('HSET', p .. 'tx', tid, expiry)
if kqu < expiry then redis.call('HSET', k, 'qu', expiry) end
if org ~= '' and oqu < expiry then redis.call('HSET', o, 'qu', expiry) end
return 'queued'
"""
)

# Take a ticket out of line. ARGV: prefix, ticket, key id, org id or ''.
WITHDRAW = (
    _DROP
    + """
leave(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 'ok'
"""
)

# The windows of the subjects given (ARGV[3..]) at request time ARGV[2], for reading.
RATE_WINDOWS = (
    _DROP
    + """
local p, at, now = ARGV[1], tonumber(ARGV[2]), now_ms()
local out = {}
for i = 3, #ARGV do out[#out + 1] = rate_text(rate_window(p, ARGV[i], at, now)) end
return table.concat(out, '\t')
"""
)

# Budget windows' figures for reading. ARGV: prefix, then window names. Returns usage and
# reserved per window, in order; usage '' for a window not loaded (a nil would end the
# array).
WINDOWS = """
local out = {}
for i = 2, #ARGV do
    local v = redis.call('HMGET', ARGV[1] .. 'b:' .. ARGV[i], 'usage', 'reserved')
    out[#out + 1] = v[1] or ''
    out[#out + 1] = v[2] or '0'
end
return out
"""

# ARGV: prefix. Returns how many reservations were reclaimed.
RECLAIM = (
    _DROP
    + """
return reclaim_both(ARGV[1], 10000)
"""
)

# Read a key's and its org's ledger for the request path. Expired reservations are
# reclaimed first: a key refused on the figures left by a crashed instance never
# reaches RESERVE (which also reclaims), so without this it would stay blocked.
# ARGV: prefix, key id, org id. Returns {usage, reserved, credits, reserved}; a field
# of a ledger not loaded yet is nil.
LEDGER = (
    _DROP
    + """
local p, key, org = ARGV[1], ARGV[2], ARGV[3]
reclaim_both(p, 100)
local kv = redis.call('HMGET', p .. 'k:' .. key, 'usage', 'reserved')
local ov = redis.call('HMGET', p .. 'o:' .. org, 'credits', 'reserved')
return {kv[1], kv[2], ov[1], ov[2]}
"""
)

# Load a key's (and optionally an org's) ledger from PostgreSQL figures read by the
# caller after it read `gen`. Refused ('retry') if a flush is in progress or finished
# since, because then the PostgreSQL figures and the pending deltas may overlap.
# ARGV: prefix, gen seen, key id or '', usage, limit ('' = none), org id or '', credits.
LOAD = """
local p, gen, key, usage, limit, org, credits =
    ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', p .. 'flushing:id') == 1 then return 'retry' end
if (redis.call('GET', p .. 'gen') or '0') ~= gen then return 'retry' end
local k = p .. 'k:' .. key
if key ~= '' and redis.call('EXISTS', k) == 0 then
    local pending = redis.call('HGET', p .. 'pend:k', key) or '0'
    redis.call('HSET', k, 'usage', usage, 'reserved', 0, 'limit', limit)
    redis.call('HINCRBY', k, 'usage', pending)
end
if org ~= '' then
    local o = p .. 'o:' .. org
    if redis.call('EXISTS', o) == 0 then
        local pending = redis.call('HGET', p .. 'pend:o', org) or '0'
        redis.call('HSET', o, 'credits', credits, 'reserved', 0)
        redis.call('HINCRBY', o, 'credits', pending)
    end
end
return 'ok'
"""

# Load budget windows from PostgreSQL figures read by the caller after it read `gen`
# (refused, 'retry', under the same condition as LOAD). ARGV: prefix, gen seen, window
# ttl ms, then pairs of window name and settled usage.
LOAD_WINDOWS = """
local p, gen, wttl = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', p .. 'flushing:id') == 1 then return 'retry' end
if (redis.call('GET', p .. 'gen') or '0') ~= gen then return 'retry' end
for i = 4, #ARGV, 2 do
    local w = p .. 'b:' .. ARGV[i]
    if redis.call('EXISTS', w) == 0 then
        local pending = redis.call('HGET', p .. 'pend:b', ARGV[i]) or '0'
        redis.call('HSET', w, 'usage', ARGV[i + 1], 'reserved', 0)
        redis.call('HINCRBY', w, 'usage', pending)
        redis.call('PEXPIRE', w, wttl)
    end
end
return 'ok'
"""

# Start (or resume) a flush. ARGV: prefix, new batch id.
# Returns false (nothing to flush) or {batch id, key deltas, org deltas, window deltas}.
FLUSH_START = """
local p, batch = ARGV[1], ARGV[2]
local fk, fo, fb, fid = p .. 'flushing:k', p .. 'flushing:o', p .. 'flushing:b', p .. 'flushing:id'
if redis.call('EXISTS', fid) == 0 then
    local hk = redis.call('EXISTS', p .. 'pend:k')
    local ho = redis.call('EXISTS', p .. 'pend:o')
    local hb = redis.call('EXISTS', p .. 'pend:b')
    if hk == 0 and ho == 0 and hb == 0 then return false end
    if hk == 1 then redis.call('RENAME', p .. 'pend:k', fk) end
    if ho == 1 then redis.call('RENAME', p .. 'pend:o', fo) end
    if hb == 1 then redis.call('RENAME', p .. 'pend:b', fb) end
    redis.call('SET', fid, batch)
end
return {redis.call('GET', fid), redis.call('HGETALL', fk), redis.call('HGETALL', fo),
        redis.call('HGETALL', fb)}
"""

# Finish the flush `batch` once PostgreSQL committed it. ARGV: prefix, batch id.
FLUSH_DONE = """
local p, batch = ARGV[1], ARGV[2]
if redis.call('GET', p .. 'flushing:id') == batch then
    redis.call('DEL', p .. 'flushing:k', p .. 'flushing:o', p .. 'flushing:b',
        p .. 'flushing:id')
    redis.call('INCR', p .. 'gen')
end
return 'ok'
"""

# Set an organization's credits to an absolute amount: the change is recorded as a
# pending delta, so it reaches PostgreSQL through the same flush as the spending.
# ARGV: prefix, org id, new credits. Returns 'ok' or 'load'.
SET_CREDITS = (
    _DROP
    + """
local p, org, credits = ARGV[1], ARGV[2], ARGV[3]
local o = p .. 'o:' .. org
if redis.call('EXISTS', o) == 0 then return 'load' end
local current = redis.call('HGET', o, 'credits')
redis.call('HSET', o, 'credits', credits)
redis.call('HINCRBY', p .. 'pend:o', org, credits)
redis.call('HINCRBY', p .. 'pend:o', org, neg(current))
return 'ok'
"""
)
