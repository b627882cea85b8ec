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

-- Put after gcra_lib.lua (GCRA_LUA in ratelimit.rs is the two together).

local t, tau, cost = gcra_args(ARGV[1], ARGV[2], ARGV[3])
if not t then
  return redis.error_reply('ERR gcra: arguments must be integers T >= 1, tau >= 0, cost >= 1')
end
return gcra(KEYS[1], t, tau, cost)
