-- gatehouse GCRA library: the functions gcra.lua and replay_gcra.lua call (this file is put
-- in front of either; it is never run alone).

if redis.replicate_commands then
  -- Redis < 5 replicates scripts verbatim; TIME makes these scripts non-deterministic.
  redis.replicate_commands()
end

-- Parses T, tau and cost (see gcra.lua); nil when any is not an integer in range.
local function gcra_args(a_t, a_tau, a_cost)
  local t = tonumber(a_t)
  local tau = tonumber(a_tau)
  local cost = tonumber(a_cost or '1')
  if not t or not tau or not cost or t < 1 or tau < 0 or cost < 1
      or t ~= math.floor(t) or tau ~= math.floor(tau) or cost ~= math.floor(cost) then
    return nil
  end
  return t, tau, cost
end

-- One GCRA decision on `bucket`; the reply documented in gcra.lua.
local function gcra(bucket, t, tau, cost)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local limit = tau + t

  local tat = now
  local stored = redis.call('GET', bucket)
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
    redis.call('SET', bucket, string.format('%d', new_tat), 'PX', string.format('%d', ttl))
    return {1, 0, math.floor((now + limit - new_tat) / t), ttl, now}
  end
  return {0, allow_at - now, 0, tat - now, now}
end
