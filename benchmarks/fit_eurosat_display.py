"""Fit the Sentinel-2 reflectance -> EuroSAT RGB JPEG mapping that lets the default model take reflectance.

The 270 EuroSAT MS GeoTIFF chips in ../shared/data/eurosat_ms are the same places, pixel for pixel, as
the EuroSAT RGB JPEGs of the same names (the pixel correlation of B04 and the JPEG red channel peaks at
zero shift, r = 0.99). Per band (B04 -> red, B03 -> green, B02 -> blue) this script fits, on the 216
training chips, with robust least squares (soft-L1 loss, scale 10 levels):

* ``linear``: ``level = clip(a * reflectance + b, 0, 255)``
* ``gamma``:  ``level = clip(255 * (reflectance / c) ** g + d, 0, 255)``

and reports RMSE, MAE and R^2 in 8-bit levels on the 54 test chips, plus the mapping
``geosam.preprocess.EUROSAT_RGB_FROM_L1C`` ships (display fraction = level / 255) evaluated the same
way. Reflectance is DN / 10000 (EuroSAT predates processing baseline 04.00: no offset).

    python benchmarks/fit_eurosat_display.py [--data ../shared/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BANDS = (("red", 3, 0), ("green", 2, 1), ("blue", 1, 2))  # name, MS band index (B04, B03, B02), JPEG channel


def load_pairs(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ms (N, 13, 64, 64) DN, rgb (N, 3, 64, 64) levels, is_train (N,))`` for every MS chip."""
    import rasterio
    from PIL import Image

    files = sorted((data / "eurosat_ms").glob("*/*/*.tif"))
    ms, rgb, train = [], [], []
    for f in files:
        with rasterio.open(f) as ds:
            ms.append(ds.read().astype(np.float64))
        jpg = data / "eurosat_rgb" / "2750" / f.parent.name / (f.stem + ".jpg")
        rgb.append(np.asarray(Image.open(jpg), np.float64).transpose(2, 0, 1))
        train.append(f.parts[-3] == "train")
    return np.stack(ms), np.stack(rgb), np.asarray(train)


def _linear(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.clip(p[0] * x + p[1], 0, 255)


def _gamma(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.clip(255 * np.clip(x / p[0], 0, None) ** p[1] + p[2], 0, 255)


def _residual(model, x: np.ndarray, y: np.ndarray):
    return lambda p: model(p, x) - y


def _scores(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    res = pred - y
    return {
        "rmse_levels": round(float(np.sqrt((res**2).mean())), 3),
        "mae_levels": round(float(np.abs(res).mean()), 3),
        "r2": round(float(1 - (res**2).sum() / ((y - y.mean()) ** 2).sum()), 5),
    }


def fit(data: Path) -> dict[str, object]:
    """Fit both models per band; evaluate them and the shipped mapping on the test chips."""
    from scipy.optimize import least_squares

    from geosam.preprocess import EUROSAT_RGB_FROM_L1C

    ms, rgb, train = load_pairs(data)
    out: dict[str, object] = {"train_chips": int(train.sum()), "test_chips": int((~train).sum())}
    shipped = EUROSAT_RGB_FROM_L1C
    for k, (name, bi, ci) in enumerate(BANDS):
        x, y = ms[train, bi].ravel() / 1e4, rgb[train, ci].ravel()
        xt, yt = ms[~train, bi].ravel() / 1e4, rgb[~train, ci].ravel()
        lin = least_squares(_residual(_linear, x, y), [900.0, 0.0], loss="soft_l1", f_scale=10).x
        gam = least_squares(_residual(_gamma, x, y), [0.28, 1.0, 0.0], loss="soft_l1", f_scale=10).x
        ship = np.clip(255 * (shipped.gain[k] * xt + shipped.bias[k]), 0, 255)
        out[name] = {
            "linear": {
                "gain_per_reflectance": round(float(lin[0]), 4),
                "bias_levels": round(float(lin[1]), 4),
                "display_gain": round(float(lin[0] / 255), 6),
                "display_bias": round(float(lin[1] / 255), 6),
                "reflectance_at_255": round(float((255 - lin[1]) / lin[0]), 5),
                **_scores(_linear(lin, xt), yt),
            },
            "gamma": {
                "c": round(float(gam[0]), 5),
                "gamma": round(float(gam[1]), 4),
                "d": round(float(gam[2]), 3),
                **_scores(_gamma(gam, xt), yt),
            },
            "shipped": _scores(ship, yt),
            "pixel_correlation": round(float(np.corrcoef(xt, yt)[0, 1]), 4),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("GEOSAM_SHARED_DATA", ROOT.parent / "shared" / "data")),
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    res = fit(args.data)
    print(
        f"fit on {res['train_chips']} training chips, scored on {res['test_chips']} test chips (8-bit levels)"
    )
    print(f"{'band':6} {'model':8} {'parameters':44} {'RMSE':>6} {'MAE':>6} {'R^2':>7}")
    for name, _, _ in BANDS:
        r = res[name]
        assert isinstance(r, dict)
        lin, gam, ship = r["linear"], r["gamma"], r["shipped"]
        rows = [
            (
                "linear",
                f"a={lin['gain_per_reflectance']:.2f}/refl b={lin['bias_levels']:.2f} "
                f"(255 at {lin['reflectance_at_255']:.4f})",
                lin,
            ),
            ("gamma", f"c={gam['c']:.4f} gamma={gam['gamma']:.3f} d={gam['d']:.2f}", gam),
            ("shipped", "geosam.preprocess.EUROSAT_RGB_FROM_L1C", ship),
        ]
        for model, params, sc in rows:
            print(
                f"{name:6} {model:8} {params:44} "
                f"{sc['rmse_levels']:6.2f} {sc['mae_levels']:6.2f} {sc['r2']:7.4f}"
            )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
