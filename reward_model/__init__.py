"""Stage 2b: the reward model — a scalar head on a causal LM, trained on preference pairs and rankings."""
