"""Writes tests/data/checkpoints-0fed4af.json: tiny checkpoints in the format from before issue 35's
pixel distributions, with the NLLs they gave, as text, for tests/test_checkpoints.py. Run from a
checkout of 0fed4af: `PYTHONPATH=. python <this file> OUT`."""
import json
import sys
import tempfile
from pathlib import Path

import torch

from models import build_model
from models.checkpoint import save_checkpoint
from tests.helpers import randomize

CASES = {  # name -> (family, image shape, constructor arguments)
    "made": ("made", (1, 3, 3), {"hidden_sizes": [12]}),
    "made_grey": ("made", (1, 2, 2), {"hidden_sizes": [12], "pixel_levels": 4, "components": 2}),
    "pixelcnn_grey_softmax": ("pixelcnn", (1, 3, 3), {"channels": 8, "residual_blocks": 1, "first_kernel": 3, "kernel": 3,
                                                      "head_channels": 8, "pixel_levels": 4, "output": "softmax"}),
    "vae": ("vae", (1, 3, 3), {"latent_dim": 2, "hidden_sizes": [8], "eval_samples": 4}),
    "vae_grey": ("vae", (1, 2, 2), {"latent_dim": 2, "hidden_sizes": [8], "eval_samples": 4, "pixel_levels": 4,
                                    "decoder_components": 2}),
}


def as_text(value):
    """A tensor as its dtype, shape and values (exact: float32 values are exact as JSON doubles)."""
    if torch.is_tensor(value):
        return {"dtype": str(value.dtype).removeprefix("torch."), "shape": list(value.shape),
                "values": value.flatten().tolist()}
    return value


written = {}
for name, (family, shape, kwargs) in CASES.items():
    model = randomize(build_model(family, shape, **kwargs))
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, kwargs.get("pixel_levels", 2), (6, *shape), generator=gen).float()
    torch.manual_seed(0)
    with torch.no_grad():
        nll = model.eval().nll(images)
    path = Path(tempfile.mkdtemp()) / f"{name}.pt"
    save_checkpoint(path, model, family, kwargs)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"] = {key: as_text(value) for key, value in ckpt["state_dict"].items()}
    written[name] = {"checkpoint": ckpt, "images": as_text(images), "nll": as_text(nll)}
Path(sys.argv[1]).write_text(json.dumps(written) + "\n")
