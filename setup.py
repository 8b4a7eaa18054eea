"""Only the optional C parts of the backup; everything else is in pyproject.toml.

guard/backup/walk/_statpage.c (the walk's page stat) and guard/backup/repo/_chunker.c (the dump's
content-defined cuts). optional=True: without a C compiler the install still succeeds and
guard.backup.walk.statpage and guard.backup.repo.chunker use their pure-Python twins (same results,
slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("guard.backup.walk._statpage", ["guard/backup/walk/_statpage.c"], optional=True),
        Extension("guard.backup.repo._chunker", ["guard/backup/repo/_chunker.c"], optional=True),
    ]
)
