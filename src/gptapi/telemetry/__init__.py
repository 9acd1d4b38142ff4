"""Telemetry beside the request path: Prometheus metrics, process memory, the memory guard's
headroom and the JSON-lines request log. Fed from the request record and the gateway; never
in the way of a request."""
