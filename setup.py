"""Only the optional C part of the backup walk; everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds and guard.backup.walk.statpage uses its
pure-Python twin (same results, slower on a million files).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("guard.backup.walk._statpage", ["guard/backup/walk/_statpage.c"], optional=True)]
)
