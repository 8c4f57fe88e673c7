"""Stage 3': offline batch-constrained Q-learning (BCQ) from logged responses and rewards."""
