"""Repairs: one command per kind of damage, each planned first, backed up, batched, recorded, undoable."""
