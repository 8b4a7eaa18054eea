"""The one uploads-folder seam: pure path rules, the root, the forked scan and file-descriptor I/O."""
