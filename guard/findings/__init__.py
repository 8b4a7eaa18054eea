"""Findings: the values checks return, the ledger in guard.findings, and their report."""
