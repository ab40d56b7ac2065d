"""Security of model loading and of output paths.

* Checkpoints are loaded as weights only: a pickle payload (which really runs when unpickled, see the
  control test) never runs through ``load_sam``, ``geosam run --sam-checkpoint``, ``geosam train
  --backbone`` or a model bundle, and no geosam module calls ``torch.load``/``pickle.load`` unsafely.
* Bundle weights are verified against the sha256 in ``model.json``.
* Output paths cannot leave ``--out``: names derive from the scene's stem only; a symlink planted in
  the output directory is replaced, never followed; bundle extra files cannot escape the bundle.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_inputs import corpus_module, error_line, run_cli

from geosam.errors import BundleError, CheckpointError

GEOSAM = Path(__file__).resolve().parents[1] / "geosam"
EVIL = ["evil.pth", "evil_legacy.pth", "evil_plain_pickle.pth"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return corpus_module().cached_corpus(tmp_path_factory.getbasetemp())


def marker_for(path: Path) -> Path:
    return path.parent / corpus_module().PAYLOAD_MARKER


def test_control_the_payloads_are_live(corpus, tmp_path):
    """Unpickling the corpus payload with the standard unpickler does run it (so the other tests
    prove something). Done on a copy whose marker points into tmp_path."""
    payload = corpus_module()._Payload(tmp_path / "ran")
    pickle.loads(pickle.dumps({"x": payload}))
    assert (tmp_path / "ran").is_file()


@pytest.mark.parametrize("case", EVIL)
def test_load_sam_never_runs_a_payload(case, corpus):
    from geosam.models.sam import load_sam, load_state_dict

    for load in (load_sam, load_state_dict):
        with pytest.raises(CheckpointError, match="run code"):
            load(corpus[case])
    assert not marker_for(corpus[case]).exists()


def test_pickle_named_safetensors_is_refused(corpus, tmp_path):
    from geosam.models.sam import load_state_dict

    fake = tmp_path / "sam.safetensors"
    shutil.copy(corpus["evil.pth"], fake)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_state_dict(fake)
    assert not marker_for(corpus["evil.pth"]).exists()


@pytest.fixture
def chip_folder(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "chips"
    for name in ("Forest", "Water"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("case", ["evil.pth", "evil_legacy.pth"])
def test_train_backbone_never_runs_a_payload(case, corpus, chip_folder, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["train", "folder", str(chip_folder), "--backbone", str(corpus[case]), "--epochs", "1"]
    rc, _, err = run_cli([*args, "--threads", "1", "--device", "cpu", "--out", str(out)], capsys)
    # `geosam train` reports what it is about to train on stderr first; then one error line
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("geosam: error: ")]
    assert err.rstrip().endswith(line)
    assert rc == 4 and f"geosam: error: {corpus[case]}: " in line and "run code" in line, line
    assert not marker_for(corpus[case]).exists()
    assert not out.exists()


def test_train_resume_never_runs_a_payload(corpus, chip_folder, tmp_path, capsys):
    """`--resume` reads <out>.work/last.pt: a planted pickle there is refused, in one line."""
    out = tmp_path / "model"
    (tmp_path / "model.work").mkdir()
    last = tmp_path / "model.work" / "last.pt"
    shutil.copy(corpus["evil.pth"], last)
    args = ["train", "folder", str(chip_folder), "--backbone", "tiny", "--epochs", "1", "--resume"]
    rc, _, err = run_cli([*args, "--threads", "1", "--device", "cpu", "--out", str(out)], capsys)
    assert "Traceback" not in err and "weights_only" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("geosam: error: ")]
    assert rc == 4 and f"geosam: error: {last}: cannot resume" in line, line
    assert not marker_for(corpus["evil.pth"]).exists() and not out.exists()


def test_bundle_with_pickled_weights_never_runs_a_payload(corpus):
    from geosam.models.bundle import load_bundle

    bundle = corpus["bundle_pickle_weights"]
    meta = json.loads((bundle / "model.json").read_text())
    from geosam.hashing import sha256_file

    assert meta["weights_sha256"] == sha256_file(bundle / "weights.safetensors")  # the hash matches...
    with pytest.raises(BundleError, match="cannot read weights"):  # ...yet it is never unpickled
        load_bundle(bundle)
    assert not (bundle / corpus_module().PAYLOAD_MARKER).exists()


def test_bundle_pointing_at_an_evil_sam_checkpoint(corpus, tmp_path, capsys):
    """A head-only bundle names its SAM checkpoint by sha256. Even with model.json edited to bless the
    evil checkpoint's hash, that checkpoint is still loaded weights-only and refused."""
    from geosam.hashing import sha256_file
    from geosam.testing_models import make_tiny_bundle, make_tiny_sam_checkpoint

    sam = make_tiny_sam_checkpoint(tmp_path / "sam.pth")
    bundle = make_tiny_bundle(tmp_path / "head_only", sam_checkpoint=sam)
    evil = corpus["evil.pth"]
    args = ["run", str(corpus["good.tif"]), "--model", str(bundle), "--sam-checkpoint", str(evil)]
    args += ["--regions", "felzenszwalb", "--out", str(tmp_path / "o"), "--tile-size", "128", "--halo", "16"]
    rc, _, err = run_cli(args, capsys)
    assert rc == 4 and "not the one this bundle was trained on" in error_line(err)

    meta_path = bundle / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["encoder"]["checkpoint_sha256"] = sha256_file(evil)
    meta_path.write_text(json.dumps(meta))
    rc, _, err = run_cli(args, capsys)
    line = error_line(err)
    assert rc == 4 and f"{evil}: refusing to load" in line, line
    assert not marker_for(evil).exists()


def test_bundle_weights_are_verified_by_sha256(corpus, tmp_path):
    from geosam.hashing import sha256_file
    from geosam.models.bundle import load_bundle

    bundle = corpus["bundle"]
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["weights_sha256"] == sha256_file(bundle / "weights.safetensors")
    load_bundle(bundle)  # the control loads
    for case in ("bundle_tampered_weights", "bundle_truncated_weights"):
        with pytest.raises(BundleError, match="does not match the sha256"):
            load_bundle(corpus[case])
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    meta["weights_sha256"] = ""  # an empty hash is a mismatch, not "unchecked"
    (copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="does not match the sha256"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("where", "value", "says"),
    [
        (("encoder", "config", "img_size"), 10**12, "is not the bundle's input_size"),
        (("encoder", "config", "depth"), 10**9, "depth 1000000000 != 2"),
        (("encoder", "config", "window_size"), 10**9, "window_size"),
        (("head", "hidden"), 10**12, "does not match the head weights"),
        (("head", "in_dim"), 10**9, "does not match the head weights"),
    ],
)
def test_edited_model_sizes_are_refused_before_anything_is_built(where, value, says, corpus, tmp_path):
    """model.json is not covered by the weights' sha256: sizes in it are checked against the tensors
    first, so an edited size cannot make geosam allocate terabytes (a denial of service)."""
    from geosam.models.bundle import load_bundle

    bundle = tmp_path / "b"
    shutil.copytree(corpus["bundle"], bundle)
    meta = json.loads((bundle / "model.json").read_text())
    node = meta
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=says):
        load_bundle(bundle)


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            dotted = (
                f"{f.value.id}.{f.attr}"
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                else getattr(f, "id", "")
            )
            if dotted == name:
                out.append(node)
    return out


def test_no_module_unpickles_unsafely():
    """Every torch.load in geosam passes weights_only=True; nothing calls pickle.load(s), np.load with
    allow_pickle, or yaml.load (only yaml.safe_load)."""
    offenders = []
    for py in sorted(GEOSAM.rglob("*.py")):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        for call in _calls(tree, "torch.load"):
            kw = {k.arg: k.value for k in call.keywords}
            if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                offenders.append(f"{py}:{call.lineno} torch.load without weights_only=True")
        for name in ("pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load", "dill.load"):
            offenders += [f"{py}:{c.lineno} {name}" for c in _calls(tree, name)]
        for call in _calls(tree, "np.load"):
            kw = {k.arg: k.value for k in call.keywords}
            if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value:
                offenders.append(f"{py}:{call.lineno} np.load(allow_pickle=True)")
    assert offenders == []


# -- output paths --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parents=st.lists(st.sampled_from(["..", ".", "a", "/", "~", "-rf"]), max_size=5),
    name=st.text(st.characters(exclude_characters="/\x00", codec="utf-8"), min_size=1, max_size=300),
)
def test_output_names_stay_inside_out(tmp_path, parents, name):
    from geosam.predict import output_paths

    scene = "/".join([*parents, name])
    out = tmp_path / "out"
    for path in output_paths(scene, out).values():
        assert path.parent == out
        assert len(path.name.encode("utf-8", "surrogateescape")) <= 255 - 40  # room for temp prefixes
        assert not any(ch in path.name for ch in ";!|\n\r\t\\")
        assert path.name not in (".", "..")


def test_planted_symlink_in_out_is_replaced_not_followed(corpus, tmp_path, capsys):
    """A symlink named like an output (planted by another user, or left by a tool) must not redirect
    geosam's write outside the output directory."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("good_classes.tif", "good_run.json", "good_regions.gpkg", "good.qgs"):
        (out / name).symlink_to(victim)
    args = ["run", str(corpus["good.tif"]), "--model", str(corpus["bundle"]), "--out", str(out)]
    rc, _, err = run_cli([*args, "--tile-size", "128", "--halo", "16"], capsys)
    assert rc == 0, err
    assert victim.read_text() == "keep me"
    for name in ("good_classes.tif", "good_run.json", "good_regions.gpkg", "good.qgs"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 100


@pytest.mark.parametrize("rel", ["../escape.txt", "/tmp/geosam-escape.txt", "report/../../escape.txt"])
def test_bundle_extra_files_cannot_escape(rel, corpus, tmp_path):
    from geosam.models.bundle import load_bundle, save_bundle

    bundle = load_bundle(corpus["bundle"])
    dest = tmp_path / "models" / "b1"
    with pytest.raises(BundleError, match="escape the bundle folder"):
        save_bundle(dest, bundle.model, bundle.meta, extra_files={rel: b"x"})
    assert not (tmp_path / "models" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not Path("/tmp/geosam-escape.txt").exists()
    assert not dest.exists() and list((tmp_path / "models").iterdir()) == []
