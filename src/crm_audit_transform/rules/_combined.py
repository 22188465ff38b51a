"""Combined audits: the rows audited's ``max_audits`` writes when it merges the oldest audits into one.

``Audited::Auditor#combine_audits`` (audited 5.x) keeps the last audit of the merged run, sets its
``audited_changes`` to the merge of every merged row's changes (so create-time scalars sit beside
``[old, new]`` pairs) and appends ``"\\nThis audit is the result of multiple audits being
combined."`` to its ``comment`` — after whatever comment that audit had (a JSON object, say).
"""

from __future__ import annotations

from typing import Final

COMBINED_SUFFIX: Final = "This audit is the result of multiple audits being combined."
"""The sentence audited appends (after a line break) to a combined audit's comment."""


def is_combined(comment: str | None) -> bool:
    """Whether ``comment`` ends with audited's combined-audit sentence."""
    return comment is not None and comment.rstrip().endswith(COMBINED_SUFFIX)


def own_comment(comment: str | None) -> str | None:
    """The comment as its author wrote it: without the combined-audit sentence (``None`` if empty)."""
    if not is_combined(comment):
        return comment
    assert comment is not None
    own = comment.rstrip()[: -len(COMBINED_SUFFIX)].rstrip("\n")
    return own or None
