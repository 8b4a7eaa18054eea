"""Only the optional C part of the backup walk; everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds and the walk uses the pure-Python twins
(same results, slower on a million files): guard.backup.walk.statpage's for the page stat,
guard.backup.walk.pageread's for the page read.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "guard.backup.walk._statpage",
            ["guard/backup/walk/_statpage.c"],
            depends=["guard/backup/walk/sha256.h"],  # its own SHA-256: no library headers needed
            optional=True,
        )
    ]
)
