-- Counts responses that are not 200 (a 303 to /login would mean the session was lost).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("non200")
  end
  io.write(string.format("NON200 %d\n", total))
  io.write(string.format("P50US %d\nP99US %d\n", latency:percentile(50), latency:percentile(99)))
  io.write(string.format("RPS %.1f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("REQUESTS %d\n", summary.requests))
  io.write(string.format("SOCKERR %d\n", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
