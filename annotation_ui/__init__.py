"""Stage 2a: the annotation app where people rank model responses in the browser."""
