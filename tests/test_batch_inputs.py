"""Archive inputs: tar members go through tarfile's "data" filter (PEP 706) after every path was
checked, so an archive cannot plant setuid files, group-writable files or anything outside the folder."""

from __future__ import annotations

import io
import stat
import tarfile

import pytest

from geosam.batch import extract_archive
from geosam.errors import ConfigError


def tar_with(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, mode, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="Python without PEP 706 tar filters")
def test_tar_members_lose_setuid_and_group_write(tmp_path):
    arc = tar_with(tmp_path / "a.tgz", [("d/x.tif", 0o4777, b"x" * 10), ("y.tif", 0o600, b"y")])
    out = extract_archive(arc, tmp_path / "out")
    x = (out / "d" / "x.tif").stat().st_mode
    assert (out / "d" / "x.tif").read_bytes() == b"x" * 10
    assert not x & (stat.S_ISUID | stat.S_IWGRP | stat.S_IWOTH)
    assert stat.S_IMODE((out / "y.tif").stat().st_mode) == 0o600


def test_an_unsafe_member_fails_the_archive_before_anything_is_written(tmp_path):
    arc = tar_with(tmp_path / "b.tgz", [("ok.tif", 0o644, b"1"), ("../escape.tif", 0o644, b"2")])
    with pytest.raises(ConfigError, match="outside the extraction folder"):
        extract_archive(arc, tmp_path / "out")
    assert not (tmp_path / "escape.tif").exists() and not (tmp_path / "out" / "ok.tif").exists()
