"""Checked pieces of GitHub API paths: a payload string never reaches a URL unchecked."""

from __future__ import annotations

import re
from urllib.parse import quote

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def repo(full_name: str) -> str:
    """`owner/name` as GitHub allows it, else ValueError (no `..`, no other `/`, no query or fragment)."""
    if not _REPO.fullmatch(full_name) or ".." in full_name:
        raise ValueError(f"not a repository full name: {full_name!r}")
    return full_name


def segment(value: str) -> str:
    return quote(value, safe="/")
