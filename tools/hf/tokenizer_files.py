"""Hugging Face tokenizer files, and the ids `transformers` encodes with them.

`make DIR`: trains a byte-level BPE (GPT-2 style, 400 tokens, `<|endoftext|>` special) and a
WordPiece (BERT style, 300 tokens, cased) on the shipped Moby Dick chapters with the
`tokenizers` library, and writes each the two ways checkpoints ship them:
- `gpt2-files/`: `vocab.json` + `merges.txt` (GPT-2's own files); `bert-files/`: `vocab.txt`
  and a `tokenizer_config.json` saying `do_lower_case: false`;
- `gpt2-json/`, `bert-json/`: the `tokenizer.json` that `transformers` writes after loading
  those files (`from_pretrained`, then `save_pretrained`).
`expected.json` holds sample texts (punctuation, capitals, accents, emoji, spaces) and, per
tokenizer, the ids `transformers`' tokenizer loaded from the `*-files` folder gives with and
without special tokens. The Rust tests in crates/pretrain-data load every folder with
`TextTokenizer::from_hf_dir` and must give the same ids. Deterministic: rerunning writes the
same files.

Regenerate (needs `pip install transformers`):
    python3 tools/hf/tokenizer_files.py make crates/pretrain-data/fixtures/hf-tokenizers
"""

import json
import pathlib
import sys

from tokenizers import ByteLevelBPETokenizer, BertWordPieceTokenizer
from transformers import BertTokenizer, GPT2Tokenizer

TEXTS = [
    "Call me Ishmael. Some years ago - never mind how long precisely -",
    "  The WHALE's jaw,\tunlike  any other!  ",
    "Naïve café owners said: «voilà» 🐋🐋 ok?",
    "",
    "3.14159 pounds of spermaceti, 1851",
]


def corpus():
    root = pathlib.Path(__file__).resolve().parents[2] / "data/text/moby-dick"
    return [str(root / f"chapter_{i}.txt") for i in range(1, 9)]


def make(out):
    out = pathlib.Path(out)
    gpt2_files, gpt2_json = out / "gpt2-files", out / "gpt2-json"
    bert_files, bert_json = out / "bert-files", out / "bert-json"
    for folder in (gpt2_files, gpt2_json, bert_files, bert_json):
        folder.mkdir(parents=True, exist_ok=True)

    bpe = ByteLevelBPETokenizer()
    bpe.train(corpus(), vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"],
              show_progress=False)
    bpe.save_model(str(gpt2_files))
    gpt2 = GPT2Tokenizer.from_pretrained(gpt2_files)
    gpt2.save_pretrained(gpt2_json)

    wordpiece = BertWordPieceTokenizer(lowercase=False)
    wordpiece.train(corpus(), vocab_size=300, min_frequency=2, show_progress=False,
                    special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    wordpiece.save_model(str(bert_files))
    (bert_files / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    bert = BertTokenizer.from_pretrained(bert_files)
    bert.save_pretrained(bert_json)

    expected = {"texts": TEXTS}
    for name, tokenizer in (("gpt2", gpt2), ("bert", bert)):
        expected[name] = {
            "plain": [tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS],
            "special": [tokenizer(t, add_special_tokens=True)["input_ids"] for t in TEXTS],
        }
    (out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(__doc__)
