"""ViT checkpoints in the Hugging Face layout, made with `transformers`.

`make DIR`: a randomly initialized `ViTModel` of an unusual shape (three heads of width 4, a
feed-forward width of 20, 12x12 images of 4x4 patches, epsilon 1e-6, with its pooler) saved
with `save_pretrained` into DIR/vit-odd/, beside `inputs.json` (two seeded images) and
`expected.json` (the last hidden state of every token, computed in float64). The Rust tests in
crates/pretrain-hf import it and must match within 1e-4. Seeded: rerunning writes the same files.

Regenerate (needs `pip install torch transformers`):
    python3 tools/hf/vit.py make crates/pretrain-hf/fixtures
"""

import json
import sys

import torch
from fixture import perturb_and_save
from transformers import ViTConfig, ViTModel

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


def make(root):
    torch.manual_seed(20261202)
    model = ViTModel(ViTConfig(**SHAPE)).eval()
    out = perturb_and_save(model, root, "vit-odd")
    pixels = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(12))
    (out / "inputs.json").write_text(json.dumps({"pixel_values": pixels.tolist()}))
    with torch.no_grad():
        hidden = model.double()(pixel_values=pixels.double()).last_hidden_state
    (out / "expected.json").write_text(json.dumps({"last_hidden_state": hidden.tolist()}))
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "make":
        sys.exit(__doc__)
    make(sys.argv[2])
