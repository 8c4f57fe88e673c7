"""Code shared by every stage: config, models, data records, hygiene, tracking, runs."""

import logging

# bitsandbytes (the `serving` extra: quantized copies, QLoRA), imported by PEFT whenever it is
# installed, warns at import on every AVX512-BF16 CPU that the optional `kernels` package is missing
# — a package that fetches kernels from the hub at run time, which we never do; its own CPU kernels
# are used instead. Left alone, that line would open the stderr of every stage.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
