-- Plain HTTP cost: GET /healthz answers a constant from the I/O thread (no
-- JSON parsing, no model), so its req/s is the ceiling of the HTTP layer.
wrk.method = "GET"
wrk.path = "/healthz"
