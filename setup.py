"""Only the optional C parts: the backup walk's and the files check's; everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds and guard.backup.walk.statpage and
guard.fs.pathsets use their pure-Python twins (same results, slower on a million files).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("guard.backup.walk._statpage", ["guard/backup/walk/_statpage.c"], optional=True),
        Extension("guard.fs._pathsets", ["guard/fs/_pathsets.c"], optional=True),
    ]
)
