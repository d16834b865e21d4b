-- Prints one JSON line with wrk's summary for bench/runner to parse:
-- requests, duration, bytes, errors and latency percentiles (microseconds).
-- %.0f, not %d: LuaJIT's %d wraps above 2^31 and bulk runs move more bytes.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":%.0f,"p50_us":%.0f,"p99_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
