"""Writing to a file descriptor without losing a short write."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of data to fd: os.write may take only part of it (a pipe, a signal, a disk
    that fills up part way), and the rest must follow."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
