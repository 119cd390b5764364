"""The runs-on rewriter on hand-written workflows: each form, exact output text, the restore, and bad input."""

from __future__ import annotations

import json

import pytest
import yaml

from runnerguard.domain.pools import DEFAULT_POOL, Pool
from runnerguard.domain.workflows import (
    Change,
    RewriteResult,
    WorkflowParseError,
    is_workflow_path,
    revert_runs_on,
    rewrite_runs_on,
)
from runnerguard.domain.workflows.model import format_where, parse_where
from runnerguard.domain.workflows.rewrite import (
    REASON_EXPRESSION,
    REASON_GROUP,
    REASON_MATRIX_EXPRESSION,
    REASON_MIXED,
    REASON_NOT_LABELS,
    REASON_PARTIAL,
    REASON_SHARED,
)

GPU = Pool(name="gpu", labels=("self-hosted", "linux", "gpu"))
FALLBACK = "ubuntu-latest"

HEAD = "name: ci\non:\n  push:\njobs:\n"


def wf(jobs: str) -> str:
    return HEAD + jobs


def rewrite(text: str, pool: Pool = GPU, fallback: str = FALLBACK) -> RewriteResult:
    return rewrite_runs_on(text, can_take=pool.can_take, fallback=fallback)


def roundtrip(text: str, pool: Pool = GPU) -> str:
    """Rewrite, check the invariants every rewrite must hold, and return the rewritten text."""
    result = rewrite(text, pool)
    yaml.safe_load(result.text)
    assert rewrite(result.text, pool).changes == ()
    assert revert_runs_on(result.text, result.changes).text == text
    return result.text


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("    runs-on: self-hosted\n", "    runs-on: ubuntu-latest\n"),
        ("    runs-on: 'self-hosted'\n", "    runs-on: 'ubuntu-latest'\n"),
        ('    runs-on: "Self-Hosted"\n', '    runs-on: "ubuntu-latest"\n'),
        ("    runs-on: [self-hosted, linux]\n", "    runs-on: ubuntu-latest\n"),
        ("    runs-on: [ self-hosted, gpu ]  # the big box\n", "    runs-on: ubuntu-latest  # the big box\n"),
        ("    runs-on: [Self-Hosted, GPU]\n", "    runs-on: ubuntu-latest\n"),
        ("    runs-on:    ['self-hosted', \"linux\"]\n", "    runs-on:    ubuntu-latest\n"),
        ("    runs-on: {group: big, labels: [self-hosted, gpu]}\n", "    runs-on: ubuntu-latest\n"),
        ("    runs-on:\n      group: big\n      labels: [self-hosted, gpu]\n", "    runs-on: ubuntu-latest\n"),
        ("    runs-on:\n      labels: self-hosted\n", "    runs-on: ubuntu-latest\n"),
    ],
)
def test_each_inline_form_of_a_pool_job_becomes_the_fallback(before: str, after: str) -> None:
    text = wf("  build:\n" + before + "    steps:\n      - run: make\n")
    assert roundtrip(text) == wf("  build:\n" + after + "    steps:\n      - run: make\n")


def test_block_list_becomes_a_scalar_on_the_key_line_keeping_every_comment_of_the_list() -> None:
    text = wf(
        "  build:\n"
        "    # why this runner\n"
        "    runs-on:\n"
        "      - self-hosted # must come first\n"
        "      # the gpu box\n"
        "\n"
        "      - gpu # last\n"
        "    steps: []\n"
    )
    result = rewrite(text)
    assert result.text == wf("  build:\n    # why this runner\n    runs-on: ubuntu-latest  # must come first # the gpu box # last\n"
                             "    steps: []\n")
    assert result.changes == (
        Change(
            job="build",
            where="runs-on",
            before="\n      - self-hosted # must come first\n      # the gpu box\n\n      - gpu",
            after=" ubuntu-latest  # must come first # the gpu box",
            line=8,
        ),
    )
    assert revert_runs_on(result.text, result.changes).text == text


@pytest.mark.parametrize("indicator", [">-", ">", "|-", "|"])
def test_block_scalar_label_is_rewritten_without_eating_the_next_line(indicator: str) -> None:
    text = wf(f"  a:\n    runs-on: {indicator}\n      self-hosted\n\n    steps: []\n")
    assert roundtrip(text, DEFAULT_POOL if indicator.endswith("-") else Pool("nl", ("self-hosted\n",))) == wf(
        "  a:\n    runs-on: ubuntu-latest\n\n    steps: []\n"
    )


def test_block_list_at_the_keys_indent_is_rewritten() -> None:
    text = wf("  t:\n    runs-on:\n    - self-hosted\n    - linux\n    env: {}\n")
    assert roundtrip(text) == wf("  t:\n    runs-on: ubuntu-latest\n    env: {}\n")


def test_jobs_on_github_hosted_runners_or_other_pools_stay_as_they_are() -> None:
    text = wf(
        "  hosted:\n    runs-on: ubuntu-latest\n"
        "  arm:\n    runs-on: [self-hosted, arm64]\n"
        "  mac:\n    runs-on: [macos-14]\n"
        "  call:\n    uses: ./.github/workflows/x.yml\n"
        "  mine:\n    runs-on: [self-hosted, gpu]\n"
    )
    result = rewrite(text)
    assert [c.job for c in result.changes] == ["mine"]
    assert result.text == text.replace("[self-hosted, gpu]", "ubuntu-latest")
    assert result.unresolved == ()


def test_the_no_policy_pool_takes_every_job_asking_for_self_hosted() -> None:
    text = wf("  a:\n    runs-on: self-hosted\n  b:\n    runs-on: [self-hosted, linux]\n  c:\n    runs-on: [gpu]\n")
    result = rewrite(text, DEFAULT_POOL)
    assert [c.job for c in result.changes] == ["a", "b"]


def test_commented_out_runs_on_is_untouched() -> None:
    text = wf(
        "  a:\n    # runs-on: [self-hosted, gpu]\n    runs-on: ubuntu-latest\n  # b:\n  #   runs-on: self-hosted\n"
    )
    result = rewrite(text)
    assert result.text == text
    assert result.changes == ()


def test_matrix_list_of_label_lists_rewrites_only_the_pools_cells() -> None:
    text = wf(
        "  test:\n"
        "    strategy:\n"
        "      matrix:\n"
        "        os: [ubuntu-22.04, [self-hosted, gpu], [self-hosted, arm64], windows-latest]\n"
        "        py:\n"
        "          - '3.11'\n"
        "    runs-on: ${{ matrix.os }}\n"
    )
    result = rewrite(text)
    assert result.text == text.replace("[self-hosted, gpu]", "ubuntu-latest")
    assert [(c.where, c.before, c.after) for c in result.changes] == [
        ("strategy.matrix.os[1]", "[self-hosted, gpu]", "ubuntu-latest")
    ]
    assert "${{ matrix.os }}" in result.text
    roundtrip(text)


def test_matrix_block_cells_and_include_entries_are_rewritten() -> None:
    text = wf(
        "  test:\n"
        '    runs-on: "${{ matrix.runner }}"\n'
        "    strategy:\n"
        "      matrix:\n"
        "        runner:\n"
        "          - - self-hosted\n"
        "            - gpu\n"
        "          - macos-14\n"
        "        include:\n"
        "          - name: big\n"
        "            runner:\n"
        "              - self-hosted # first\n"
        "              - linux\n"
        "          - name: small\n"
        "            runner: [self-hosted, tiny]\n"
    )
    result = rewrite(text)
    assert result.text == wf(
        "  test:\n"
        '    runs-on: "${{ matrix.runner }}"\n'
        "    strategy:\n"
        "      matrix:\n"
        "        runner:\n"
        "          - ubuntu-latest\n"
        "          - macos-14\n"
        "        include:\n"
        "          - name: big\n"
        "            runner: ubuntu-latest  # first\n"
        "          - name: small\n"
        "            runner: [self-hosted, tiny]\n"
    )
    assert [c.where for c in result.changes] == ["strategy.matrix.runner[0]", "strategy.matrix.include[0].runner"]
    roundtrip(text)


def test_nested_matrix_reference_and_one_item_list_of_a_matrix_value() -> None:
    text = wf(
        "  a:\n"
        "    strategy:\n      matrix:\n        config:\n"
        "          - {name: x, runner: [self-hosted, gpu]}\n"
        "          - {name: y, runner: ubuntu-22.04}\n"
        "    runs-on: ${{ matrix.config.runner }}\n"
        "  b:\n"
        "    strategy:\n      matrix:\n        hw: [ubuntu-20.04, [self-hosted, linux]]\n"
        "    runs-on:\n      - ${{ matrix.hw }}\n"
    )
    result = rewrite(text)
    assert [(c.job, c.where) for c in result.changes] == [
        ("a", "strategy.matrix.config[0].runner"),
        ("b", "strategy.matrix.hw[1]"),
    ]
    assert "runner: ubuntu-latest}" in result.text and "hw: [ubuntu-20.04, ubuntu-latest]" in result.text
    roundtrip(text)


def test_fixed_labels_with_matrix_values_are_judged_over_every_combination() -> None:
    every = wf(
        "  a:\n    strategy:\n      matrix:\n        x: [gpu, linux]\n    runs-on: [self-hosted, '${{ matrix.x }}']\n"
    )
    some = every.replace("[gpu, linux]", "[gpu, arm64]")
    none = every.replace("[gpu, linux]", "[arm64, mac]")
    assert rewrite(every).text == every.replace("[self-hosted, '${{ matrix.x }}']", "ubuntu-latest")
    assert [(u.job, u.reason) for u in rewrite(some).unresolved] == [("a", REASON_PARTIAL)]
    assert rewrite(some).text == some
    assert rewrite(none).text == none and rewrite(none).unresolved == ()


def test_expressions_are_left_alone_and_reported() -> None:
    text = wf(
        "  a:\n    runs-on: ${{ inputs.runner }}\n"
        "  b:\n    runs-on: ${{ fromJSON(vars.RUNNER) }}\n"
        "  c:\n    runs-on: >-\n      ${{ github.repository == 'x' && 'self-hosted' || 'ubuntu-latest' }}\n"
        "  d:\n    runs-on: [self-hosted, '${{ inputs.size }}']\n"
        "  e:\n    runs-on: [self-hosted, arm64, '${{ inputs.size }}']\n"
        "  f:\n    strategy:\n      matrix:\n        os: ${{ fromJSON(inputs.os) }}\n    runs-on: ${{ matrix.os }}\n"
    )
    result = rewrite(text)
    assert result.text == text
    assert [(u.job, u.where, u.line, u.reason) for u in result.unresolved] == [
        ("a", "runs-on", 6, REASON_EXPRESSION),
        ("b", "runs-on", 8, REASON_EXPRESSION),
        ("c", "runs-on", 10, REASON_EXPRESSION),
        ("d", "runs-on", 13, REASON_MIXED),
        ("f", "strategy.matrix.os", 19, REASON_MATRIX_EXPRESSION),
    ]  # e asks for arm64, which the pool lacks whatever the expression says: not the pool's, not reported
    assert result.unresolved[0].text == "${{ inputs.runner }}"


def test_group_without_labels_is_reported_not_rewritten() -> None:
    text = wf("  a:\n    runs-on:\n      group: gpu-runners\n")
    result = rewrite(text)
    assert result.text == text
    assert [(u.job, u.text, u.reason) for u in result.unresolved] == [("a", "group: gpu-runners", REASON_GROUP)]


def test_an_anchor_used_only_by_runs_on_of_the_pool_is_rewritten_and_keeps_its_anchor() -> None:
    text = wf("  a:\n    runs-on: &r [self-hosted, gpu]\n  b:\n    runs-on: *r\n  c:\n    runs-on: *r\n")
    result = rewrite(text)
    assert result.text == wf("  a:\n    runs-on: &r ubuntu-latest\n  b:\n    runs-on: *r\n  c:\n    runs-on: *r\n")
    assert result.unresolved == ()
    assert [c.job for c in result.changes] == ["a"]  # one edit, at the anchor: the aliases follow it
    assert roundtrip(text) == result.text  # and the restore puts the anchored value back, byte for byte
    loaded = yaml.safe_load(result.text)["jobs"]
    assert {job["runs-on"] for job in loaded.values()} == {"ubuntu-latest"}


def test_anchors_shared_with_anything_but_a_runs_on_are_reported_not_rewritten() -> None:
    # an alias of the value outside runs-on: rewriting the anchor would change that place too
    elsewhere = wf("  a:\n    runs-on: &r [self-hosted, gpu]\n  b:\n    runs-on: *r\n  c:\n"
                   "    runs-on: ubuntu-latest\n    env:\n      LABELS: *r\n")
    result = rewrite(elsewhere)
    assert result.text == elsewhere
    assert [(u.job, u.reason) for u in result.unresolved] == [("a", REASON_SHARED), ("b", REASON_SHARED)]
    # an anchor defined away from any runs-on, and an anchor holding an anchor of its own
    defined_elsewhere = wf("  a:\n    env:\n      X: &r self-hosted\n    runs-on: *r\n")
    assert rewrite(defined_elsewhere).text == defined_elsewhere
    nested = wf("  a:\n    runs-on: &r [&l self-hosted, gpu]\n  b:\n    runs-on: *r\n")
    assert rewrite(nested).text == nested
    assert {u.reason for u in rewrite(nested).unresolved} == {REASON_SHARED}


def test_an_expression_beside_self_hosted_is_the_default_pools_but_not_a_labelled_pools() -> None:
    text = wf('  a:\n    runs-on: [self-hosted, linux, "${{ inputs.runner }}"]\n')
    default = rewrite_runs_on(text, can_take=DEFAULT_POOL.can_take, fallback=FALLBACK, extra_labels_narrow=False)
    assert default.text == wf("  a:\n    runs-on: ubuntu-latest\n") and default.unresolved == ()
    assert revert_runs_on(default.text, default.changes).text == text
    labelled = rewrite(text)  # a policy pool with specific labels: the expression could ask for one it lacks
    assert labelled.text == text and [u.reason for u in labelled.unresolved] == [REASON_MIXED]
    # the expression alone still settles nothing, even for the default pool
    alone = wf('  a:\n    runs-on: "${{ inputs.runner }}"\n')
    assert rewrite_runs_on(alone, can_take=DEFAULT_POOL.can_take, fallback=FALLBACK,
                           extra_labels_narrow=False).text == alone


def test_a_block_list_collapsed_to_one_line_keeps_its_comments() -> None:
    text = wf("  a:\n    runs-on:\n      - self-hosted # must come first\n      # the GPU box only\n"
              "      - gpu  # the big one\n    steps: []\n")
    result = rewrite(text)
    assert result.text == wf("  a:\n    runs-on: ubuntu-latest  # must come first # the GPU box only  # the big one\n"
                             "    steps: []\n")
    assert roundtrip(text) == result.text


def test_anchored_or_aliased_matrix_values_are_reported_not_rewritten() -> None:
    text = wf(
        "  a:\n    strategy:\n      matrix:\n        os: &oses [[self-hosted, gpu]]\n    runs-on: ${{ matrix.os }}\n"
        "  b:\n    strategy:\n      matrix:\n        os: *oses\n    runs-on: ${{ matrix.os }}\n"
        "  c:\n    strategy:\n      matrix:\n        include:\n          - &one {os: [self-hosted, gpu]}\n"
        "    runs-on: ${{ matrix.os }}\n"
    )
    result = rewrite(text)
    assert result.text == text
    assert [(u.job, u.where, u.reason) for u in result.unresolved] == [
        ("a", "strategy.matrix.os", REASON_SHARED),
        ("b", "strategy.matrix.os", REASON_SHARED),
        ("c", "strategy.matrix.include[0]", REASON_SHARED),
    ]


def test_crlf_and_bom_are_kept() -> None:
    text = "\ufeff" + wf("  a:\n    runs-on:\n      - self-hosted\n      - gpu\n    steps: []\n").replace("\n", "\r\n")
    result = rewrite(text)
    assert result.text == "\ufeff" + wf("  a:\n    runs-on: ubuntu-latest\n    steps: []\n").replace("\n", "\r\n")
    assert revert_runs_on(result.text, result.changes).text == text


def test_fallback_that_is_not_a_safe_plain_scalar_is_quoted() -> None:
    text = wf(
        "  a:\n    strategy:\n      matrix:\n        os: [[self-hosted, gpu], x]\n    runs-on: ${{ matrix.os }}\n"
    )
    for fallback in ("a, b", "on", "123", "x: y"):
        result = rewrite(text, fallback=fallback)
        data = yaml.safe_load(result.text)
        assert data["jobs"]["a"]["strategy"]["matrix"]["os"] == [fallback, "x"]
    assert "os: ['self-hosted', x]" not in rewrite(text, fallback="self-hosted").text


def test_a_value_already_at_the_fallback_is_not_rewritten_again() -> None:
    pool = Pool(name="odd", labels=("self-hosted", "ubuntu-latest"))
    text = wf(
        "  a:\n    runs-on: [self-hosted, ubuntu-latest]\n  b:\n    runs-on: ubuntu-latest\n"
        "  c:\n    runs-on: [Ubuntu-Latest]\n  d:\n    runs-on:\n      - ubuntu-latest\n"
    )
    result = rewrite(text, pool)
    assert [c.job for c in result.changes] == ["a"]
    assert rewrite(result.text, pool).changes == ()


def test_revert_puts_values_back_after_unrelated_edits() -> None:
    text = wf(
        "  a:\n    runs-on: [self-hosted, gpu]\n    steps: []\n  b:\n    runs-on:\n      - self-hosted\n      - linux\n"
    )
    result = rewrite(text)
    edited = ("# a comment added later\n" + result.text).replace("steps: []", "steps:\n      - run: echo hi")
    edited += "  c:\n    runs-on: ubuntu-latest\n"
    back = revert_runs_on(edited, result.changes)
    assert (
        back.text
        == ("# a comment added later\n" + text).replace("steps: []", "steps:\n      - run: echo hi")
        + "  c:\n    runs-on: ubuntu-latest\n"
    )
    assert back.reverted == result.changes and back.not_reverted == ()


def test_revert_leaves_values_edited_since_and_reports_them() -> None:
    text = wf(
        "  a:\n    runs-on: [self-hosted, gpu]\n"
        "  b:\n    runs-on: [self-hosted, linux]\n"
        "  c:\n    runs-on: self-hosted\n"
    )
    result = rewrite(text)
    edited = result.text.replace("  a:\n    runs-on: ubuntu-latest", "  a:\n    runs-on: ubuntu-24.04")
    edited = edited.replace("  b:\n    runs-on: ubuntu-latest\n", "")
    back = revert_runs_on(edited, result.changes)
    assert [c.job for c in back.reverted] == ["c"]
    assert {(n.change.job, n.reason) for n in back.not_reverted} == {
        ("a", "the value was edited after the rollback; left as it is"),
        ("b", "the job no longer exists"),
    }
    assert "runs-on: ubuntu-24.04" in back.text and back.text.endswith("  c:\n    runs-on: self-hosted\n")


def test_changes_survive_a_trip_through_json() -> None:
    text = wf(
        "  a:\n    strategy:\n      matrix:\n        'odd.key': [[self-hosted, gpu]]\n    runs-on: ${{ matrix.odd }}\n"
    )
    text += "  b:\n    runs-on:\n      - self-hosted\n      - gpu\n"
    result = rewrite(text)
    stored = json.dumps([c.to_dict() for c in result.changes])
    changes = [Change.from_dict(d) for d in json.loads(stored)]
    assert tuple(changes) == result.changes
    assert revert_runs_on(result.text, changes).text == text


def test_a_matrix_key_that_needs_quoting_round_trips_through_where() -> None:
    text = wf(
        "  a:\n    strategy:\n      matrix:\n        'odd.key': [[self-hosted, gpu]]\n    runs-on: ${{ matrix.x }}\n"
    )
    assert rewrite(text).changes == ()  # matrix.x is not defined: reported, not guessed

    path = ("strategy", "matrix", "odd.key", 0, 'q"uote', "runs-on")
    assert parse_where(format_where(path)) == path


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"job": "a", "where": "runs-on", "before": "x", "after": "y"},
        {"job": 1, "where": "runs-on", "before": "", "after": "", "line": 1},
        {"job": "a", "where": "..", "before": "", "after": "", "line": 1},
    ],
)
def test_change_from_dict_refuses_records_it_cannot_use(record: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="runs-on"):
        Change.from_dict(record)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobs: [a, b\n", "not valid YAML"),
        ("- a\n- b\n", "found a list"),
        ("", "found an empty document"),
        ("just a string\n", "found a scalar"),
        ("jobs:\n  - a\n", "`jobs` must be a mapping"),
        ("a: 1\n---\nb: 2\n", "not valid YAML"),
        ("jobs:\n  a:\n    runs-on: [self-hosted\n", "not valid YAML"),
    ],
)
def test_files_that_are_no_workflow_raise_a_typed_error(text: str, message: str) -> None:
    with pytest.raises(WorkflowParseError, match=message):
        rewrite(text)
    with pytest.raises(WorkflowParseError, match=message):
        revert_runs_on(text, ())


def test_odd_values_are_reported_not_crashed_on() -> None:
    text = wf(
        "  a:\n    runs-on: 42\n  b:\n    runs-on:\n  c: 7\n"
        "  d:\n    runs-on: [[self-hosted]]\n  e:\n  f:\n    runs-on: {}\n"
    )
    result = rewrite(text)
    assert result.text == text
    assert [(u.job, u.reason) for u in result.unresolved][:2] == [("a", REASON_NOT_LABELS), ("b", REASON_NOT_LABELS)]
    assert [u.job for u in result.unresolved] == ["a", "b", "c", "d", "f"]


def test_a_workflow_without_jobs_has_nothing_to_rewrite() -> None:
    assert rewrite("on: push\n").changes == ()
    assert rewrite("on: push\njobs:\n").text == "on: push\njobs:\n"


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        (".github/workflows/ci.yml", True),
        (".github/workflows/ci.yaml", True),
        (".github/workflows/sub/ci.yml", False),
        (".github/workflows/../ci.yml", False),
        ("x/../.github/workflows/ci.yml", False),
        ("/.github/workflows/ci.yml", False),
        (".github/workflows/ci.yml.txt", False),
        (".github/workflows/ci.json", False),
        (".github/workflows\\ci.yml", False),
        ("./.github/workflows/ci.yml", False),
        ("other/.github/workflows/ci.yml", False),
    ],
)
def test_is_workflow_path(path: str, ok: bool) -> None:
    assert is_workflow_path(path) is ok


def test_revert_follows_an_include_entry_that_moved_and_refuses_a_list_that_changed() -> None:
    text = wf(
        "  a:\n    runs-on: ${{ matrix.runner }}\n    strategy:\n      matrix:\n"
        "        os: [ubuntu-22.04, [self-hosted, gpu]]\n"
        "        include:\n"
        "          - name: big\n            runner: [self-hosted, gpu]\n"
        "          - name: mac\n            runner: macos-14\n"
    )
    result = rewrite(text)
    assert [(c.where, c.context) for c in result.changes] == [
        ("strategy.matrix.include[0].runner", "name: big\n            runner: ubuntu-latest")
    ]
    # Someone adds a hosted entry first: include[0] now reads ubuntu-latest too, but it is not the one we changed.
    added = "          - name: new\n            runner: ubuntu-latest\n"
    edited = result.text.replace("        include:\n", "        include:\n" + added)
    back = revert_runs_on(edited, result.changes)
    assert back.text == text.replace("        include:\n", "        include:\n" + added)
    assert [c.where for c in back.reverted] == ["strategy.matrix.include[0].runner"]
    # ... or the entries before it are removed, so its index no longer exists.
    shifted = rewrite(text.replace("include:\n", "include:\n" + added + added))
    assert [c.where for c in shifted.changes] == ["strategy.matrix.include[2].runner"]
    back = revert_runs_on(shifted.text.replace(added, ""), shifted.changes)
    assert back.text == text and len(back.reverted) == 1

    axis = text.replace("${{ matrix.runner }}", "${{ matrix.os }}")
    result = rewrite(axis)
    assert [(c.where, c.context) for c in result.changes] == [
        ("strategy.matrix.os[1]", "[ubuntu-22.04, ubuntu-latest]")
    ]
    edited = result.text.replace("[ubuntu-22.04, ubuntu-latest]", "[ubuntu-20.04, ubuntu-latest]")
    back = revert_runs_on(edited, result.changes)
    assert back.text == edited and [n.change.where for n in back.not_reverted] == ["strategy.matrix.os[1]"]
