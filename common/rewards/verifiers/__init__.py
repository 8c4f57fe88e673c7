"""Instruction-following verifiers: rules that decide whether a reply follows instructions such as
"answer in at most 25 words", "reply in Chinese" or "use exactly 3 bullet points" (IFEval, IFBench,
Tülu 3's RLVR) — rewards nobody can argue with, in English and Chinese.

- `checks`:    one pure function per constraint type, `check(reply, **args) -> bool`;
- `registry`:  the types by name with their argument schemas, validation, strict/loose verdicts, row scores;
- `conflicts`: which constraints cannot be asked together (`compatible`), for prompt generators.

Every type, its arguments and its rule: `python -c "from common.rewards.verifiers import describe; print(describe())"`.
"""

from common.rewards.verifiers.checks import RELATIONS, language_of
from common.rewards.verifiers.conflicts import compatible, conflict
from common.rewards.verifiers.registry import (
    TYPES,
    Arg,
    ConstraintType,
    constraint_level_accuracy,
    constraint_results,
    follows,
    loose_variants,
    prompt_level_accuracy,
    score,
    validate,
    validate_constraints,
)


def describe() -> str:
    """Every constraint type: its name, arguments and docstring."""
    out = []
    for name, kind in TYPES.items():
        out.append(f"{name}({', '.join(kind.args)}): {' '.join(kind.doc.split())}")
    return "\n".join(out)


__all__ = [
    "RELATIONS",
    "TYPES",
    "Arg",
    "ConstraintType",
    "compatible",
    "conflict",
    "constraint_level_accuracy",
    "constraint_results",
    "describe",
    "follows",
    "language_of",
    "loose_variants",
    "prompt_level_accuracy",
    "score",
    "validate",
    "validate_constraints",
]
