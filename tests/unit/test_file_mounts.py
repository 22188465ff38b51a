"""The type of a file's mount, read from ``/proc/self/mountinfo`` (``files.mounts``): a file mark
keeps its stamp only on the local file systems listed as keeping change times."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crm_audit_adapters.files import mounts

MOUNTINFO = "\n".join(
    [
        "22 27 0:21 / /proc rw,relatime - proc proc rw",
        "27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard",
        "61 27 0:52 / /mnt/remote\\040audits rw,nosuid,nodev,relatime shared:30 - fuse.sshfs "
        "ops@host:/srv rw,user_id=1000,group_id=1000",
        "62 27 0:53 / /mnt/nfs rw,relatime master:7 shared:31 - nfs4 files:/export rw,vers=4.2",
        "63 27 254:16 /data /srv/my\\040data\\011dir rw,relatime - xfs /dev/vdb rw",
        "64 27 254:0 /home /home rw,relatime shared:1 - ext4 /dev/vda rw,discard",
    ]
)


@pytest.mark.parametrize(
    ("major", "minor", "kind"),
    [
        (254, 0, "ext4"),  # the root and its bind mount of /home: one file system
        (0, 52, "fuse.sshfs"),  # its mount point has an escaped space
        (0, 53, "nfs4"),  # two optional fields before the separator
        (254, 16, "xfs"),  # an escaped space and tab in its mount point
        (0, 21, "proc"),
        (8, 1, None),  # no such mount
    ],
)
def test_a_devices_mount_type_is_read_from_its_line(major: int, minor: int, kind: str | None) -> None:
    assert mounts.mount_type(os.makedev(major, minor), MOUNTINFO) == kind


def test_a_line_cut_short_or_without_its_separator_names_no_type() -> None:
    text = "70 27 0:60 / /a rw,relatime\n71 27 0:61 / /b rw,relatime - \n72 27 0:62 / /c rw - tmpfs"
    assert mounts.mount_type(os.makedev(0, 60), text) is None
    assert mounts.mount_type(os.makedev(0, 61), text) is None
    assert mounts.mount_type(os.makedev(0, 62), text) == "tmpfs"


def test_only_local_file_systems_are_trusted_with_change_times(monkeypatch: pytest.MonkeyPatch) -> None:
    for kind, kept in [
        ("ext4", True),
        ("xfs", True),
        ("tmpfs", True),
        ("fuse.sshfs", False),
        ("fuse.rclone", False),
        ("nfs4", False),
        ("cifs", False),
        (None, False),
    ]:
        monkeypatch.setattr(mounts, "file_system", lambda device, kind=kind: kind)
        assert mounts.keeps_change_times(0) is kept, kind


def test_without_a_mount_table_no_type_is_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off Linux there is no ``/proc``: no type, so no stamp."""
    monkeypatch.setattr(mounts, "MOUNTINFO", str(tmp_path / "absent"))
    assert mounts.file_system(os.stat(tmp_path).st_dev) is None
    assert not mounts.keeps_change_times(os.stat(tmp_path).st_dev)


def test_the_table_is_read_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO + "\n", encoding="utf-8")
    monkeypatch.setattr(mounts, "MOUNTINFO", str(table))
    assert mounts.file_system(os.makedev(0, 52)) == "fuse.sshfs"
    assert not mounts.keeps_change_times(os.makedev(0, 52))
    assert mounts.keeps_change_times(os.makedev(254, 16))
