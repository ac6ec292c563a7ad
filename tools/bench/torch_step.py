"""PyTorch side of `cargo xtask bench compare`: the same four training steps as
`pretrain bench step` (crates/pretrain-recipes/src/bench.rs), same shapes, on the CPU.

Prints one JSON line with the keys of `pretrain bench step`:
    python3 tools/bench/torch_step.py --model simclr-cnn --threads 2 --steps 10 --warmup 3

The models are written out here the way the Rust models are built (widths, depths, heads,
norms, pooling, heads of the objectives), so both sides do the same arithmetic: MAE on a
ViT-tiny-28 (4x4 patches, width 128, 6 pre-norm blocks, 4 heads, 75% masked, decoder width 64
with 2 blocks, per-patch normalized MSE), BERT-tiny MLM (vocabulary 8,192, 128 tokens, 2
post-norm layers of width 128, 2 heads, dropout 0.1, tied decoder, 15% of tokens predicted and
only those projected onto the vocabulary),
SimCLR with the small CNN (3x3 conv-BN-ReLU stages 32-64-128-256 with 2x2 max pooling, global
average pooling, projector 256-256(BN, ReLU)-128, NT-Xent at temperature 0.2, two views of
each image), and GPT-mini causal language modeling (6 pre-norm layers of width 192, 6 heads,
windows of 128 predicted tokens, vocabulary 8,192, tied output projection; PyTorch's fused
causal attention). Inputs are random tensors of the right shape: the arithmetic of a step does not
depend on pixel values. AdamW at lr 1e-4, as on the Rust side.
"""

import argparse
import json
import math
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, dim, heads, pre_norm, dropout=0.0, eps=1e-6):
        super().__init__()
        self.pre_norm = pre_norm
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, pad_mask=None):
        if self.pre_norm:
            h = self.norm1(x)
            x = x + self.attn(h, h, h, key_padding_mask=pad_mask, need_weights=False)[0]
            return x + self.mlp(self.norm2(x))
        x = self.norm1(x + self.drop(self.attn(x, x, x, key_padding_mask=pad_mask, need_weights=False)[0]))
        return self.norm2(x + self.drop(self.mlp(x)))


def sincos(n, dim):
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float32) / (dim / 2))
    return torch.cat([torch.sin(pos * omega), torch.cos(pos * omega)], 1)


class Mae(nn.Module):
    def __init__(self, patch=4, dim=128, depth=6, heads=4, dec_dim=64, dec_depth=2, dec_heads=4):
        super().__init__()
        self.patch = patch
        n = (28 // patch) ** 2
        self.embed = nn.Conv2d(1, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos", sincos(n, dim)[None])
        self.blocks = nn.ModuleList(Block(dim, heads, True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.dec_embed = nn.Linear(dim, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("dec_pos", sincos(n, dec_dim)[None])
        self.dec_blocks = nn.ModuleList(Block(dec_dim, dec_heads, True) for _ in range(dec_depth))
        self.dec_norm = nn.LayerNorm(dec_dim, eps=1e-6)
        self.pred = nn.Linear(dec_dim, patch * patch)

    def loss(self, images, keep, ratio=0.75):
        b = images.shape[0]
        x = self.embed(images).flatten(2).transpose(1, 2) + self.pos  # [b, n, dim]
        n = x.shape[1]
        visible = torch.gather(x, 1, keep[:, :, None].expand(-1, -1, x.shape[2]))
        x = torch.cat([self.cls.expand(b, -1, -1), visible], 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.dec_embed(self.norm(x)[:, 1:])
        full = self.mask_token.expand(b, n, -1).clone()
        full.scatter_(1, keep[:, :, None].expand(-1, -1, full.shape[2]), x)
        x = full + self.dec_pos
        for blk in self.dec_blocks:
            x = blk(x)
        pred = self.pred(self.dec_norm(x))
        target = F.unfold(images, self.patch, stride=self.patch).transpose(1, 2)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
        hidden = torch.ones(b, n)
        hidden.scatter_(1, keep, 0.0)
        per_patch = ((pred - target) ** 2).mean(-1)
        return (per_patch * hidden).sum() / hidden.sum()


class Bert(nn.Module):
    def __init__(self, vocab=8192, dim=128, layers=2, heads=2, seq=128, dropout=0.1):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(seq, dim)
        self.typ = nn.Embedding(2, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, False, dropout, 1e-12) for _ in range(layers))
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim, eps=1e-12))
        self.bias = nn.Parameter(torch.zeros(vocab))

    def loss(self, ids, targets):
        b, s = ids.shape
        x = self.tok(ids) + self.pos(torch.arange(s))[None] + self.typ(torch.zeros_like(ids))
        x = self.drop(self.norm(x))
        for blk in self.blocks:
            x = blk(x)
        # As on the Rust side: only the predicted positions go through the vocabulary projection.
        targets = targets.reshape(-1)
        picked = (targets >= 0).nonzero(as_tuple=True)[0]
        logits = self.transform(x.reshape(b * s, -1)[picked]) @ self.tok.weight.t() + self.bias
        return F.cross_entropy(logits, targets[picked])


class Gpt(nn.Module):
    """GPT-mini as pretrain's `Gpt` builds it: learned positions, pre-norm blocks (LayerNorm eps
    1e-5) with a fused q/k/v projection and causal attention, tanh-approximated GELU, a final
    norm and an output projection tied to the token embedding; no dropout. GPT-2's initialization,
    as pretrain's: N(0, 0.02) weights and embeddings, zero biases, the two projections into the
    residual stream scaled by 1 / sqrt(2 layers). (PyTorch's default N(0, 1) embedding makes the
    tied logits so peaked that the softmax gradient is mostly subnormal floats, which slowed this
    step's backward pass about 4x on the project's VM.)"""

    def __init__(self, vocab=8192, dim=192, layers=6, heads=6, block=128):
        super().__init__()
        self.heads = heads
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block, dim)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(dict(
                ln_1=nn.LayerNorm(dim, eps=1e-5),
                c_attn=nn.Linear(dim, 3 * dim),
                c_proj=nn.Linear(dim, dim),
                ln_2=nn.LayerNorm(dim, eps=1e-5),
                c_fc=nn.Linear(dim, 4 * dim),
                mlp_proj=nn.Linear(4 * dim, dim),
            ))
            for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(dim, eps=1e-5)
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                residual = name.endswith(("c_proj.weight", "mlp_proj.weight"))
                nn.init.normal_(p, std=0.02 / (2 * layers) ** 0.5 if residual else 0.02)

    def loss(self, tokens):
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        b, s = inputs.shape
        x = self.wte(inputs) + self.wpe(torch.arange(s))[None]
        for blk in self.blocks:
            q, k, v = blk["c_attn"](blk["ln_1"](x)).split(x.shape[-1], dim=-1)
            q, k, v = (t.view(b, s, self.heads, -1).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + blk["c_proj"](a.transpose(1, 2).reshape(b, s, -1))
            h = F.gelu(blk["c_fc"](blk["ln_2"](x)), approximate="tanh")
            x = x + blk["mlp_proj"](h)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.reshape(b * s, -1), targets.reshape(-1))


class SimClr(nn.Module):
    def __init__(self, widths=(32, 64, 128, 256), temperature=0.2):
        super().__init__()
        layers, c = [], 1
        for i, w in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2, 2))
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.projector = nn.Sequential(
            nn.Linear(c, c, bias=False), nn.BatchNorm1d(c), nn.ReLU(), nn.Linear(c, 128)
        )
        self.temperature = temperature

    def loss(self, view1, view2):
        z = F.normalize(self.projector(self.encoder(torch.cat([view1, view2]))), dim=1)
        n = view1.shape[0]
        sim = z @ z.t() / self.temperature
        sim.fill_diagonal_(float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
        return F.cross_entropy(sim, targets)


def workload(name, batch):
    if name == "mae-vit-tiny":
        model = Mae()
        images = torch.rand(batch, 1, 28, 28)
        n, kept = 49, int(49 * (1 - 0.75))
        keep = torch.argsort(torch.rand(batch, n), 1)[:, :kept]
        return model, lambda: model.loss(images, keep)
    if name == "bert-tiny-mlm":
        model = Bert()
        ids = torch.randint(5, 8192, (batch, 128))
        chosen = torch.rand(batch, 128) < 0.15
        targets = torch.where(chosen, ids, torch.full_like(ids, -100))
        return model, lambda: model.loss(ids, targets)
    if name == "gpt-mini-clm":
        model = Gpt()
        # A window of 128 predicted tokens is 129 tokens: inputs and their next tokens.
        tokens = torch.randint(0, 8192, (batch, 129))
        return model, lambda: model.loss(tokens)
    if name == "simclr-cnn":
        model = SimClr()
        v1, v2 = torch.rand(batch, 1, 28, 28), torch.rand(batch, 1, 28, 28)
        return model, lambda: model.loss(v1, v2)
    raise SystemExit(
        f"unknown model {name!r}; valid: mae-vit-tiny, bert-tiny-mlm, simclr-cnn, gpt-mini-clm"
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    batch = a.batch or (32 if a.model in ("bert-tiny-mlm", "gpt-mini-clm") else 256)
    model, loss_fn = workload(a.model, batch)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = []
    for step in range(a.warmup + a.steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - t)
        if not math.isfinite(loss.item()):
            raise SystemExit(f"non-finite loss at step {step}")
    times.sort()
    k = len(times)
    median = times[k // 2] if k % 2 else (times[k // 2 - 1] + times[k // 2]) / 2
    print(json.dumps({
        "model": a.model,
        "backend": f"pytorch-{torch.__version__}-cpu",
        "batch": batch,
        "threads": torch.get_num_threads(),
        "samples_per_sec": batch / median,
        "ms_per_step_median": 1e3 * median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "steps": a.steps,
        "warmup": a.warmup,
    }))


if __name__ == "__main__":
    main()
