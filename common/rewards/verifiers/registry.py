"""Constraint types by name, their argument schemas, validation, and scoring (strict and loose).

A constraint is a dict `{"type": <name>, <argument>: <value>, ...}`, e.g.
`{"type": "word_count", "relation": "at_most", "n": 25}`; a row carries a list of them.

- `validate(constraint, where)` / `validate_constraints(constraints, where)`: a DataError whose
  message is one line: `<file:line>: constraints[2] (word_count): 'relation' must be one of …`.
- `follows(reply, constraint, loose)`: IFEval's strict and loose verdicts on one constraint.
- `score(reply, constraints, strict)`: the share of constraints followed (open-instruct's
  reward), or 1/0 for all-or-nothing.
- `prompt_level_accuracy` / `constraint_level_accuracy`: IFEval's two accuracies over a data set.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from string import ascii_lowercase
from typing import Any

from common.data import DataError
from common.rewards.verifiers import checks
from common.rewards.verifiers.checks import LANGUAGES, RELATIONS

_REQUIRED = object()


@dataclass(frozen=True)
class Arg:
    """One argument: `int` (≥ minimum), `str` (not blank; one of `choices` when given) or `list` (a
    non-empty list of non-blank strings); `default` makes it optional."""

    kind: type
    choices: tuple[str, ...] = ()
    minimum: int = 0
    default: Any = _REQUIRED

    def problem(self, name: str, value: Any) -> str | None:
        """What is wrong with `value` for this argument, or None."""
        if self.kind is int:
            if not isinstance(value, int) or isinstance(value, bool) or value < self.minimum:
                return f"'{name}' must be an integer ≥ {self.minimum}, got {value!r}"
        elif self.kind is list:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                return f"'{name}' must be a non-empty list of non-blank strings, got {value!r}"
        elif self.choices:
            if value not in self.choices:
                return f"'{name}' must be one of {', '.join(self.choices)}, got {value!r}"
        elif not isinstance(value, str) or not value.strip():
            return f"'{name}' must be non-blank text, got {value!r}"
        return None


@dataclass(frozen=True)
class ConstraintType:
    check: Callable[..., bool]
    args: dict[str, Arg] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return self.check.__doc__ or ""


_RELATION = Arg(str, RELATIONS)


def _counted(minimum: int = 0, relations: tuple[str, ...] = RELATIONS) -> dict[str, Arg]:
    return {"relation": Arg(str, relations), "n": Arg(int, minimum=minimum)}


TYPES: dict[str, ConstraintType] = {
    "word_count": ConstraintType(checks.word_count, _counted()),
    "sentence_count": ConstraintType(checks.sentence_count, _counted(1)),
    "paragraph_count": ConstraintType(checks.paragraph_count, _counted(1)),
    "chinese_char_count": ConstraintType(checks.chinese_char_count, _counted()),
    "char_count": ConstraintType(checks.char_count, _counted()),
    "response_language": ConstraintType(checks.response_language, {"language": Arg(str, LANGUAGES)}),
    "lowercase": ConstraintType(checks.lowercase),
    "uppercase": ConstraintType(checks.uppercase),
    "letter_frequency": ConstraintType(
        checks.letter_frequency, {"letter": Arg(str, tuple(ascii_lowercase)), **_counted()}
    ),
    "capital_word_frequency": ConstraintType(checks.capital_word_frequency, _counted()),
    "starts_with": ConstraintType(checks.starts_with, {"phrase": Arg(str)}),
    "ends_with": ConstraintType(checks.ends_with, {"phrase": Arg(str)}),
    "include_keywords": ConstraintType(checks.include_keywords, {"keywords": Arg(list)}),
    "exclude_keywords": ConstraintType(checks.exclude_keywords, {"keywords": Arg(list)}),
    "keyword_frequency": ConstraintType(checks.keyword_frequency, {"keyword": Arg(str), **_counted()}),
    "repeat_request": ConstraintType(checks.repeat_request, {"request": Arg(str)}),
    "end_with_question": ConstraintType(checks.end_with_question),
    "no_commas": ConstraintType(checks.no_commas),
    "no_digits": ConstraintType(checks.no_digits),
    "bullet_count": ConstraintType(checks.bullet_count, {"n": Arg(int, minimum=1)}),
    "numbered_list": ConstraintType(checks.numbered_list, _counted(1, ("at_least", "exactly"))),
    "quoted": ConstraintType(checks.quoted),
    "json_only": ConstraintType(checks.json_only),
    "title": ConstraintType(checks.title),
    "postscript": ConstraintType(checks.postscript, {"marker": Arg(str, default="P.S.")}),
    "highlighted_sections": ConstraintType(checks.highlighted_sections, {"n": Arg(int, minimum=1)}),
    "placeholders": ConstraintType(checks.placeholders, {"n": Arg(int, minimum=1)}),
    "two_responses": ConstraintType(checks.two_responses),
}


def _signature(kind: ConstraintType) -> str:
    return ", ".join(kind.args) or "none"


def validate(constraint: Any, where: str) -> None:
    """Raise DataError(`<where> (<type>): <problem>`) unless `constraint` names a known type with
    exactly its arguments, each of the right type and value. `where` locates it, e.g.
    'data/constraints/train.jsonl:12: constraints[2]'."""
    if not isinstance(constraint, dict):
        raise DataError(f"{where}: a constraint must be an object with a 'type', got {type(constraint).__name__}")
    name = constraint.get("type")
    if name is None:
        raise DataError(f"{where}: missing 'type' (one of: {', '.join(TYPES)})")
    kind = TYPES.get(name) if isinstance(name, str) else None
    if kind is None:
        close = difflib.get_close_matches(str(name), TYPES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DataError(f"{where} ({name}): unknown constraint type; {hint}known types: {', '.join(TYPES)}")
    given = {k: v for k, v in constraint.items() if k != "type"}
    for key in given:
        if key not in kind.args:
            raise DataError(f"{where} ({name}): unknown argument '{key}' (arguments: {_signature(kind)})")
    for key, arg in kind.args.items():
        if key not in given:
            if arg.default is _REQUIRED:
                raise DataError(f"{where} ({name}): missing argument '{key}' (arguments: {_signature(kind)})")
            continue
        problem = arg.problem(key, given[key])
        if problem:
            raise DataError(f"{where} ({name}): {problem}")


def validate_constraints(constraints: Any, where: str) -> None:
    """A row's `constraints`: a non-empty list of valid constraints; errors name the index."""
    if not isinstance(constraints, list) or not constraints:
        raise DataError(f"{where}: 'constraints' must be a non-empty list of constraints")
    for i, constraint in enumerate(constraints):
        validate(constraint, f"{where}: constraints[{i}]")


def loose_variants(reply: str) -> list[str]:
    """IFEval's loose reading of a reply: the reply, without its first line, without its last line,
    without both, and each of those with markdown '*' removed — the non-blank ones, once each. A
    'Sure! Here you go:' first line or a closing remark no longer spoils a format."""
    lines = reply.split("\n")
    cuts = [reply, "\n".join(lines[1:]), "\n".join(lines[:-1]), "\n".join(lines[1:-1])]
    variants = cuts + [c.replace("*", "") for c in cuts]
    return [v for v in dict.fromkeys(variants) if v.strip()]


def follows(reply: str, constraint: dict, loose: bool = False) -> bool:
    """Whether `reply` follows `constraint`: strictly (the reply as written) or loosely (any of
    `loose_variants`). The constraint is validated first (DataError naming 'constraint')."""
    validate(constraint, "constraint")
    kind = TYPES[constraint["type"]]
    args = {k: v for k, v in constraint.items() if k != "type"}
    return any(kind.check(text, **args) for text in (loose_variants(reply) if loose else [reply]))


def constraint_results(reply: str, constraints: list[dict], loose: bool = False) -> list[bool]:
    """One verdict per constraint, in order."""
    return [follows(reply, c, loose) for c in constraints]


def score(reply: str, constraints: list[dict], strict: bool = False, loose: bool = False) -> float:
    """The reward of one row in [0, 1]: the share of constraints followed, or — when `strict` — 1.0
    only if all are (all-or-nothing). `loose` reads each constraint IFEval's loose way."""
    if not constraints:
        raise ValueError("a row needs at least one constraint to score")
    met = constraint_results(reply, constraints, loose)
    return float(all(met)) if strict else sum(met) / len(met)


def prompt_level_accuracy(rows: Iterable[tuple[str, list[dict]]], loose: bool = False) -> float:
    """IFEval's prompt-level accuracy: the share of (reply, constraints) rows that follow every constraint."""
    verdicts = [all(constraint_results(reply, cs, loose)) for reply, cs in rows]
    if not verdicts:
        raise ValueError("no rows to measure")
    return sum(verdicts) / len(verdicts)


def constraint_level_accuracy(rows: Iterable[tuple[str, list[dict]]], loose: bool = False) -> float:
    """IFEval's instruction-level accuracy: the share of all constraints, over every row, that are followed."""
    verdicts = [v for reply, cs in rows for v in constraint_results(reply, cs, loose)]
    if not verdicts:
        raise ValueError("no constraints to measure")
    return sum(verdicts) / len(verdicts)
