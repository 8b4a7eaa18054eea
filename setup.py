"""Only the optional C parts; everything else is in pyproject.toml.

guard/backup/walk/_statpage.c (the backup walk's page stat and page read, with its own SHA-256),
guard/backup/repo/_chunker.c (the dump's content-defined cuts) and guard/fs/_pathsets.c (the files
check's folder listing and path matching). optional=True: without a C compiler the install still
succeeds and guard.backup.walk.statpage, guard.backup.walk.pageread, guard.backup.repo.chunker and
guard.fs.pathsets use their pure-Python twins (same results, slower on a million files).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "guard.backup.walk._statpage",
            ["guard/backup/walk/_statpage.c"],
            depends=["guard/backup/walk/sha256.h"],  # its own SHA-256: no library headers needed
            optional=True,
        ),
        Extension("guard.backup.repo._chunker", ["guard/backup/repo/_chunker.c"], optional=True),
        Extension("guard.fs._pathsets", ["guard/fs/_pathsets.c"], optional=True),
    ]
)
