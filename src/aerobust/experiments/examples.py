"""Example images for the report: clean, the AE's reconstruction, and PGD adversarials
for C and for AE-C, so a reader sees what the numbers are about. Written once per
config (the report only reads them)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from aerobust import atomic, attacks
from aerobust.corrupt import set_aside
from aerobust.experiments.recipes import variant
from aerobust.experiments.workspace import Workspace
from aerobust.metrics import predict

FILE = "examples.npz"


def examples_current(out_dir: Path, config_digest: str) -> bool:
    """Whether ``out_dir`` holds the examples of this config; a file that does not parse
    is set aside (and so drawn again)."""
    path = Path(out_dir) / FILE
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as old:
            return str(old["config_hash"]) == config_digest
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        set_aside(path, "not a readable examples file (truncated or edited?)")
        return False


def write_examples(ws: Workspace, out_dir: Path, k: int = 8) -> Path:
    """``examples.npz`` for the first ``k`` test images, attacked with PGD at the larger
    of Table 1's epsilons, on the first seed's models; kept when it was made under the
    same config."""
    path = Path(out_dir) / FILE
    if examples_current(out_dir, ws.config.digest):
        return path
    ctx, seed = ws.context, ws.config.seed
    x, y = ctx.images(k)
    c, ae_c = (ctx.model(variant(ws.setup, name, seed)) for name in ("C", "AE-C"))
    eps = max(ws.config.eps)
    pgd = attacks.get("pgd", eps=eps / 255, steps=ws.config.pgd_steps, seed=seed, keep="last")
    device = ctx.device
    adv_c = pgd(c, x.to(device), y.to(device)).x_adv.cpu()
    adv_ae_c = pgd(ae_c, x.to(device), y.to(device)).x_adv.cpu()
    with torch.no_grad():
        reconstruction = ae_c.autoencoder(x.to(device)).cpu()
    arrays = {
        "clean": x, "reconstruction": reconstruction, "adv_c": adv_c, "adv_ae_c": adv_ae_c,
        "label": y, "pred_c_clean": predict(c, x), "pred_c_adv": predict(c, adv_c),
        "pred_ae_c_adv": predict(ae_c, adv_ae_c),
    }
    buf = io.BytesIO()
    np.savez_compressed(
        buf, **{name: a.numpy() for name, a in arrays.items()},
        attack=np.array(f"PGD eps={eps:g}/255 ({ws.config.pgd_steps} steps, last iterate)"),
        config_hash=np.array(ws.config.digest))
    atomic.write_bytes(path, buf.getvalue())
    return path
