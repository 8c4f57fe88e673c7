"""Stage 2b: reward model trained on preference pairs and rankings (issue #4; not built yet)."""
