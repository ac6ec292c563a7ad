"""Reference values for pretrain's GPT and causal-LM loss, computed with PyTorch.

A tiny GPT-2 written out here in plain PyTorch, the way Hugging Face's `GPT2LMHeadModel` and
nanoGPT compute it: pre-norm blocks (LayerNorm eps 1e-5), fused q/k/v projection `c_attn`,
causal softmax attention scaled by 1/sqrt(d_head), tanh-approximated GELU ("gelu_new"),
learned positions or rotary embeddings (the rotate-half layout, base 10,000), a final LayerNorm
and an output projection tied to the token embedding. Random weights (float32 values, evaluated
in float64) are stored under pretrain's parameter names in burn's layout (a linear weight is
`[d_in, d_out]`, as GPT-2's Conv1D stores it; a LayerNorm has `gamma` and `beta`), with token
windows, the logits, the mean next-token cross-entropy, that loss with the predictions made at an
end-of-text token left out, and the gradient of the loss with respect to the token embedding.
The Rust test (`crates/pretrain-objectives/src/reference_tests.rs`) loads the weights into a
`Gpt` and must match to 1e-5.

Regenerate (needs `pip install torch`):
    python3 tools/reference/gpt.py > crates/pretrain-objectives/fixtures/reference_gpt.json
"""

import json
import math

import torch
import torch.nn.functional as F

torch.manual_seed(20261202)

VOCAB, BLOCK, LAYERS, HEADS, WIDTH = 13, 8, 2, 2, 8
END_OF_TEXT = 3


def param(*shape, scale=0.3, offset=0.0):
    # float32 values (what the Rust side holds), promoted to float64 for the reference.
    x = (torch.randn(*shape) * scale + offset).to(torch.float32)
    return x.to(torch.float64).requires_grad_(True)


def weights(positions):
    w = {"wte.weight": param(VOCAB, WIDTH)}
    if positions == "learned":
        w["wpe.weight"] = param(BLOCK, WIDTH)
    for i in range(LAYERS):
        p = f"h.{i}."
        for norm in ("ln_1", "ln_2"):
            w[p + norm + ".gamma"] = param(WIDTH, scale=0.1, offset=1.0)
            w[p + norm + ".beta"] = param(WIDTH, scale=0.1)
        for name, d_in, d_out in (
            ("attn.c_attn", WIDTH, 3 * WIDTH),
            ("attn.c_proj", WIDTH, WIDTH),
            ("mlp.c_fc", WIDTH, 4 * WIDTH),
            ("mlp.c_proj", 4 * WIDTH, WIDTH),
        ):
            w[p + name + ".weight"] = param(d_in, d_out)
            w[p + name + ".bias"] = param(d_out, scale=0.1)
    w["ln_f.gamma"] = param(WIDTH, scale=0.1, offset=1.0)
    w["ln_f.beta"] = param(WIDTH, scale=0.1)
    return w


def layer_norm(x, w, name):
    return F.layer_norm(x, (WIDTH,), w[name + ".gamma"], w[name + ".beta"], eps=1e-5)


def linear(x, w, name):
    # burn's (and GPT-2 Conv1D's) layout: x @ W + b with W [d_in, d_out].
    return x @ w[name + ".weight"] + w[name + ".bias"]


def rotate(x, seq):
    d_head = x.shape[-1]
    half = d_head // 2
    inv_freq = 10000.0 ** (-2.0 * torch.arange(half, dtype=torch.float64) / d_head)
    angles = torch.arange(seq, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)  # [seq, d_head]
    a, b = x[..., :half], x[..., half:]
    return x * angles.cos() + torch.cat([-b, a], dim=-1) * angles.sin()


def forward(tokens, w, positions):
    batch, seq = tokens.shape
    x = w["wte.weight"][tokens]
    if positions == "learned":
        x = x + w["wpe.weight"][:seq]
    d_head = WIDTH // HEADS
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    for i in range(LAYERS):
        p = f"h.{i}."
        h = layer_norm(x, w, p + "ln_1")
        q, k, v = linear(h, w, p + "attn.c_attn").split(WIDTH, dim=-1)
        q, k, v = (t.view(batch, seq, HEADS, d_head).transpose(1, 2) for t in (q, k, v))
        if positions == "rope":
            q, k = rotate(q, seq), rotate(k, seq)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d_head)
        scores = scores.masked_fill(~causal, float("-inf"))
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, seq, WIDTH)
        x = x + linear(context, w, p + "attn.c_proj")
        h = layer_norm(x, w, p + "ln_2")
        h = F.gelu(linear(h, w, p + "mlp.c_fc"), approximate="tanh")
        x = x + linear(h, w, p + "mlp.c_proj")
    x = layer_norm(x, w, "ln_f")
    return x @ w["wte.weight"].T  # tied output projection


def tensor_json(t):
    return {"shape": list(t.shape), "data": [float(v) for v in t.detach().flatten()]}


def case(positions):
    w = weights(positions)
    windows = torch.randint(0, VOCAB, (2, BLOCK + 1))
    windows[0, 3] = END_OF_TEXT
    windows[1, 6] = END_OF_TEXT
    inputs, targets = windows[:, :-1], windows[:, 1:]
    logits = forward(inputs, w, positions)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    masked_targets = targets.masked_fill(inputs == END_OF_TEXT, -100)
    masked_loss = F.cross_entropy(
        logits.reshape(-1, VOCAB), masked_targets.reshape(-1), ignore_index=-100
    )
    (grad,) = torch.autograd.grad(loss, w["wte.weight"])
    return {
        "positions": positions,
        "config": {
            "vocab_size": VOCAB,
            "block_size": BLOCK,
            "n_layer": LAYERS,
            "n_head": HEADS,
            "d_model": WIDTH,
            "end_of_text": END_OF_TEXT,
        },
        "weights": {name: tensor_json(t) for name, t in w.items()},
        "inputs": inputs.flatten().tolist(),
        "targets": targets.flatten().tolist(),
        "shape": list(inputs.shape),
        "logits": tensor_json(logits),
        "loss": loss.item(),
        "masked_loss": masked_loss.item(),
        "wte_grad": tensor_json(grad),
    }


def main():
    cases = [case("learned"), case("rope")]
    print(json.dumps({"torch": torch.__version__, "cases": cases}))


if __name__ == "__main__":
    main()
