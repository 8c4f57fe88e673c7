"""Code two or more stages share, grouped by concern: config.py (recipes), stage.py (how a stage
starts), runs.py (run folders), pipeline.py (hand-off names), timing.py (where the time went),
distributed.py, stats.py, and data/, models/, rewards/, tracking/, training/, planning/
(docs/design.md)."""

import logging

# bitsandbytes (QLoRA's 4-bit weights; the `serving` extra) warns at import, on every command that
# imports PEFT, that an optional CPU kernels package is missing: nothing to act on, and a one-line
# error must stay one line
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
