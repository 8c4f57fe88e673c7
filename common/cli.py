"""Entry-point plumbing: people get one clear line for expected errors, not a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from common.config import ConfigError
from common.data import DataError
from common.models import ModelNotFoundError
from common.runs import RunExistsError

EXPECTED = (ConfigError, DataError, ModelNotFoundError, RunExistsError, FileNotFoundError)


def run_stage(main: Callable[[], None]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        main()
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
