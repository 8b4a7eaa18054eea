"""History in guard's schema: what guard did (events), the daily counts, and the weekly numbers."""
