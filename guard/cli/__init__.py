"""The `guard` command: parse, call the core, print, map errors to exit codes. Nothing below imports it."""
