"""Which file system holds a file, from the kernel's own table of mounts (Linux's
``/proc/self/mountinfo``, proc(5)): a file mark keeps a file's stamp only where the kernel keeps
its change time (``file_marks.digest_mark``, docs/files.md "A file changed between two runs").
"""

from __future__ import annotations

import os
from typing import Final

MOUNTINFO: Final = "/proc/self/mountinfo"
"""The calling process's mounts, one a line (proc(5)); absent off Linux."""

CHANGE_TIMES_KEPT: Final = frozenset(
    {
        # Local file systems whose inodes keep a change time the kernel itself sets to now at
        # every write (file_update_time in the VFS write path) and that no call sets back:
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "f2fs",
        "zfs",  # local too: its znode keeps the change time, moved at every write
        "tmpfs",  # in memory, its times the VFS inode's own
        # overlayfs reports the ctime of the real inode (upper, or lower until a write copies
        # it up to a new upper inode): both on the local file systems above in practice.
        "overlay",
    }
)
"""File systems whose files' change times a stamp can trust. Not listed, so never trusted: FUSE
mounts (``fuse.sshfs`` reports the modification time as the change time — SFTP v3 has no change
time —; ``fuse.rclone``, ``fuse.s3fs`` and the like report what their remote gives), network file
systems (``nfs``, ``nfs4``, ``cifs``/``smb3``: times the server reports, cached by the client),
and any type this table does not know."""


def mount_type(device: int, mountinfo: str) -> str | None:
    """The type (``ext4``, ``fuse.sshfs``, …) of the mount whose device is ``device`` (a
    ``st_dev``) in ``mountinfo`` (the text of ``/proc/self/mountinfo``); None when no line names
    it. A line is ``id parent major:minor root mountpoint options [optional…] - type source
    superoptions`` (proc(5)); its paths escape a space, tab, newline and backslash as octal
    (``\\040``), so fields split on blanks. Where several mounts share the device (bind mounts
    of one file system) they share its type: the last one read is taken."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    found: str | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 7 or fields[2] != wanted or "-" not in fields[6:]:
            continue
        after = fields.index("-", 6) + 1
        if after < len(fields):
            found = fields[after]
    return found


def file_system(device: int) -> str | None:
    """The type of the mounted file system whose device is ``device`` (a ``st_dev``), read from
    ``MOUNTINFO`` each call (one small read; a mark is taken once a job); None when that table
    cannot be read (not Linux) or does not name the device (a btrfs subvolume that is not itself
    mounted has a device of its own)."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as table:
            text = table.read()
    except OSError:
        return None
    return mount_type(device, text)


def keeps_change_times(device: int) -> bool:
    """Whether the file system of device ``device`` is one the kernel keeps change times on
    (``CHANGE_TIMES_KEPT``); False when its type cannot be read."""
    return file_system(device) in CHANGE_TIMES_KEPT
