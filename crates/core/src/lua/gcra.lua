-- gatehouse GCRA rate limiter (generic cell rate algorithm), shared by every instance.
--
-- The same algorithm as gatehouse_core::ratelimit::Gcra::check_n, in integer milliseconds.
-- The time comes from Redis (TIME), so instances need no shared clock and a skewed instance
-- cannot stretch or shrink anyone's budget (F5).
--
-- KEYS[1]  the bucket, e.g. "rl:{group}:{subject}"; holds the theoretical arrival time (TAT,
--          ms since the epoch) as an integer string.
-- ARGV[1]  T, the emission interval in ms (>= 1): one request per T in the long run.
-- ARGV[2]  tau, the burst tolerance in ms (>= 0) = (burst - 1) * T.
-- ARGV[3]  cost in units of T (>= 1, optional, default 1): the route's weight.
--
-- Returns {allowed, retry_after_ms, remaining, reset_after_ms, now_ms}:
--   allowed         1 or 0;
--   retry_after_ms  0 when allowed, else how long until this request would fit;
--   remaining       unit-cost requests still allowed at once after this one (0 when denied);
--   reset_after_ms  how long until the bucket is full again (the key's PTTL when allowed);
--   now_ms          the Redis time the decision used (for logs and the equivalence test).
-- A denied request changes nothing. The key's TTL is at most tau + T (whatever the cost), so idle buckets
-- disappear on their own. Bad arguments or a corrupt stored value raise an error: the caller
-- must then deny or fall back to its degraded local limiter, never allow unconditionally (F4).

if redis.replicate_commands then
  -- Redis < 5 replicates scripts verbatim; TIME makes this one non-deterministic.
  redis.replicate_commands()
end

local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3] or '1')
if not t or not tau or not cost or t < 1 or tau < 0 or cost < 1
    or t ~= math.floor(t) or tau ~= math.floor(tau) or cost ~= math.floor(cost) then
  return redis.error_reply('ERR gcra: arguments must be integers T >= 1, tau >= 0, cost >= 1')
end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local limit = tau + t

local tat = now
local stored = redis.call('GET', KEYS[1])
if stored then
  tat = tonumber(stored)
  if not tat then
    return redis.error_reply('ERR gcra: corrupt bucket state')
  end
  if tat < now then
    tat = now
  end
end

local new_tat = tat + cost * t
local allow_at = new_tat - limit
if now >= allow_at then
  local ttl = new_tat - now
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl))
  return {1, 0, math.floor((now + limit - new_tat) / t), ttl, now}
end
return {0, allow_at - now, 0, tat - now, now}
