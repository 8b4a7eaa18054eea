"""The Celery side: `celery -A workers worker` and `celery -A workers beat` find `app` here."""

from __future__ import annotations

from workers.app import app

__all__ = ["app"]
