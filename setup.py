"""Only the optional C part of the backup walk; everything else is in pyproject.toml.

optional=True: without a C compiler the install still succeeds and guard.backup.statpage uses its
pure-Python twin (same results, slower on a million files).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("guard.backup._statpage", ["guard/backup/_statpage.c"], optional=True)])
