"""The backup walk: stat every file by page, read again only what changed."""
