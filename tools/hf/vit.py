"""ViT and ViT-MAE checkpoints in the Hugging Face layout, made with `transformers`.

`make DIR`: randomly initialized models of unusual shapes (three heads of width 4, a
feed-forward width of 20, 12x12 images of 4x4 patches, epsilon 1e-6) saved with
`save_pretrained` into DIR/<name>/, beside `inputs.json` (two seeded images, and for the MAE
the masking noise) and `expected.json` (computed in float64):
- `vit-odd`: a `ViTModel` with its pooler; expected: the last hidden state of every token.
- `vit-wide`: the same on images that are not square (12x16: 3 x 4 patches).
- `vit-mae-odd`: a `ViTMAEForPreTraining` (decoder of width 8 with two heads and a
  feed-forward width of 12, half the patches masked, normalized pixel targets); its fixed
  position tables hold the 2-D sin-cos table transformers' `initialize_weights` computes (a
  transformers 5 model built from a config leaves them zero; pretrained checkpoints hold the
  table). Expected: the encoder's last hidden state on the kept patches and the decoder's
  logits for every patch, with the noise given.
The Rust tests in crates/pretrain-hf import them and must match within 1e-4. Seeded: rerunning
writes the same files.

`check DIR`: loads an exported checkpoint (`pretrain export-hf` of a run with a ViT encoder,
written as `ViTModel` without a pooler, or of a MAE run, written as `ViTMAEForPreTraining`),
fails on any missing or unexpected key, and compares its outputs on DIR's `inputs.json` (pixel
values; for a MAE, the noise) with DIR's `expected.json` (what `pretrain embed` wrote) within
1e-4.

Regenerate (needs `pip install torch transformers`):
    python3 tools/hf/vit.py make crates/pretrain-hf/fixtures
"""

import json
import pathlib
import sys

import torch
from fixture import perturb_and_save
from transformers import ViTConfig, ViTMAEConfig, ViTMAEForPreTraining, ViTModel
from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding

SHAPE = dict(
    image_size=12,
    patch_size=4,
    num_channels=3,
    hidden_size=12,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=20,
    layer_norm_eps=1e-6,
)
DECODER = dict(
    decoder_hidden_size=8,
    decoder_num_hidden_layers=2,
    decoder_num_attention_heads=2,
    decoder_intermediate_size=12,
    mask_ratio=0.5,
    norm_pix_loss=True,
)


def sincos(grid, dim):
    """The fixed position table of a ViT-MAE, as `initialize_weights` lays it out (the two
    halves rotated to the original MAE's order)."""
    table = build_2d_sinusoidal_position_embedding(grid, grid, dim, cls_token=True)
    half = dim // 2
    return torch.cat([table[..., half:], table[..., :half]], dim=-1).unsqueeze(0)


def images():
    return torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(12))


def make_vit(root, name, shape, width=12):
    torch.manual_seed(20261202)
    model = ViTModel(ViTConfig(**shape)).eval()
    out = perturb_and_save(model, root, name)
    pixels = torch.randn(2, 3, 12, width, generator=torch.Generator().manual_seed(12))
    (out / "inputs.json").write_text(json.dumps({"pixel_values": pixels.tolist()}))
    with torch.no_grad():
        hidden = model.double()(pixel_values=pixels.double()).last_hidden_state
    (out / "expected.json").write_text(json.dumps({"last_hidden_state": hidden.tolist()}))
    print(f"wrote {out}")


def make_mae(root):
    torch.manual_seed(20261203)
    model = ViTMAEForPreTraining(ViTMAEConfig(**SHAPE, **DECODER)).eval()
    grid = SHAPE["image_size"] // SHAPE["patch_size"]
    with torch.no_grad():
        model.vit.embeddings.position_embeddings.copy_(sincos(grid, SHAPE["hidden_size"]))
        model.decoder.decoder_pos_embed.copy_(sincos(grid, DECODER["decoder_hidden_size"]))
    out = perturb_and_save(model, root, "vit-mae-odd")
    pixels = images()
    noise = torch.rand(2, grid * grid, generator=torch.Generator().manual_seed(13))
    (out / "inputs.json").write_text(
        json.dumps({"pixel_values": pixels.tolist(), "noise": noise.tolist()})
    )
    with torch.no_grad():
        model = model.double()
        hidden = model.vit(pixel_values=pixels.double(), noise=noise).last_hidden_state
        logits = model(pixel_values=pixels.double(), noise=noise).logits
    (out / "expected.json").write_text(
        json.dumps({"last_hidden_state": hidden.tolist(), "logits": logits.tolist()})
    )
    print(f"wrote {out}")


def check(directory):
    """Loads an exported ViTModel or ViTMAEForPreTraining and compares its outputs on DIR's
    `inputs.json` with DIR's `expected.json` (one row per image, as `pretrain embed` writes)."""
    directory = pathlib.Path(directory)
    kind = json.loads((directory / "config.json").read_text())["model_type"]
    if kind == "vit_mae":
        model, info = ViTMAEForPreTraining.from_pretrained(directory, output_loading_info=True)
    else:
        model, info = ViTModel.from_pretrained(
            directory, add_pooling_layer=False, output_loading_info=True
        )
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"{directory}: transformers reports {problems}")
    data = json.loads((directory / "inputs.json").read_text())
    pixels = torch.tensor(data["pixel_values"], dtype=torch.float64)
    model = model.double().eval()
    with torch.no_grad():
        if kind == "vit_mae":
            noise = torch.tensor(data["noise"])
            outputs = {
                "last_hidden_state": model.vit(pixel_values=pixels, noise=noise).last_hidden_state,
                "logits": model(pixel_values=pixels, noise=noise).logits,
            }
        else:
            outputs = {"last_hidden_state": model(pixel_values=pixels).last_hidden_state}
    want = json.loads((directory / "expected.json").read_text())
    worst = 0.0
    for b, row in enumerate(want):
        for key, got in outputs.items():
            diff = (got[b] - torch.tensor(row[key], dtype=torch.float64)).abs()
            worst = max(worst, float(diff.max()))
    if worst > 1e-4:
        sys.exit(f"{directory}: transformers' outputs differ from pretrain's by {worst:.2e}")
    print(f"{directory}: transformers loads it with no missing or unexpected keys; outputs "
          f"within {worst:.1e} of pretrain's")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make_vit(sys.argv[2], "vit-odd", SHAPE)
        make_vit(sys.argv[2], "vit-wide", {**SHAPE, "image_size": [12, 16]}, width=16)
        make_mae(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        check(sys.argv[2])
    else:
        sys.exit(__doc__)
