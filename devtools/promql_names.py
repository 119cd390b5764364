"""The series selectors a PromQL expression names (metric and equality matchers), for the deploy/ checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# promtool tells whether an expression parses; it has no way to list what it selects, so this small lexer does.
# It assumes a valid expression (check with promtool first) and only has to tell metric names from everything
# else an identifier can be: functions and aggregations (followed by "("), keywords, label names.
IDENT_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER_RE = re.compile(r"0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:[a-zA-Z]+(?:\d+[a-zA-Z]+)*)?")
STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
MATCHER_RE = re.compile(rf"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*({STRING})\s*,?")
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
# `sum by (pool) (x)`: an aggregation whose modifier comes first is followed by a word, not "(".
AGGREGATIONS = frozenset({"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                          "bottomk", "topk", "quantile", "limitk", "limit_ratio"})


@dataclass(frozen=True)
class Selector:
    """`name{label="value", ...}`: the metric name and its matchers as (label, op, value)."""

    name: str
    matchers: tuple[tuple[str, str, str], ...] = field(default=())

    def equals(self, label: str) -> str | None:
        """The value an `=` matcher on `label` asks for, if any."""
        return next((value for name, op, value in self.matchers if name == label and op == "="), None)


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    if i >= len(expr):
        raise ValueError(f"unterminated string in {expr!r}")
    return i + 1


def _skip_group(expr: str, i: int, opening: str, closing: str) -> int:
    """From `opening` at i to just past its `closing`, strings skipped whole."""
    depth = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            i = _skip_string(expr, i)
            continue
        depth += char == opening
        depth -= char == closing
        i += 1
        if depth == 0:
            return i
    raise ValueError(f"unbalanced {opening}{closing} in {expr!r}")


def _unquote(text: str) -> str:
    body = text[1:-1]
    return body if text[0] == "`" else re.sub(r"\\(.)", r"\1", body)


def _matchers(block: str) -> tuple[tuple[str, str, str], ...]:
    """The inside of `{...}` -> ((label, op, value), ...); ValueError on anything else."""
    found, pos = [], 0
    while pos < len(block):
        match = MATCHER_RE.match(block, pos)
        if not match:
            if block[pos:].strip():
                raise ValueError(f"cannot read label matchers {block!r}")
            break
        found.append((match.group(1), match.group(2), _unquote(match.group(3))))
        pos = match.end()
    return tuple(found)


def _next_char(expr: str, i: int) -> str:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return expr[i] if i < len(expr) else ""


def _next_word(expr: str, i: int) -> str:
    match = IDENT_RE.match(expr, len(expr) - len(expr[i:].lstrip()))
    return match.group(0).lower() if match else ""


def selectors(expr: str) -> list[Selector]:
    """Every series selector of `expr`, in order. A selector by `__name__` alone is refused: name the metric."""
    found: list[Selector] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char.isspace():
            i += 1
        elif char == "#":
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif char in "\"'`":
            i = _skip_string(expr, i)
        elif char == "[":
            i = _skip_group(expr, i, "[", "]")  # a range or subquery: durations only
        elif char == "{":
            end = _skip_group(expr, i, "{", "}")
            matchers = _matchers(expr[i + 1:end - 1])
            names = [value for label, op, value in matchers if label == "__name__" and op == "="]
            if not names:
                raise ValueError(f"a selector without a metric name in {expr!r}")
            found.append(Selector(names[0], tuple(m for m in matchers if m[0] != "__name__")))
            i = end
        elif char.isdigit() or (char == "." and expr[i + 1:i + 2].isdigit()):
            number = NUMBER_RE.match(expr, i)
            i = number.end() if number else i + 1
        elif IDENT_RE.match(expr, i):
            word = IDENT_RE.match(expr, i).group(0)  # type: ignore[union-attr]
            i += len(word)
            follows = _next_char(expr, i)
            if word.lower() in LABEL_LIST_KEYWORDS:
                if follows == "(":
                    i = _skip_group(expr, expr.index("(", i), "(", ")")
            elif word.lower() in KEYWORDS or follows == "(":
                continue  # a keyword, or a function or aggregation being called
            elif word.lower() in AGGREGATIONS and _next_word(expr, i) in ("by", "without"):
                continue
            elif follows == "{":
                end = _skip_group(expr, expr.index("{", i), "{", "}")
                found.append(Selector(word, _matchers(expr[expr.index("{", i) + 1:end - 1])))
                i = end
            else:
                found.append(Selector(word))
        else:
            i += 1
    return found


def metric_names(expr: str) -> set[str]:
    return {selector.name for selector in selectors(expr)}
