# One image for every incident-guard process (see Procfile and docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY guard ./guard
COPY workers ./workers
COPY watchers ./watchers
COPY examples ./examples
RUN pip install --no-cache-dir .
USER nobody
