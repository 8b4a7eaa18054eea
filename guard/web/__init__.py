"""guard serve: the status page and Prometheus metrics (Starlette, uvicorn, prometheus_client)."""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8077
