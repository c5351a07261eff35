#!/usr/bin/python3
"""Writes a GPT-2 reference case in the format of tests/models/reference/gpt2-ref.safetensors (see
that folder's README) for any config, computed by PyTorch in fp32 on the CPU, so that
test_reference can be checked on shapes other than the default case's:

    /usr/bin/python3 tests/models/make_reference.py --layers 3 --heads 3 --embd 48 --vocab 97 \
        --ctx 24 --batch 3 --seq 20 --out /tmp/ref.safetensors
    build/tests/models/test_reference /tmp/ref.safetensors

Parameters are in Hugging Face GPT-2 naming and layout (Conv1D weights [in, out]); the LM head is
tied to wte. Weights are random (biases and layernorm parameters too, so every path is exercised).
Needs only torch (Debian's python3-torch runs under /usr/bin/python3).
"""
import argparse
import json
import math
import struct

import torch
import torch.nn.functional as F


def gpt2_loss(p, ids, targets, L, H, return_logits=False):
    B, T = ids.shape
    C = p["wte.weight"].shape[1]
    x = p["wte.weight"][ids] + p["wpe.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for i in range(L):
        h = F.layer_norm(x, (C,), p[f"h.{i}.ln_1.weight"], p[f"h.{i}.ln_1.bias"], 1e-5)
        qkv = h @ p[f"h.{i}.attn.c_attn.weight"] + p[f"h.{i}.attn.c_attn.bias"]
        q, k, v = qkv.split(C, dim=2)
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // H))
        a = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, T, C)
        x = x + a @ p[f"h.{i}.attn.c_proj.weight"] + p[f"h.{i}.attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), p[f"h.{i}.ln_2.weight"], p[f"h.{i}.ln_2.bias"], 1e-5)
        h = F.gelu(h @ p[f"h.{i}.mlp.c_fc.weight"] + p[f"h.{i}.mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ p[f"h.{i}.mlp.c_proj.weight"] + p[f"h.{i}.mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], 1e-5)
    logits = x @ p["wte.weight"].t()
    loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))
    return (loss, logits) if return_logits else loss


def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        dtype = {torch.float32: "F32", torch.int32: "I32"}[t.dtype]
        data = t.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def train_reference(params, ids, targets, loss_of):
    """The tensors of a reference case and its AdamW settings: the parameters, "input_ids" and
    "targets" (int32), then from loss_of(return_logits) (the model's loss on that batch, and with
    return_logits its logits) "expected.logits", "expected.loss", "expected.grad.NAME", after one
    AdamW step (weight decay on tensors of rank >= 2) "expected.updated.NAME", and
    "expected.losses", the losses before four more steps. Returns (tensors, hp)."""
    hp = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, wd=0.1)
    decay = [p for n, p in params.items() if p.dim() >= 2]
    no_decay = [p for n, p in params.items() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp["wd"]}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=hp["lr"], betas=hp["betas"], eps=hp["eps"])
    out = {n: p.detach().clone() for n, p in params.items()}
    out["input_ids"] = ids.int()
    out["targets"] = targets.int()
    loss, logits = loss_of(True)
    loss.backward()
    out["expected.logits"] = logits.detach().clone()
    out["expected.loss"] = loss.detach().reshape(1).clone()
    for n, p in params.items():
        out[f"expected.grad.{n}"] = p.grad.detach().clone()
    opt.step()
    for n, p in params.items():
        out[f"expected.updated.{n}"] = p.detach().clone()
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = loss_of(False)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    out["expected.losses"] = torch.tensor(losses, dtype=torch.float32)
    return out, hp


def greedy(logits_of, prompt_ids, new_tokens):
    """Greedy decoding without a cache: new_tokens times, the first argmax of the last position's
    logits_of(ids) (ids (1, T) int64, logits (1, T, V)) over the whole sequence so far. Returns the
    appended ids and the smallest gap between the best and second-best logit over the steps."""
    ids = torch.tensor([prompt_ids], dtype=torch.int64)
    out_ids, margin = [], float("inf")
    with torch.no_grad():
        for _ in range(new_tokens):
            row = logits_of(ids)[0, -1]
            top = torch.topk(row, 2).values
            margin = min(margin, float(top[0] - top[1]))
            nxt = int(torch.argmax(row))
            out_ids.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return out_ids, margin


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=32)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    L, H, C, V = a.layers, a.heads, a.embd, a.vocab
    shapes = {"wte.weight": (V, C), "wpe.weight": (a.ctx, C)}
    for i in range(L):
        for n, s in [("ln_1.weight", (C,)), ("ln_1.bias", (C,)), ("attn.c_attn.weight", (C, 3 * C)),
                     ("attn.c_attn.bias", (3 * C,)), ("attn.c_proj.weight", (C, C)), ("attn.c_proj.bias", (C,)),
                     ("ln_2.weight", (C,)), ("ln_2.bias", (C,)), ("mlp.c_fc.weight", (C, 4 * C)),
                     ("mlp.c_fc.bias", (4 * C,)), ("mlp.c_proj.weight", (4 * C, C)), ("mlp.c_proj.bias", (C,))]:
            shapes[f"h.{i}.{n}"] = s
    shapes["ln_f.weight"], shapes["ln_f.bias"] = (C,), (C,)
    params = {}
    for n, s in shapes.items():
        if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n == "ln_f.weight":
            t = 1.0 + 0.1 * torch.randn(s)
        elif n.endswith(".bias"):
            t = 0.02 * torch.randn(s)
        else:
            t = 0.02 * torch.randn(s) if n != "wte.weight" else 0.1 * torch.randn(s)
        params[n] = t.float().requires_grad_(True)
    ids = torch.randint(0, V, (a.batch, a.seq), dtype=torch.int64)
    targets = torch.randint(0, V, (a.batch, a.seq), dtype=torch.int64)

    out, hp = train_reference(params, ids, targets,
                              lambda return_logits=False: gpt2_loss(params, ids, targets, L, H, return_logits))
    meta = {"format": "pipetrain-reference-1", "model": "gpt2", "n_layer": str(L), "n_head": str(H), "n_embd": str(C),
            "vocab_size": str(V), "n_ctx": str(a.ctx), "batch": str(a.batch), "seq": str(a.seq),
            "layer_norm_eps": "1e-05", "activation": "gelu_tanh", "tied_lm_head": "true",
            "loss": "mean cross-entropy over batch*seq", "adamw_lr": str(hp["lr"]),
            "adamw_beta1": str(hp["betas"][0]), "adamw_beta2": str(hp["betas"][1]), "adamw_eps": str(hp["eps"]),
            "adamw_weight_decay": str(hp["wd"]), "weight_decay_applies_to": "tensors of rank >= 2",
            "losses_note": "expected.losses[i] is the loss before update i+2 on the same batch",
            "torch_version": torch.__version__}
    write_safetensors(a.out, out, meta)


if __name__ == "__main__":
    main()
