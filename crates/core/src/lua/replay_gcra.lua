-- gatehouse: a single-use record, then the key's GCRA budget, in one round trip.
--
-- The gateway's last two steps for a verified request (replay, then the key's budget for the
-- route group) as one script, so that a request costs one Redis round trip fewer. Same order
-- and the same outcomes as `SET NX PX` followed by gcra.lua: a replayed request leaves the
-- bucket alone; a fresh one burns its record whatever the budget then says (a 429 is not a
-- licence to resend the same signature).
--
-- KEYS[1]  the single-use record, "<prefix>nonce:<hex>".
-- KEYS[2]  the bucket, as KEYS[1] of gcra.lua.
-- ARGV[1]  the record's lifetime in ms (>= 1).
-- ARGV[2..4]  T, tau and cost, as ARGV[1..3] of gcra.lua.
--
-- Returns an empty array when the record already existed (a replay), else gcra.lua's reply.
-- Bad arguments raise an error before anything is written. A corrupt bucket raises an error
-- after the record is written: the caller refuses the request (fail closed), and the record
-- stays, as it would after two separate calls.
-- Both keys must live on one node (one Redis, or one hash slot of a cluster).
--
-- Put after gcra_lib.lua (REPLAY_GCRA_LUA in ratelimit.rs is the two together).

local ttl = tonumber(ARGV[1])
local t, tau, cost = gcra_args(ARGV[2], ARGV[3], ARGV[4])
if not ttl or ttl < 1 or ttl ~= math.floor(ttl) or not t then
  return redis.error_reply('ERR replay_gcra: arguments must be integers ttl >= 1, T >= 1, tau >= 0, cost >= 1')
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', string.format('%d', ttl)) then
  return {}
end
return gcra(KEYS[2], t, tau, cost)
