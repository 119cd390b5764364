"""Properties of the runs-on rewriter on generated workflows: revert undoes it, a second run changes nothing."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runnerguard.domain.pools import runner_can_take
from runnerguard.domain.workflows import revert_runs_on, rewrite_runs_on
from runnerguard.domain.workflows.model import parse_where

LABELS = ["self-hosted", "Self-Hosted", "linux", "gpu", "arm64", "ubuntu-latest", "x64"]
FALLBACK = "ubuntu-latest"

labels = st.lists(st.sampled_from(LABELS), min_size=1, max_size=4)


def flow(items: list[str], pad: str) -> str:
    return "[" + pad + ", ".join(items) + pad + "]"


def block(items: list[str], indent: str, comment: bool) -> str:
    return "".join(f"\n{indent}- {item}" + (" # note" if comment and i == 0 else "") for i, item in enumerate(items))


@st.composite
def runs_on(draw: st.DrawFn) -> tuple[str, str]:
    """(runs-on value text as it follows `runs-on:`, strategy text or "")."""
    items = draw(labels)
    form = draw(st.sampled_from(["plain", "quoted", "flow", "block", "mapping", "matrix", "include", "expr", "mixed"]))
    if form == "plain":
        return " " + items[0], ""
    if form == "quoted":
        quote = draw(st.sampled_from(["'", '"']))
        return f" {quote}{items[0]}{quote}", ""
    if form == "flow":
        return " " + flow(items, draw(st.sampled_from(["", " "]))), ""
    if form == "block":
        return block(items, "      ", draw(st.booleans())), ""
    if form == "mapping":
        return "\n      group: g\n      labels: " + flow(items, ""), ""
    cells = draw(st.lists(labels, min_size=1, max_size=3))
    if form == "matrix":
        axis = "".join("\n          - " + (flow(c, "") if draw(st.booleans()) else c[0]) for c in cells)
        return " ${{ matrix.os }}", f"    strategy:\n      matrix:\n        os:{axis}\n"
    if form == "include":
        entries = "".join(f"\n          - name: n{i}\n            os: {flow(c, ' ')}" for i, c in enumerate(cells))
        return " '${{ matrix.os }}'", f"    strategy:\n      matrix:\n        include:{entries}\n"
    if form == "mixed":
        axis = "".join("\n          - " + c[0] for c in cells)
        return f" [{items[0]}, '${{{{ matrix.os }}}}']", f"    strategy:\n      matrix:\n        os:{axis}\n"
    return " ${{ inputs.runner }}", ""


@st.composite
def workflows(draw: st.DrawFn) -> str:
    jobs = draw(st.lists(runs_on(), min_size=1, max_size=5))
    body = "".join(
        f"  job{i}:\n{strategy}    runs-on:{value}\n    steps:\n      - run: echo {i} # keep\n"
        for i, (value, strategy) in enumerate(jobs)
    )
    text = "# generated\non:\n  push:\njobs:\n" + body
    return text.replace("\n", "\r\n") if draw(st.booleans()) else text


@settings(max_examples=300, deadline=None)
@given(text=workflows(), pool=st.lists(st.sampled_from(LABELS), min_size=1, max_size=4))
def test_rewrite_then_revert_is_identity_and_rewrite_is_idempotent(text: str, pool: list[str]) -> None:
    def can_take(requested: Any) -> bool:
        return runner_can_take(pool, requested)

    once = rewrite_runs_on(text, can_take=can_take, fallback=FALLBACK)
    twice = rewrite_runs_on(once.text, can_take=can_take, fallback=FALLBACK)
    assert twice.changes == () and twice.text == once.text
    back = revert_runs_on(once.text, once.changes)
    assert back.text == text and back.not_reverted == ()

    # Read back, only the values the changes name differ, and each now reads the fallback.
    expected = copy.deepcopy(yaml.safe_load(text))
    for change in once.changes:
        node = expected["jobs"][change.job]
        *path, last = parse_where(change.where)
        for seg in path:
            node = node[seg]
        node[last] = FALLBACK
    assert yaml.safe_load(once.text) == expected

    # Every job whose fixed labels the pool takes (and that does not already read the fallback) was rewritten.
    for job_id, job in yaml.safe_load(text)["jobs"].items():
        value = job["runs-on"]
        value = value.get("labels") if isinstance(value, dict) else value
        fixed = [value] if isinstance(value, str) else value
        if "${{" not in str(fixed) and [v.lower() for v in fixed] != [FALLBACK] and can_take(fixed):
            assert expected["jobs"][job_id]["runs-on"] == FALLBACK
