-- Spreads requests over many signed-in sessions: each request carries the next session's cookie
-- (the file named after `--`, one cookie value a line). Each wrk thread starts at its own place.
local cookies = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do cookies[#cookies + 1] = line end
  i = math.random(#cookies)
end
function request()
  i = i % #cookies + 1
  return wrk.format(nil, nil, { ["Cookie"] = "fedialt_session=" .. cookies[i] })
end
function done(summary, latency, requests)
  io.write(string.format("P50US %d\nP99US %d\n", latency:percentile(50), latency:percentile(99)))
  io.write(string.format("RPS %.1f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("REQUESTS %d\n", summary.requests))
  io.write(string.format("SOCKERR %d\n", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
