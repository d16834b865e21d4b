-- Prints one JSON line with wrk's summary for bench/runner to parse:
-- requests, duration, bytes, errors (in all and by kind) and latency
-- percentiles (microseconds); and, for checking sluice's counters against
-- (bench/runner/metricscheck.go), req_bytes, the size of the request wrk
-- sends (every request is the same one), and probes, the connections wrk
-- opened before the run: wrk.resolve connects to each address the host
-- resolves to and closes at once (wrk.connect), keeping those that
-- answered in wrk.addrs, so each of those is one more connection accepted.
-- %.0f, not %d: LuaJIT's %d wraps above 2^31 and bulk runs move more bytes.
-- Defining setup and init does not change what wrk does; only request and
-- response would (a dynamic request, headers parsed for every response).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

-- Runs in each thread's Lua state once wrk.init has set the Host header,
-- with what wrk.init then formats the request from, so req_bytes is the
-- length of the request wrk sends.
function init(args)
  req_bytes = #wrk.format()
end

done = function(summary, latency, requests)
  local e = summary.errors
  local req, probes = -1, -1
  if threads[1] then
    req = threads[1]:get("req_bytes") or -1
  end
  if wrk.addrs then
    probes = #wrk.addrs
  end
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":%.0f,"connect_errors":%.0f,"read_errors":%.0f,"write_errors":%.0f,' ..
    '"status_errors":%.0f,"timeouts":%.0f,"req_bytes":%.0f,"probes":%.0f,' ..
    '"p50_us":%.0f,"p99_us":%.0f,"max_us":%.0f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.status + e.timeout,
    e.connect, e.read, e.write, e.status, e.timeout, req, probes,
    latency:percentile(50), latency:percentile(99), latency.max))
end
