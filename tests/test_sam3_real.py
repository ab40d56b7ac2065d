"""SAM 3 with the real ``sam3`` classes (random weights, CPU): build, save in Meta's format, load strictly,
prompt. Slow (about 840 M parameters: minutes per image on 2 cores) and skipped without ``sam3``.

Minimal imports, so it also runs in a separate environment holding ``sam3`` (which pins numpy<2.4):
``PYTHONPATH=. /tmp/venv-sam3/bin/python -m pytest -m slow tests/test_sam3_real.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from geosam.zeroshot import label_concepts, parse_concepts


@pytest.mark.slow
def test_real_sam3_classes_random_weights(tmp_path):
    """The real sam3 classes (random weights, CPU): build, save as Meta's format, load strictly, prompt."""
    pytest.importorskip("sam3")
    pytest.importorskip("open_clip")
    from geosam.models.sam3 import ConceptSegmenter, load_sam3, processor_for
    from geosam.testing_models import make_random_sam3_checkpoint

    ckpt = make_random_sam3_checkpoint(tmp_path / "sam3_random.pt")
    model = load_sam3(ckpt)
    concepts = parse_concepts("water=water|lake,forest")
    seg = ConceptSegmenter(processor_for(model, proposal_floor=0.0), concepts, proposal_floor=0.0)
    rgb = np.random.default_rng(0).integers(0, 255, (3, 96, 80), dtype=np.uint8)
    out = seg(rgb)
    assert out.masks.shape[1:] == (96, 80) and out.masks.dtype == bool
    assert len(out.scores) == len(out.masks) == len(out.concept) > 0
    assert np.isfinite(out.scores).all() and ((out.scores >= 0) & (out.scores <= 1)).all()
    assert set(out.concept.tolist()) == {0, 1}
    labels = label_concepts(out, np.ones((96, 80), bool), 2, threshold=0.5)
    assert labels.tile_probs.sum() == pytest.approx(1.0)
