"""The message of ``error: INTERRUPTED`` when a Ctrl-C aborted a command at once: what the command
leaves and what running it again does, which differs from one command to the next.

A single message said "run again to resume" for every command, though only ``run`` resumes: a
``verify`` run again starts over, a ``rollback`` goes on deleting, a ``dry-run`` appends what its
``--out`` lacks. Each line here is what that command really does (docs/runner.md, the exit codes;
the rollback's in ``usecases.rollback`` and ``usecases._rollback_delete.let_go``, the dry run's in
``cli.dry_run._note_partial_output``, the repair's in docs/verify.md).

It imports nothing of the package: ``console`` uses it when the CLI may not be loaded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

ABORTED: Final = "aborted at once by Ctrl-C"
"""The start of every such message; what follows ``; `` is the command's own."""

AGAIN: Final[dict[str, str]] = {
    "run": "progress up to the last saved batch is kept: run again to resume",
    "rollback": (
        "the logs it deleted stay deleted and are counted (status shows them; a delete cut short "
        "that the database did not confirm, or a whole-account one, is counted by the next "
        "rollback): run rollback again to delete the rest and end the job rolled_back"
    ),
    "verify": (
        "verify changes nothing (--repair: the logs it repaired stay, its leases were handed back): "
        "run it again to start over"
    ),
    "dry-run": (
        "the logs already written to --out are kept: run again with the same --out to start over, "
        "and only the logs not yet there are added"
    ),
    "enrich": (
        "the referents filled so far stay: run enrich again to fill the rest (one filled twice is "
        "left as it is)"
    ),
    "status": "it changes nothing: run it again",
    "explain": "it changes nothing: run it again",
    "config": "it changes nothing: run it again",
}
"""A command's name → what it leaves after an abort and what running it again does."""

ELSE: Final = "what it finished before stays done: check status before running it again"
"""The message's end for a command not in ``AGAIN`` (``trigger``, ``cancel``, ``indexes``, ``enqueue``,
``worker``), or when no command is known (a Ctrl-C before its name was read)."""

_VALUED_GLOBALS: Final = ("--settings",)
"""The group's options that take a value (``cli.main``): their value is not the command's name."""


def aborted(command: str | None) -> str:
    """The ``INTERRUPTED`` message for ``command`` (its name, ``None`` if unknown), without the code:
    ``aborted at once by Ctrl-C; <what it leaves and what running it again does>``."""
    return f"{ABORTED}; {AGAIN.get(command or '', ELSE)}"


def command_of(args: Sequence[str]) -> str | None:
    """The command's name in ``args``, the command line after the program's name: the first word that
    is neither an option nor a global option's value (``--settings F``); ``None`` if there is none or
    it comes after ``--``."""
    return next((word for word in words_before_values(args) if not word.startswith("-")), None)


def words_before_values(args: Sequence[str]) -> Iterator[str]:
    """The words of ``args`` (the command line after the program's name) up to a ``--``, less the
    values of the group's options that take one (``--settings F``: ``F`` is neither the command's
    name nor a flag), as the group reads them (``cli.main``): where ``command_of`` finds the command
    and ``cli.main`` finds ``--debug`` when no command's state exists."""
    skip = False
    for word in args:
        if skip:
            skip = False
        elif word == "--":
            return
        elif word in _VALUED_GLOBALS:
            skip = True
        else:
            yield word
