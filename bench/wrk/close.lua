-- A new connection, so a full TLS handshake, for every request (scenario S3
-- by hand: wrk -s bench/wrk/close.lua https://127.0.0.1:PORT/). The runner
-- passes -H "Connection: close" with report.lua instead.
wrk.headers["Connection"] = "close"
