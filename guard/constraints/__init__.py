"""Rules as constraints: what enforces each rule (plan), the migrations that add them (rollout)."""
