"""Stage 3 (offline): batch-constrained Q-learning on logged responses (issue #6; not built yet)."""
