-- Prints wrk's summary in a form the script reads. No per-response hook: calling Lua for every
-- response costs wrk more CPU the bigger the body, CPU it takes from the app on the same cores.
-- Responses that are not 2xx are counted by the app itself (fedialt_http_responses_total).
function done(summary, latency, requests)
  io.write(string.format("P50US %d\nP99US %d\n", latency:percentile(50), latency:percentile(99)))
  io.write(string.format("RPS %.1f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("REQUESTS %d\n", summary.requests))
  io.write(string.format("SOCKERR %d\n", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
