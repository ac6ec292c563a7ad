"""What tools/hf/gpt2.py and tools/hf/bert.py share: saving a fixture checkpoint."""

import pathlib

import torch


def perturb_and_save(model, root, name):
    """Perturbs `model`'s norms and biases (initialized to 1 and 0, so a swapped or dropped one
    would not show), saves it with `save_pretrained` into root/name and returns that folder."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    out = pathlib.Path(root) / name
    model.save_pretrained(out)
    (out / "generation_config.json").unlink(missing_ok=True)
    return out
