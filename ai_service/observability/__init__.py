"""What operators see: loguru logging with request ids and access lines, and Prometheus metrics.

May import `ai_service.server.log_relay` and `ai_service.devices`; Flask only inside the request hooks.
"""
