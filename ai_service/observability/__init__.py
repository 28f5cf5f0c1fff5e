"""What operators see: loguru logging with request ids and access lines, and Prometheus metrics.

May import ai_service.server.log_relay, .devices and .settings; Flask only inside the request hooks, which get
what they need at install time. Never http, service, api, web, models or engine (they all call into this package).
"""
