"""GPT-2 checkpoints in the Hugging Face layout, made and checked with `transformers`.

`make DIR`: randomly initialized `GPT2LMHeadModel`s of unusual shapes (odd head counts, a
feed-forward width that is not 4x, an untied output layer, another layer-norm epsilon), each
saved with `save_pretrained` (config.json + model.safetensors) into DIR/<name>/, beside
`inputs.json` (token ids of two sequences, the second right-padded, with its attention mask)
and `expected.json` (the last hidden state and the LM logits at every unpadded position, from
the model in float64). The Rust tests in crates/pretrain-hf import each checkpoint and must
match within 1e-4. Seeded: rerunning writes the same files.

`check DIR`: loads an exported checkpoint (`pretrain export-hf`) with
`GPT2LMHeadModel.from_pretrained`, fails on any missing or unexpected key, runs DIR's
`inputs.json` and compares with DIR's `expected.json` (what pretrain computed) within 1e-4.

Regenerate the fixtures (needs `pip install torch transformers`):
    python3 tools/hf/gpt2.py make crates/pretrain-hf/fixtures
"""

import json
import pathlib
import sys

import torch
from fixture import perturb_and_save
from transformers import GPT2Config, GPT2LMHeadModel

SHAPES = {
    # Three heads of width 4, GPT-2's defaults otherwise.
    "gpt2-odd-heads": dict(vocab_size=37, n_positions=16, n_embd=12, n_layer=2, n_head=3),
    # A feed-forward width of 20 (not 4 x 8), an untied output layer, epsilon 1e-6.
    "gpt2-untied": dict(
        vocab_size=29,
        n_positions=12,
        n_embd=8,
        n_layer=1,
        n_head=2,
        n_inner=20,
        tie_word_embeddings=False,
        layer_norm_epsilon=1e-6,
    ),
}


def inputs(vocab, length=7):
    generator = torch.Generator().manual_seed(vocab)
    ids = torch.randint(0, vocab, (2, length), generator=generator)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, 5:] = 0
    ids[1, 5:] = 0
    return ids, mask


def outputs(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hidden, logits = out.hidden_states[-1], out.logits
    rows = []
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        rows.append(
            {
                "last_hidden_state": hidden[b, :n].tolist(),
                "logits": logits[b, :n].tolist(),
            }
        )
    return rows


def make(root):
    for name, shape in SHAPES.items():
        torch.manual_seed(20261202)
        last = shape["vocab_size"] - 1
        config = GPT2Config(
            **shape,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=last,
            eos_token_id=last,
        )
        model = GPT2LMHeadModel(config).eval()
        out = perturb_and_save(model, root, name)
        ids, mask = inputs(shape["vocab_size"])
        (out / "inputs.json").write_text(
            json.dumps({"input_ids": ids.tolist(), "attention_mask": mask.tolist()})
        )
        expected = outputs(model.double(), ids, mask)
        (out / "expected.json").write_text(json.dumps(expected))
        print(f"wrote {out}")


def check(directory):
    directory = pathlib.Path(directory)
    model, info = GPT2LMHeadModel.from_pretrained(directory, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"{directory}: transformers reports {problems}")
    data = json.loads((directory / "inputs.json").read_text())
    ids = torch.tensor(data["input_ids"])
    mask = torch.tensor(data["attention_mask"])
    got = outputs(model.eval().double(), ids, mask)
    want = json.loads((directory / "expected.json").read_text())
    worst = 0.0
    for g, w in zip(got, want):
        for key in ("last_hidden_state", "logits"):
            diff = (torch.tensor(g[key]) - torch.tensor(w[key], dtype=torch.float64)).abs()
            worst = max(worst, float(diff.max()))
    if worst > 1e-4:
        sys.exit(f"{directory}: transformers' outputs differ from pretrain's by {worst:.2e}")
    print(f"{directory}: transformers loads it with no missing or unexpected keys; outputs "
          f"within {worst:.1e} of pretrain's")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    {"make": make, "check": check}[sys.argv[1]](sys.argv[2])
