"""guard serve: the status page and Prometheus metrics (Starlette, uvicorn, prometheus_client)."""
