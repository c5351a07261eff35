#!/usr/bin/env python3
"""CPU training-throughput reference: a Llama decoder in plain PyTorch, trained with AdamW on
random tokens, the PyTorch side of `bench/compare_torch.sh`'s llama configurations. Prints the
loss and time of every step and a SUMMARY line with the median ms/step (over the steps after the
warm-up), tokens/s, achieved GFLOP/s and the median split into forward / backward / optimizer.

Model (Hugging Face LlamaForCausalLM's arithmetic): token embedding; L pre-RMSNorm blocks
  x = x + o(attn(rope(q), rope(k), v)(rmsnorm_1(x)));  x = x + down(silu(gate(h)) * up(h)), h = rmsnorm_2(x)
with grouped-query causal attention (n_kv_head key/value heads), rotate-half rotary embedding,
no biases; final RMSNorm; LM head tied to the embedding or not (--untied).

Tuned as far as this torch allows (Debian's 1.13: no scaled_dot_product_attention, no
torch.compile): q, k and v come from one fused Linear, gate and up from another (the layout
pipetrain uses), the rotary tables are computed once, key/value heads are shared with expand()
(no copy until the matmul needs one), AdamW uses its foreach path. Run with jemalloc preloaded
(compare_torch.sh does), else freed tensors cost page faults every step.

FLOPs per token (forward + backward, multiply-add = 2), the count `pipetrain bench train` uses:
  6 * N  +  12 * L * T * C
N = parameters that take part in matrix products (q/k/v, o, gate/up, down, the LM head; the
RMSNorm weights are < 0.1% and kept), attention counting the full T x T products (no causal halving).

usage: torch_llama.py --layers 12 --heads 12 --kv-heads 4 --embd 768 --ffn 2048 --vocab 32000 \
                      --batch 8 --seq 256 --steps 5 --threads 2
"""
import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, C, NH, NKV, H, eps):
        super().__init__()
        self.NH, self.NKV, self.hs = NH, NKV, C // NH
        self.ln1 = RMSNorm(C, eps)
        self.qkv = nn.Linear(C, C + 2 * NKV * self.hs, bias=False)
        self.o = nn.Linear(C, C, bias=False)
        self.ln2 = RMSNorm(C, eps)
        self.gate_up = nn.Linear(C, 2 * H, bias=False)
        self.down = nn.Linear(H, C, bias=False)
        self.H = H

    def forward(self, x, cos, sin, mask):
        B, T, C = x.shape
        hs, NH, NKV = self.hs, self.NH, self.NKV
        qkv = self.qkv(self.ln1(x))
        q, k, v = qkv.split([C, NKV * hs, NKV * hs], dim=-1)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NKV, hs).transpose(1, 2)
        v = v.view(B, T, NKV, hs).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        g = NH // NKV
        if g > 1:
            k = k[:, :, None].expand(B, NKV, g, T, hs).reshape(B, NH, T, hs)
            v = v[:, :, None].expand(B, NKV, g, T, hs).reshape(B, NH, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
        att = att.masked_fill(mask[:T, :T], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(y)
        gate, up = self.gate_up(self.ln2(x)).split([self.H, self.H], dim=-1)
        return x + self.down(F.silu(gate) * up)


class Llama(nn.Module):
    def __init__(self, L, C, NH, NKV, H, V, T, theta, eps, tied):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        self.blocks = nn.ModuleList([Block(C, NH, NKV, H, eps) for _ in range(L)])
        self.norm = RMSNorm(C, eps)
        self.head = nn.Linear(C, V, bias=False)
        if tied:
            self.head.weight = self.emb.weight
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
        hs = C // NH
        inv = 1.0 / (theta ** (torch.arange(0, hs, 2, dtype=torch.int64).float() / hs))
        freqs = torch.outer(torch.arange(T).float(), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1), persistent=False)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.emb(idx)
        cos, sin = self.cos[:T], self.sin[:T]
        for b in self.blocks:
            x = b(x, cos, sin, self.mask)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--ffn", type=int, default=2048, help="intermediate_size")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--untied", action="store_true", help="an LM head of its own")
    ap.add_argument("--theta", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps after the warm-up")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--quiet", action="store_true", help="only print the summary")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    L, C, T, B = a.layers, a.embd, a.seq, a.batch
    model = Llama(L, C, a.heads, a.kv_heads, a.ffn, a.vocab, T, a.theta, a.eps, not a.untied)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.0}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)

    n_total = sum(p.numel() for p in model.parameters())
    n_flop = n_total
    flops_per_token = 6 * n_flop + 12 * L * T * C
    flops_per_step = flops_per_token * B * T

    total = a.warmup + a.steps
    g = torch.Generator().manual_seed(a.seed + 1)
    data = torch.randint(0, a.vocab, (total, B, T + 1), generator=g)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    print(f"config L={L} H={a.heads} KV={a.kv_heads} C={C} F={a.ffn} V={a.vocab} tied={not a.untied} "
          f"B={B} T={T} params={n_total} flops/token={flops_per_token} ln(V)={math.log(a.vocab):.4f}")
    sys.stdout.flush()

    times, losses, parts = [], [], []
    for step in range(total):
        x = data[step, :, :-1]
        y = data[step, :, 1:]
        t0 = time.perf_counter()
        loss = model(x, y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        lv = loss.item()
        t3 = time.perf_counter()
        losses.append(lv)
        if step >= a.warmup:
            times.append(t3 - t0)
            parts.append((t1 - t0, t2 - t1, t3 - t2))
        if not a.quiet:
            tag = "warmup" if step < a.warmup else "step"
            print(f"{tag} {step}: loss {lv:.6f} {(t3 - t0) * 1e3:.1f} ms "
                  f"(fwd {(t1 - t0) * 1e3:.1f} bwd {(t2 - t1) * 1e3:.1f} opt {(t3 - t2) * 1e3:.1f})")
            sys.stdout.flush()

    med = statistics.median(times)
    print(f"SUMMARY L={L} H={a.heads} KV={a.kv_heads} C={C} F={a.ffn} V={a.vocab} B={B} T={T} "
          f"threads={torch.get_num_threads()} steps={len(times)} "
          f"median_ms={med * 1e3:.1f} mean_ms={statistics.mean(times) * 1e3:.1f} "
          f"min_ms={min(times) * 1e3:.1f} max_ms={max(times) * 1e3:.1f} "
          f"tok_per_s={B * T / med:.0f} gflops={flops_per_step / med / 1e9:.1f} "
          f"loss_first={losses[0]:.4f} loss_last={losses[-1]:.4f} "
          f"fwd_ms={statistics.median(p[0] for p in parts) * 1e3:.1f} "
          f"bwd_ms={statistics.median(p[1] for p in parts) * 1e3:.1f} "
          f"opt_ms={statistics.median(p[2] for p in parts) * 1e3:.1f}")


if __name__ == "__main__":
    main()
