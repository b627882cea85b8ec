-- wrk script for bench/gateway_load.py: walks a file of unique pre-signed request targets,
-- one per line, so that no signature is ever sent twice (gatehouse refuses replays).
--   wrk -t1 -c64 -d8s -s walk.lua http://127.0.0.1:PORT -- FILE MODE APIKEY
-- MODE "path":    GET <target>                        (nginx, gatehouse reverse proxy)
-- MODE "forward": GET /_gh/auth/forward with X-Original-Method/X-Original-URI = <target>
--                 (gatehouse forward auth answering the check alone, as nginx would ask it)
-- Requests are built by plain concatenation (wrk.format per request costs the generator
-- about twice as much). No response() callback: wrk then skips handing headers and bodies to Lua, and still counts
-- non-2xx answers itself. If the file runs out, the walk wraps (those requests are replays and
-- show up as non-2xx) and WRAPPED is printed.

local targets = {}
local n = 0
local i = 0
wrapped = 0 -- global: done() reads it from each thread's Lua state
local threads = {}
local head, tail -- the request is head .. target .. tail (cheaper than wrk.format per request)

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  local mode = args[2] or "path"
  for line in io.lines(args[1]) do
    n = n + 1
    targets[n] = line
  end
  local h = "Host: " .. wrk.headers["Host"] .. "\r\nUser-Agent: python-requests/2.34.2\r\nAccept: */*\r\n"
  if args[3] and args[3] ~= "" then
    h = h .. "X-MBX-APIKEY: " .. args[3] .. "\r\n"
  end
  if mode == "forward" then
    head = "GET /_gh/auth/forward HTTP/1.1\r\n" .. h .. "X-Original-Method: GET\r\nX-Original-URI: "
    tail = "\r\n\r\n"
  else
    head = "GET "
    tail = " HTTP/1.1\r\n" .. h .. "\r\n"
  end
  -- the file is loaded: the load starts now (gateway_load.py samples CPU counters from here on)
  io.write("LOADED\n")
  io.stdout:flush()
end

request = function()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  return head .. targets[i] .. tail
end

done = function(summary, latency, requests)
  local wrapped = 0
  for _, t in ipairs(threads) do
    wrapped = wrapped + (t:get("wrapped") or 0)
  end
  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d p50_us=%d p99_us=%d wrapped=%d duration_us=%d\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), wrapped, summary.duration))
end
