"""Reference values for pretrain-objectives' losses, computed with PyTorch.

Each loss is written the way its authors' reference code writes it (SimCLR/lightly NT-Xent,
MoCo's InfoNCE, BYOL, SimSiam, facebookresearch/barlowtwins, facebookresearch/vicreg,
facebookresearch/mae `forward_loss`, SimMIM's masked L1, BERT's masked cross-entropy,
BCE-with-logits), evaluated in float64 on float32 inputs, with the gradient of the loss with
respect to every input. The Rust tests (`crates/pretrain-objectives/src/reference_tests.rs`) load
the same inputs and must match to 1e-5 (relative to max(1, |value|)).

Regenerate (needs `pip install torch`):
    python3 tools/reference/losses.py > crates/pretrain-objectives/fixtures/reference_losses.json
"""

import json

import torch
import torch.nn.functional as F

torch.manual_seed(20261128)


def randn(*shape, scale=1.0):
    # float32 values (what the Rust side holds), promoted to float64 for the reference.
    x = (torch.randn(*shape) * scale).to(torch.float32)
    return x.to(torch.float64).requires_grad_(True)


def off_diagonal(m):
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def nt_xent(z1, z2, temperature):
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, targets)


def info_nce(q, k, queue, temperature):
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
    l_neg = torch.einsum("nc,kc->nk", q, queue)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long))


def byol(p, z):
    p, z = F.normalize(p, dim=-1), F.normalize(z.detach(), dim=-1)
    return (2 - 2 * (p * z).sum(dim=-1)).mean()


def simsiam(p, z):
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def barlow_twins(z1, z2, lambd):
    n = z1.shape[0]
    bn = lambda z: F.batch_norm(z, None, None, training=True, eps=1e-5)
    c = bn(z1).T @ bn(z2) / n
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag, {"on_diagonal": on_diag, "off_diagonal": off_diag}


def vicreg(x, y):
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum() / d + off_diagonal(cov_y).pow(2).sum() / d
    loss = 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss
    return loss, {"invariance": repr_loss, "variance": std_loss, "covariance": cov_loss}


def patchify(imgs, p):
    n, c, h, w = imgs.shape
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(x, p, c):
    n, l, _ = x.shape
    g = int(l**0.5)
    x = x.reshape(n, g, g, p, p, c)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(n, c, g * p, g * p)


def mae_loss(imgs, pred, mask, p, norm_pix):
    target = patchify(imgs, p)
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    return (loss * mask).sum() / mask.sum()


def simmim_loss(imgs, pred, mask, p):
    n, c, h, w = imgs.shape
    x_rec = unpatchify(pred, p, c)
    mask_px = mask.reshape(n, h // p, w // p)
    mask_px = mask_px.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1)
    loss_recon = F.l1_loss(imgs, x_rec, reduction="none")
    return (loss_recon * mask_px).sum() / (mask_px.sum() + 1e-5) / c


def tensor_json(t):
    # 9 significant digits represent a float32 exactly.
    return {"shape": list(t.shape), "data": [float(f"{float(v):.9g}") for v in t.detach().flatten()]}


def value(v):
    return float(f"{float(v):.12g}")


def case(name, params, inputs, loss, parts=None, ints=None):
    wrt = {k: v for k, v in inputs.items() if v.requires_grad}
    grads = torch.autograd.grad(loss, list(wrt.values()), allow_unused=True)
    return {
        "name": name,
        "params": params,
        "inputs": {k: tensor_json(v) for k, v in inputs.items()},
        "int_inputs": {k: {"shape": list(v.shape), "data": v.flatten().tolist()} for k, v in (ints or {}).items()},
        "loss": value(loss.detach()),
        "parts": {k: value(v.detach()) for k, v in (parts or {}).items()},
        "grads": {
            k: [value(x) for x in (g if g is not None else torch.zeros_like(v)).flatten()]
            for (k, v), g in zip(wrt.items(), grads)
        },
    }


def main():
    cases = []
    z1, z2 = randn(8, 16), randn(8, 16)
    cases.append(case("nt_xent", {"temperature": 0.5}, {"z1": z1, "z2": z2}, nt_xent(z1, z2, 0.5)))

    q, k, queue = randn(6, 8), randn(6, 8), randn(20, 8)
    cases.append(
        case("info_nce", {"temperature": 0.2}, {"q": q, "k": k, "queue": queue}, info_nce(q, k, queue, 0.2))
    )

    p, z = randn(8, 16), randn(8, 16)
    cases.append(case("byol", {}, {"p": p, "z": z}, byol(p, z)))
    cases.append(case("simsiam", {}, {"p": p, "z": z}, simsiam(p, z)))

    z1, z2 = randn(16, 8), randn(16, 8)
    loss, parts = barlow_twins(z1, z2, 0.0051)
    cases.append(case("barlow_twins", {"lambda": 0.0051}, {"z1": z1, "z2": z2}, loss, parts))

    x, y = randn(16, 8, scale=0.7), randn(16, 8, scale=0.7)
    loss, parts = vicreg(x, y)
    cases.append(case("vicreg", {}, {"z1": x, "z2": y}, loss, parts))

    imgs, pred = randn(2, 2, 8, 8), randn(2, 4, 32)
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    for norm_pix in (True, False):
        name = "mae_norm_pix" if norm_pix else "mae"
        loss = mae_loss(imgs, pred, mask, 4, norm_pix)
        cases.append(
            case(name, {"patch": 4}, {"imgs": imgs, "pred": pred, "hidden": mask}, loss)
        )
    # L1 has a kink where pred == target: keep every prediction at least 0.05 away from its
    # pixel so finite differences are valid.
    offset = torch.randn(2, 4, 32)
    offset = (offset.sign() * (0.05 + offset.abs())).to(torch.float32).to(torch.float64)
    pred_l1 = (patchify(imgs.detach(), 4) + offset).to(torch.float32).to(torch.float64).requires_grad_(True)
    cases.append(
        case("simmim", {"patch": 4}, {"imgs": imgs, "pred": pred_l1, "hidden": mask}, simmim_loss(imgs, pred_l1, mask, 4))
    )

    logits = randn(2, 5, 11)
    targets = torch.tensor([[3, -100, 7, -100, 0], [-100, -100, 10, 2, -100]])
    loss = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=-100)
    cases.append(case("masked_cross_entropy", {}, {"logits": logits}, loss, ints={"targets": targets}))

    output = randn(4, 6)
    target = torch.rand(4, 6).to(torch.float32).to(torch.float64)  # constant: no gradient
    cases.append(case("mse", {}, {"output": output, "target": target}, F.mse_loss(output, target)))
    cases.append(
        case("bce", {}, {"output": output, "target": target}, F.binary_cross_entropy_with_logits(output, target))
    )

    print(json.dumps({"generated_by": "tools/reference/losses.py", "torch": torch.__version__, "cases": cases}))


if __name__ == "__main__":
    main()
