"""Long-running processes that turn database and file changes into Celery tasks."""
