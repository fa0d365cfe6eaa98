"""The one Lua script every Redis quota call runs: charge N counters atomically, time from Redis.

KEYS: one key per counter, then (optionally) the deduplication key.
ARGV: ``n``, ``best_effort`` (0/1), ``independent`` (0/1), ``dedup_ttl_ms`` (0: no
deduplication), then five values per counter: ``algorithm`` (0 clock-aligned fixed
window, 1 rolling window, 2 allocation mode, 3 and 4 the rate-limit service's fixed-window
counting, see below, 5 a fixed window from the first charge), ``max``, ``window_ms``,
``bucket_ms`` (for allocation mode: the idle TTL), ``amount`` (negative: a release, the
newest grants first); optionally a last value, the time in milliseconds to use instead of
Redis's ``TIME`` (tests drive it from a fake clock).
Returns four integers per counter — granted, remaining, reset_ms, fits (0/1) —
then 1 when the answer was replayed for a deduplication id, else 0.

Keys of one call must share a hash slot (callers hash-tag them by counter) so the
script also runs on a Redis Cluster. Every key written gets a TTL. A counter that
would go over its limit is not charged; unless ``independent``, no counter is
charged when one does not fit.

Codes 3 and 4 count as envoyproxy/ratelimit does: a code-3 counter is always
charged, also past its limit (``remaining`` goes negative: limit minus the count);
code-4 counters (its ``STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT``) are charged only
when none of the call's code-4 counters would go over its limit, or when this one
would. Neither takes part in all-or-nothing.
"""

from __future__ import annotations

import hashlib

SCRIPT = r"""
local n = tonumber(ARGV[1])
local now = tonumber(ARGV[5 + n * 5])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local best = ARGV[2] == '1'
local independent = ARGV[3] == '1'
local dedup_ttl = tonumber(ARGV[4])
local used, resets, grants, lefts, fits = {}, {}, {}, {}, {}
local marks = {}

local function state(i)
  local base = 4 + (i - 1) * 5
  local algo, max = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local window, bucket = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local key = KEYS[i]
  if algo == 0 or algo == 3 or algo == 4 then
    local idx = math.floor(now / window)
    local v = redis.call('HMGET', key, 'w', 'n')
    local u = 0
    if v[1] and tonumber(v[1]) == idx then u = tonumber(v[2]) end
    marks[i] = idx
    return u, (idx + 1) * window - now
  elseif algo == 5 then
    local v = redis.call('HMGET', key, 'e', 'n')
    if v[1] and tonumber(v[1]) > now then
      marks[i] = 1
      return tonumber(v[2]), tonumber(v[1]) - now
    end
    marks[i] = 0
    return 0, window
  elseif algo == 1 then
    local cur = math.floor(now / bucket)
    local nb = math.floor(window / bucket + 0.5)
    local first = cur - nb + 1
    local all = redis.call('HGETALL', key)
    local u, oldest, dead = 0, nil, {}
    for j = 1, #all, 2 do
      local b = tonumber(all[j])
      if b < first then
        dead[#dead + 1] = all[j]
      else
        u = u + tonumber(all[j + 1])
        if oldest == nil or b < oldest then oldest = b end
      end
    end
    if #dead > 0 then redis.call('HDEL', key, unpack(dead)) end
    marks[i] = cur
    return u, ((oldest or cur) + nb) * bucket - now
  else
    return tonumber(redis.call('GET', key) or '0'), 0
  end
end

for i = 1, n do
  used[i], resets[i] = state(i)
end

if dedup_ttl > 0 then
  -- "granted:kept_until:valid_until" (ms, the script's clock): a retried call within kept_until is
  -- answered the first call's grant, valid until the first grant's validity ends (Mixer's redisquota).
  local previous = redis.call('GET', KEYS[n + 1])
  if previous then
    local g, kept, valid = string.match(previous, '^(-?%d+):(%d+):(%d+)$')
    if g and now < tonumber(kept) then
      local max = tonumber(ARGV[6])
      return {tonumber(g), math.max(0, max - used[1]), math.max(0, tonumber(valid) - now), 1, 1}
    end
  end
end

local any_over = false
for i = 1, n do
  local base = 4 + (i - 1) * 5
  if tonumber(ARGV[base + 1]) == 4 and used[i] + tonumber(ARGV[base + 5]) > tonumber(ARGV[base + 2]) then
    any_over = true
  end
end

local all_fit = true
local counting = {}
for i = 1, n do
  local base = 4 + (i - 1) * 5
  local algo, max, amount = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2]), tonumber(ARGV[base + 5])
  local left = math.max(0, max - used[i])
  lefts[i] = left
  if algo == 3 or algo == 4 then
    counting[i] = true
    lefts[i] = max - used[i]
    local over = used[i] + amount > max
    if algo == 4 and any_over and not over then grants[i] = 0 else grants[i] = amount end
    if over then fits[i] = 0 else fits[i] = 1 end
  elseif amount < 0 then
    grants[i] = -math.min(-amount, used[i])
    fits[i] = 1
  elseif amount <= left then
    grants[i] = amount
    fits[i] = 1
  else
    fits[i] = 0
    all_fit = false
    if best and (independent or n == 1) then grants[i] = left else grants[i] = 0 end
  end
end
if not all_fit and not independent and n > 1 then
  for i = 1, n do if not counting[i] then grants[i] = 0 end end
end

local out = {}
for i = 1, n do
  local base = 4 + (i - 1) * 5
  local algo, window, bucket = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local g, key = grants[i], KEYS[i]
  local remaining = lefts[i]
  if algo == 3 or algo == 4 then
    -- Read again: a key given twice in one call counts both times, one after the other.
    local v = redis.call('HMGET', key, 'w', 'n')
    local u = 0
    if v[1] and tonumber(v[1]) == marks[i] then u = tonumber(v[2]) end
    if g ~= 0 then
      redis.call('HSET', key, 'w', marks[i], 'n', u + g)
      redis.call('PEXPIRE', key, resets[i] + 1000)
    end
    remaining = tonumber(ARGV[4 + (i - 1) * 5 + 2]) - (u + g)
  elseif g ~= 0 then
    remaining = lefts[i] - g
    if algo == 0 then
      redis.call('HSET', key, 'w', marks[i], 'n', used[i] + g)
      redis.call('PEXPIRE', key, resets[i] + 1000)
    elseif algo == 5 then
      if marks[i] == 1 then
        redis.call('HSET', key, 'n', used[i] + g)
      else
        redis.call('HSET', key, 'e', now + window, 'n', g)
        redis.call('PEXPIRE', key, window)
      end
    elseif algo == 1 and g < 0 then
      local left, fields = -g, redis.call('HKEYS', key)
      table.sort(fields, function(a, b) return tonumber(a) > tonumber(b) end)
      for _, f in ipairs(fields) do
        if left <= 0 then break end
        local have = tonumber(redis.call('HGET', key, f))
        local take = math.min(have, left)
        if take == have then redis.call('HDEL', key, f) else redis.call('HINCRBY', key, f, -take) end
        left = left - take
      end
    elseif algo == 1 then
      redis.call('HINCRBY', key, marks[i], g)
      redis.call('PEXPIRE', key, window + bucket)
    else
      local total = used[i] + g
      if total <= 0 then redis.call('DEL', key) else redis.call('SET', key, total, 'PX', bucket) end
    end
  end
  out[#out + 1] = math.abs(g)
  out[#out + 1] = remaining
  out[#out + 1] = resets[i]
  out[#out + 1] = fits[i]
end
if dedup_ttl > 0 and grants[1] ~= 0 then
  local valid = resets[1]
  if tonumber(ARGV[5]) == 1 then valid = tonumber(ARGV[7]) end
  if grants[1] < 0 or tonumber(ARGV[5]) == 2 then valid = 0 end
  local keep = math.max(dedup_ttl, valid)
  redis.call('SET', KEYS[n + 1], math.abs(grants[1]) .. ':' .. (now + keep) .. ':' .. (now + valid), 'PX', keep)
end
out[#out + 1] = 0
return out
"""

#: The SHA1 Redis knows the script by (EVALSHA).
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()

#: Script codes: 0 a clock-aligned fixed window, 1 a rolling window, 5 a fixed window that starts
#: at its first charge and lasts ``window_ms`` (Mixer's redisquota FIXED_WINDOW).
ALGORITHM_CODES = {"ALIGNED_FIXED_WINDOW": 0, "ROLLING_WINDOW": 1, "FIXED_WINDOW": 5}
ALLOCATION_MODE = 2
#: The rate-limit service's counting: always charged (3), or charged as STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT (4).
COUNT_ALWAYS, COUNT_STOP_WHEN_OVER = 3, 4
