"""Stage 2a: the annotation app where people rank responses (issue #3; not built yet)."""
