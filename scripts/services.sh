#!/usr/bin/env bash
# Start the local PostgreSQL and Redis when they are installed but stopped; say what to do when missing.
set -u

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if [ -n "${GUARD_SKIP_SERVICES:-}" ]; then exit 0; fi

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  fi
  if ! pg_up; then
    echo "PostgreSQL is not running on 127.0.0.1:5432 and could not be started: install it (apt-get install postgresql) or start it yourself." >&2
    exit 1
  fi
fi

if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
  fi
  if ! redis_up; then
    echo "Redis is not running on 127.0.0.1:6379 and could not be started: install it (apt-get install redis-server) or start it yourself." >&2
    exit 1
  fi
fi
