-- wrk script: POST pre-signed Instagram webhooks, each body once per run.
--
--   wrk -t T -c C -d 10s -s bench/signed_webhooks.lua URL -- BODIES_FILE T
--
-- Lua in wrk has no HMAC, so bench/wrk_ack.py writes BODIES_FILE beforehand: one line per
-- request, "<X-Hub-Signature-256 value> <body>" (Meta's bodies are ASCII JSON with no
-- newline). Thread k of T sends lines k, k+T, k+2T, ... so no two threads send the same
-- message id (the relay would drop a repeat as a duplicate instead of storing it). Every
-- request is formatted once, at start-up, so sending costs a table lookup.

local counter = 0
local threads = {}

function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path, total = args[1], tonumber(args[2])
  requests, sent = {}, 0
  local n = 0
  for line in io.lines(path) do
    if n % total == index then
      local space = line:find(" ", 1, true)
      local headers = {
        ["Content-Type"] = "application/json",
        ["X-Hub-Signature-256"] = line:sub(1, space - 1),
      }
      table.insert(requests, wrk.format("POST", nil, headers, line:sub(space + 1)))
    end
    n = n + 1
  end
  count = #requests
  if count == 0 then
    error("no request bodies in " .. path)
  end
end

function request()
  sent = sent + 1
  -- Past the end the bodies repeat (duplicates); the report says when that happened.
  return requests[(sent - 1) % count + 1]
end

function done(summary, latency, requests_)
  local wrapped = 0
  for _, thread in ipairs(threads) do
    if thread:get("sent") > thread:get("count") then
      wrapped = 1
    end
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "non_2xx": %d, "socket_errors": %d, "wrapped": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    wrapped))
end
