-- wrk script for bench/gateway_load.py: walks a file of unique pre-signed request targets,
-- one per line, so that no signature is ever sent twice (gatehouse refuses replays).
--   wrk -t1 -c64 -d8s -s walk.lua http://127.0.0.1:PORT -- FILE MODE APIKEY
-- MODE "path":    GET <target>                        (nginx, gatehouse reverse proxy)
-- MODE "forward": GET /_gh/auth/forward with X-Original-Method/X-Original-URI = <target>
--                 (gatehouse forward auth answering the check alone, as nginx would ask it)
-- No response() callback: wrk then skips handing headers and bodies to Lua, and still counts
-- non-2xx answers itself. If the file runs out, the walk wraps (those requests are replays and
-- show up as non-2xx) and WRAPPED is printed.

local targets = {}
local n = 0
local i = 0
wrapped = 0 -- global: done() reads it from each thread's Lua state
local mode = "path"
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  mode = args[2] or "path"
  for line in io.lines(args[1]) do
    n = n + 1
    targets[n] = line
  end
  wrk.headers["User-Agent"] = "python-requests/2.34.2"
  wrk.headers["Accept"] = "*/*"
  if args[3] and args[3] ~= "" then
    wrk.headers["X-MBX-APIKEY"] = args[3]
  end
end

request = function()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  if mode == "forward" then
    -- wrk.format uses either the given headers or wrk.headers, never both: copy them in.
    local h = { ["X-Original-Method"] = "GET", ["X-Original-URI"] = targets[i] }
    for k, v in pairs(wrk.headers) do
      h[k] = v
    end
    return wrk.format("GET", "/_gh/auth/forward", h)
  end
  return wrk.format("GET", targets[i])
end

done = function(summary, latency, requests)
  local wrapped = 0
  for _, t in ipairs(threads) do
    wrapped = wrapped + (t:get("wrapped") or 0)
  end
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d p50_us=%d p99_us=%d wrapped=%d\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), wrapped))
end
