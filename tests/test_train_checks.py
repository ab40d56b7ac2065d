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
