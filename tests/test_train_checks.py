"""``--backbone default`` is the dense head's: a chip head asking for it gets a one-line remedy."""

import pytest

from geosam.errors import ConfigError
from geosam.train.checks import check_options
from geosam.train.config import TrainConfig


def test_default_backbone_with_chip_head_says_what_works():
    with pytest.raises(ConfigError) as err:
        check_options(TrainConfig(backbone="default", head="chip"), chip_size=64)
    msg = str(err.value)
    assert "\n" not in msg
    assert "--head dense" in msg and "--init-from" in msg


def test_default_backbone_with_dense_head_passes():
    check_options(TrainConfig(backbone="default", head="dense"), chip_size=64)


@pytest.mark.parametrize("what", ["user folder", "file"])
def test_out_never_replaces_the_users_own_folder_or_file(tmp_path, what):
    """A bundle replaces only a missing or empty folder or another bundle; anything else stays intact."""
    from geosam.models.bundle import publish_bundle_folder

    dest = tmp_path / "project"
    if what == "file":
        dest.write_text("notes")
    else:
        dest.mkdir()
        (dest / "keep.txt").write_text("important")
    with pytest.raises(ConfigError) as err:
        check_options(TrainConfig(backbone="small", out=dest))
    msg = str(err.value)
    assert "\n" not in msg and str(dest) in msg
    assert ("is a file" if what == "file" else "not a geosam model bundle") in msg
    tmp = tmp_path / ".new"
    tmp.mkdir()
    (tmp / "model.json").write_text("{}")
    with pytest.raises(ConfigError):  # the last step refuses too (API callers, calibrate --out)
        publish_bundle_folder(tmp, dest)
    if what == "file":
        assert dest.read_text() == "notes"
    else:
        assert (dest / "keep.txt").read_text() == "important" and not (dest / "model.json").exists()


def test_out_replaces_an_empty_folder_or_a_bundle(tmp_path):
    from geosam.models.bundle import check_bundle_destination, publish_bundle_folder

    empty = tmp_path / "empty"
    empty.mkdir()
    check_bundle_destination(empty)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.json").write_text('{"old": true}')
    (bundle / "weights.safetensors").write_text("old")
    tmp = tmp_path / ".new"
    tmp.mkdir()
    (tmp / "model.json").write_text('{"new": true}')
    publish_bundle_folder(tmp, bundle)
    assert (bundle / "model.json").read_text() == '{"new": true}'
    assert not (bundle / "weights.safetensors").exists() and not tmp.exists()
