"""BERT checkpoints in the Hugging Face layout, made with `transformers`.

`make DIR`: randomly initialized BERTs of unusual shapes saved with `save_pretrained`
(config.json + model.safetensors) into DIR/<name>/, beside `inputs.json` (token ids, segment
ids and an attention mask; the second row right-padded) and `expected.json` (per row, over its
unpadded positions: the last hidden state, and the pooled output of a `BertModel`, the MLM
logits of a `BertForMaskedLM` or the class logits of a `BertForSequenceClassification`,
computed in float64). The Rust tests in crates/pretrain-hf import
each checkpoint and must match within 1e-4. Seeded: rerunning writes the same files.

`check DIR [FIXTURE]`: loads an exported checkpoint (`pretrain export-hf` of a masked-LM run,
or an imported fixture written back by `pretrain_hf::bert::save`) with
`BertForMaskedLM.from_pretrained`, fails on any missing or unexpected key, and compares its
outputs with pretrain's within 1e-4: on DIR's `inputs.json` against DIR's `expected.json` (what
`pretrain embed` wrote), or on FIXTURE's inputs against FIXTURE's expected outputs.

Regenerate (needs `pip install torch transformers`):
    python3 tools/hf/bert.py make crates/pretrain-hf/fixtures
"""

import json
import pathlib
import sys

import torch
from fixture import perturb_and_save
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

SHAPES = {
    # A masked-LM head, three heads of width 4, a feed-forward width of 20 (not 4 x 12).
    "bert-mlm-odd": (
        BertForMaskedLM,
        dict(
            vocab_size=41,
            hidden_size=12,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=20,
            max_position_embeddings=16,
        ),
    ),
    # The encoder with its pooler, three segment types, epsilon 1e-7.
    "bert-model": (
        BertModel,
        dict(
            vocab_size=23,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=10,
            type_vocab_size=3,
            layer_norm_eps=1e-7,
        ),
    ),
    # A sequence classifier of three named classes on the pooled output.
    "bert-cls-odd": (
        BertForSequenceClassification,
        dict(
            vocab_size=37,
            hidden_size=12,
            num_hidden_layers=2,
            num_attention_heads=3,
            intermediate_size=20,
            max_position_embeddings=16,
            id2label={0: "bad", 1: "so-so", 2: "good"},
            label2id={"bad": 0, "so-so": 1, "good": 2},
        ),
    ),
}


def inputs(vocab, types, length=7):
    generator = torch.Generator().manual_seed(vocab)
    ids = torch.randint(0, vocab, (2, length), generator=generator)
    segments = torch.randint(0, types, (2, length), generator=generator)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, 5:] = 0
    ids[1, 5:] = 0
    return ids, segments, mask


def make(root):
    for name, (cls, shape) in SHAPES.items():
        torch.manual_seed(20261202)
        config = BertConfig(**shape, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model = cls(config).eval()
        out = perturb_and_save(model, root, name)
        ids, segments, mask = inputs(config.vocab_size, config.type_vocab_size)
        (out / "inputs.json").write_text(
            json.dumps(
                {
                    "input_ids": ids.tolist(),
                    "token_type_ids": segments.tolist(),
                    "attention_mask": mask.tolist(),
                }
            )
        )
        model = model.double()
        with torch.no_grad():
            out_ = model(
                input_ids=ids,
                token_type_ids=segments,
                attention_mask=mask,
                output_hidden_states=True,
            )
        rows = []
        for b in range(2):
            n = int(mask[b].sum())
            row = {"last_hidden_state": out_.hidden_states[-1][b, :n].tolist()}
            if cls is BertModel:
                row["pooler_output"] = out_.pooler_output[b].tolist()
            elif cls is BertForSequenceClassification:
                row["logits"] = out_.logits[b].tolist()
            else:
                row["logits"] = out_.logits[b, :n].tolist()
            rows.append(row)
        (out / "expected.json").write_text(json.dumps(rows))
        print(f"wrote {out}")


def check(directory, fixture=None):
    """Loads an exported BertForMaskedLM checkpoint and compares its outputs on the inputs with
    the expected outputs, both read from FIXTURE when given (the export of an imported fixture
    must reproduce them), else from DIR (`inputs.json`, and `expected.json` as `pretrain embed`
    writes it)."""
    directory = pathlib.Path(directory)
    source = pathlib.Path(fixture) if fixture else directory
    model, info = BertForMaskedLM.from_pretrained(directory, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"{directory}: transformers reports {problems}")
    data = json.loads((source / "inputs.json").read_text())
    ids = torch.tensor(data["input_ids"])
    mask = torch.tensor(data.get("attention_mask", torch.ones_like(ids).tolist()))
    segments = torch.tensor(data.get("token_type_ids", torch.zeros_like(ids).tolist()))
    with torch.no_grad():
        out = model.double().eval()(
            input_ids=ids, token_type_ids=segments, attention_mask=mask, output_hidden_states=True
        )
    want = json.loads((source / "expected.json").read_text())
    worst = 0.0
    for b, row in enumerate(want):
        n = int(mask[b].sum())
        for key, got in (("last_hidden_state", out.hidden_states[-1]), ("logits", out.logits)):
            diff = (got[b, :n] - torch.tensor(row[key], dtype=torch.float64)).abs()
            worst = max(worst, float(diff.max()))
    if worst > 1e-4:
        sys.exit(f"{directory}: transformers' outputs differ from pretrain's by {worst:.2e}")
    print(f"{directory}: transformers loads it with no missing or unexpected keys; outputs "
          f"within {worst:.1e} of pretrain's")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "check":
        check(*sys.argv[2:])
    else:
        sys.exit(__doc__)
