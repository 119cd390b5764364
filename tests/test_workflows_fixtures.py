"""The runs-on rewriter on real workflows from public repositories (`../shared/fixtures/workflows`)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from runnerguard.domain.pools import DEFAULT_POOL, SELF_HOSTED, runner_can_take
from runnerguard.domain.workflows import RewriteResult, revert_runs_on, rewrite_runs_on
from runnerguard.domain.workflows.model import parse_where

FALLBACK = "ubuntu-latest"
LEAD = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*")
CanTake = Callable[[Sequence[str]], bool]


def fixture_files(shared_dir: Path) -> list[Path]:
    files = sorted(p for p in (shared_dir / "fixtures/workflows").iterdir() if p.suffix in {".yml", ".yaml"})
    assert len(files) >= 50, "the shared fixtures went missing"
    return files


def static_labels(value: Any) -> list[str] | None:
    """What a runs-on value (as yaml.safe_load reads it) asks for, when no expression is involved."""
    if isinstance(value, dict):
        value = value.get("labels")
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, str) and "${{" not in v for v in value):
        return value
    return None


def self_hosted_label_sets(data: dict[Any, Any]) -> Iterator[list[str]]:
    """Label lists in jobs' runs-on and matrix values that ask for `self-hosted`: one pool per list."""

    def walk(node: Any) -> Iterator[Any]:
        yield node
        if isinstance(node, dict):
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    for job in (data.get("jobs") or {}).values():
        if not isinstance(job, dict):
            continue
        for candidate in [job.get("runs-on"), *walk((job.get("strategy") or {}).get("matrix"))]:
            labels = static_labels(candidate)
            if labels and SELF_HOSTED in {label.lower() for label in labels}:
                yield labels


def own_pools(data: dict[Any, Any]) -> CanTake:
    pools = list(self_hosted_label_sets(data))
    return lambda requested: any(runner_can_take(pool, requested) for pool in pools)


def set_at(data: dict[Any, Any], job: str, where: str, value: Any) -> None:
    node = data["jobs"][job]
    *path, last = parse_where(where)
    for seg in path:
        node = node[seg]
    node[last] = value


def check_rewrite(original: str, can_take: CanTake) -> RewriteResult:
    result = rewrite_runs_on(original, can_take=can_take, fallback=FALLBACK)
    rewritten = yaml.safe_load(result.text)  # still parses

    # The new text is the old one with each `before` replaced by its `after`, and nothing else.
    line_starts = [0] + [i + 1 for i, ch in enumerate(original) if ch == "\n"]
    pos, rebuilt = 0, []
    for change in result.changes:
        match = LEAD.match(change.before)  # the blanks and comment lines between the colon and the value
        assert match is not None
        lead = match.group()
        key_line = line_starts[change.line - 1 - lead.count("\n")]  # the line the splice starts on
        found = original.find(change.before, max(pos, key_line))
        assert key_line <= found <= original.find("\n", key_line), change
        rebuilt += [original[pos:found], change.after]
        pos = found + len(change.before)
        # the value itself is the fallback (after an anchor it keeps, before the comments of a list it collapsed)
        assert re.sub(r"^&\S+\s+", "", change.after.split("  #")[0].strip()) == FALLBACK
        assert change.where == "runs-on" or change.where.startswith("strategy.matrix.")
    assert "".join(rebuilt) + original[pos:] == result.text

    # Read back, the only differences are the runs-on values and matrix cells those changes name.
    expected = copy.deepcopy(yaml.safe_load(original))
    for change in result.changes:
        set_at(expected, change.job, change.where, FALLBACK)
    assert rewritten == expected

    assert rewrite_runs_on(result.text, can_take=can_take, fallback=FALLBACK).changes == ()
    back = revert_runs_on(result.text, result.changes)
    assert back.text == original and back.not_reverted == ()
    return result


def test_every_fixture_with_the_default_pool(shared_dir: Path) -> None:
    taken = 0
    for path in fixture_files(shared_dir):
        result = check_rewrite(path.read_text(encoding="utf-8"), DEFAULT_POOL.can_take)
        taken += len(result.changes)
        for change in result.changes:
            assert SELF_HOSTED in change.before.lower(), (path.name, change)
    # Without a policy every job that asks for `self-hosted` is the pool's, whatever else it asks for.
    assert taken >= 40


def test_every_fixture_with_pools_built_from_its_own_self_hosted_jobs(shared_dir: Path) -> None:
    files_changed = 0
    for path in fixture_files(shared_dir):
        original = path.read_text(encoding="utf-8")
        data = yaml.safe_load(original)
        result = check_rewrite(original, own_pools(data))
        files_changed += bool(result.changes)
        rewritten = yaml.safe_load(result.text)
        for job_id, job in data["jobs"].items():
            labels = static_labels(job.get("runs-on")) if isinstance(job, dict) else None
            if labels and SELF_HOSTED in {label.lower() for label in labels}:
                assert rewritten["jobs"][job_id]["runs-on"] == FALLBACK, (path.name, job_id)
        for unresolved in result.unresolved:
            assert unresolved.text and unresolved.reason, unresolved
            assert unresolved.text in original
    assert files_changed >= 38


def test_a_pool_of_other_labels_touches_no_fixture(shared_dir: Path) -> None:
    def nobody(requested: Sequence[str]) -> bool:
        return runner_can_take(("a-pool-no-fixture-names",), requested)

    for path in fixture_files(shared_dir):
        original = path.read_text(encoding="utf-8")
        assert rewrite_runs_on(original, can_take=nobody, fallback=FALLBACK).text == original


@pytest.mark.parametrize(
    "name",
    [
        "iree-org__iree__pkgci_test_nvidia_t4.yml",
        "iree-org__iree__pkgci_test_onnx.yml",
        "microsoft__onnxruntime-genai__clang-format-lint.yml",
    ],
)
def test_fixture_block_lists_with_comments_become_one_line_keeping_the_comments(shared_dir: Path, name: str) -> None:
    original = (shared_dir / "fixtures/workflows" / name).read_text(encoding="utf-8")
    result = check_rewrite(original, own_pools(yaml.safe_load(original)))
    block = [c for c in result.changes if c.before.startswith("\n")]
    assert block, "expected at least one block-list runs-on in this fixture"
    for change in block:
        comments = [line[line.index("#"):].rstrip() for line in change.before.splitlines()[1:] if "#" in line]
        assert change.after == " " + FALLBACK + ("  " + " ".join(comments) if comments else "")
        assert revert_runs_on(result.text, [change]).reverted == (change,)


def test_fixture_crlf_copies_keep_their_line_endings(shared_dir: Path) -> None:
    for path in fixture_files(shared_dir)[::7]:
        original = path.read_text(encoding="utf-8").replace("\n", "\r\n")
        result = check_rewrite(original, own_pools(yaml.safe_load(original)))
        assert "\r\n" not in result.text.replace("\r\n", "") and result.text.count("\n") == result.text.count("\r\n")


def test_fixture_block_list_with_a_matrix_label_is_rewritten_when_every_combination_is_the_pools(
    shared_dir: Path,
) -> None:
    original = (shared_dir / "fixtures/workflows/pytorch__serve__benchmark_nightly.yml").read_text(encoding="utf-8")
    every = check_rewrite(original, lambda req: runner_can_take(("self-hosted", "cpu", "gpu", "inf2"), req))
    assert [(c.job, c.where, c.after) for c in every.changes] == [("nightly", "runs-on", " " + FALLBACK)]
    some = check_rewrite(original, lambda req: runner_can_take(("self-hosted", "gpu"), req))
    assert some.changes == () and [u.job for u in some.unresolved] == ["nightly"]


def test_fixture_labels_only_mapping_with_a_comment_is_judged_by_its_labels(shared_dir: Path) -> None:
    original = (shared_dir / "fixtures/workflows/dfinity__ic__schedule-rust-bench.yml").read_text(encoding="utf-8")
    result = check_rewrite(original, lambda req: runner_can_take(("rust-benchmarks", "linux"), req))
    assert [(c.job, c.before, c.after) for c in result.changes] == [
        ("rust-benchmarks", "\n      # see linux-x86-64 runner group\n      labels: rust-benchmarks", " " + FALLBACK)
    ]
