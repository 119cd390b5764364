"""Names that come from outside (repositories, pools, hosts), checked in one place with full matches only.

`re.match(r"^...$")` also accepts a trailing newline; every check here uses `fullmatch`.
"""

from __future__ import annotations

import re

_REPO_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def is_repo(value: object) -> bool:
    """`owner/name` as GitHub spells `repository.full_name`; "." and ".." halves are refused (they walk paths)."""
    if not isinstance(value, str) or value.count("/") != 1:
        return False
    return all(_REPO_PART.fullmatch(part) and set(part) != {"."} for part in value.split("/"))
