#!/usr/bin/python3
"""Writes a Llama greedy-generation reference case: a small Llama with random weights, a prompt
(the bytes of a text, so the byte tokenizer encodes it), and the ids PyTorch's greedy loop appends
to it. pipetrain's generator with the KV cache must reproduce them exactly:

    /usr/bin/python3 tests/models/make_llama_generate_ref.py --out tests/models/reference/llama-greedy.safetensors
    build/tests/models/test_generate reference tests/models/reference/llama-greedy.safetensors

Same container as make_generate_ref.py's GPT-2 case (__metadata__ format "pipetrain-generate-1",
tensors "prompt_ids" int32 (P) and "expected.greedy_ids" int32 (N)), with metadata model "llama",
n_layer, n_head, n_kv_head, n_embd, intermediate_size, vocab_size, n_ctx, rms_norm_eps, rope_theta,
tie_word_embeddings ("true"/"false"), rope_scaling_{factor,low_freq_factor,high_freq_factor,
original_max_position_embeddings} when scaled, prompt, new_tokens, seed and min_margin (the
smallest gap between the best and second-best logit over the greedy steps: the weights are
re-drawn until it passes --min-margin, so fp32 rounding cannot flip an argmax). The parameters
are in pipetrain's llama naming and layout (include/pipetrain/model.h: wte.weight,
blocks.N.attn.qkv.weight = q, k, v projections stacked by rows, blocks.N.mlp.gate_up.weight =
gate, up stacked by rows, lnf.weight, lm_head.weight; weights [out, in] as torch.nn.Linear), so the
test loads them by name, independent of the Hugging Face importer.

The forward is Hugging Face's LlamaForCausalLM written out (no `transformers` needed): RMSNorm in
fp32, rotate-half RoPE with inv_freq = 1 / theta^(arange(0, hs, 2) / hs) in fp32 (and Llama 3.1's
scaling with --rope-scaling), angles inv_freq x position, grouped-query attention by repeat_kv,
SwiGLU, final RMSNorm, LM head. Greedy: at each step the first argmax of the last position's
logits of a full forward pass over the whole sequence (no cache), as Hugging Face's greedy search.
Weights: linear N(0, 1/in), embeddings N(0, --wte-std^2), norms 1 + N(0, 0.1^2), so attention is far from
uniform and positions steer the output. Needs only torch.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import write_safetensors  # noqa: E402  (the one safetensors writer of these scripts)

PROMPT = "The pipeline of the future is"


def inv_freq_of(a, hs):
    """transformers' default rope init, then _compute_llama3_parameters when scaled."""
    inv = 1.0 / (a.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.int64).float() / hs))
    if not a.rope_scaling:
        return inv
    f, lo, hi, old = [float(x) for x in a.rope_scaling.split(",")]
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > old / lo, inv / f, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv_l / f + smooth * inv_l
    medium = ~(wavelen < old / hi) * ~(wavelen > old / lo)
    return torch.where(medium, smoothed, inv_l)


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def logits_of(p, ids, a):
    L, NH, NKV, C, H = a.layers, a.heads, a.kv_heads, a.embd, a.intermediate
    hs, T = C // NH, ids.shape[1]
    pos = torch.arange(T).float()
    freqs = pos[:, None] * inv_freq_of(a, hs)[None, :]  # (T, hs/2): the fp32 angle t * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = p["wte.weight"][ids]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for i in range(L):
        b = f"blocks.{i}."
        h = rms_norm(x, p[b + "ln1.weight"], a.eps)
        qkv = h @ p[b + "attn.qkv.weight"].T
        q = qkv[..., :C].view(1, T, NH, hs).transpose(1, 2)
        k = qkv[..., C:C + NKV * hs].view(1, T, NKV, hs).transpose(1, 2)
        v = qkv[..., C + NKV * hs:].view(1, T, NKV, hs).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=1)  # repeat_kv
        v = v.repeat_interleave(NH // NKV, dim=1)
        att = F.softmax(q @ k.transpose(-1, -2) / math.sqrt(hs) + mask, dim=-1, dtype=torch.float32)
        y = (att @ v).transpose(1, 2).reshape(1, T, C)
        x = x + y @ p[b + "attn.proj.weight"].T
        h = rms_norm(x, p[b + "ln2.weight"], a.eps)
        gu = h @ p[b + "mlp.gate_up.weight"].T
        x = x + (F.silu(gu[..., :H]) * gu[..., H:]) @ p[b + "mlp.down.weight"].T
    x = rms_norm(x, p["lnf.weight"], a.eps)
    return x @ (p["wte.weight"] if a.tied else p["lm_head.weight"]).T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--embd", type=int, default=48)
    ap.add_argument("--intermediate", type=int, default=80)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rope-scaling", default="", help="factor,low_freq_factor,high_freq_factor,original_max_pos")
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--wte-std", type=float, default=1.0, help="std of the token embedding (tied: smaller, or the "
                    "last token's own logit dominates)")
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-margin", type=float, default=1e-3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    L, NH, NKV, C, H, V = a.layers, a.heads, a.kv_heads, a.embd, a.intermediate, a.vocab
    hs = C // NH
    prompt_ids = list(PROMPT.encode())
    assert max(prompt_ids) < V and len(prompt_ids) + a.new_tokens <= a.ctx
    seed = a.seed
    while True:
        torch.manual_seed(seed)
        shapes = {"wte.weight": (V, C)}
        for i in range(L):
            b = f"blocks.{i}."
            shapes.update({b + "ln1.weight": (C,), b + "attn.qkv.weight": (C + 2 * NKV * hs, C),
                           b + "attn.proj.weight": (C, C), b + "ln2.weight": (C,),
                           b + "mlp.gate_up.weight": (2 * H, C), b + "mlp.down.weight": (C, H)})
        shapes["lnf.weight"] = (C,)
        if not a.tied:
            shapes["lm_head.weight"] = (V, C)
        p = {}
        for n, s in shapes.items():
            if len(s) == 1:
                t = 1.0 + 0.1 * torch.randn(s)
            elif n == "wte.weight":
                t = a.wte_std * torch.randn(s)
            else:
                t = torch.randn(s) / math.sqrt(s[1])
            p[n] = t.float()
        ids = torch.tensor([prompt_ids], dtype=torch.int64)
        out_ids, margin = [], float("inf")
        with torch.no_grad():
            for _ in range(a.new_tokens):
                row = logits_of(p, ids, a)[0, -1]
                top = torch.topk(row, 2).values
                margin = min(margin, float(top[0] - top[1]))
                nxt = int(torch.argmax(row))
                out_ids.append(nxt)
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        if margin >= a.min_margin:
            break
        seed += 1
    t = dict(p)
    t["prompt_ids"] = torch.tensor(prompt_ids, dtype=torch.int32)
    t["expected.greedy_ids"] = torch.tensor(out_ids, dtype=torch.int32)
    meta = {"format": "pipetrain-generate-1", "model": "llama", "n_layer": str(L), "n_head": str(NH),
            "n_kv_head": str(NKV), "n_embd": str(C), "intermediate_size": str(H), "vocab_size": str(V),
            "n_ctx": str(a.ctx), "rms_norm_eps": repr(a.eps), "rope_theta": repr(a.rope_theta),
            "tie_word_embeddings": "true" if a.tied else "false", "prompt": PROMPT,
            "new_tokens": str(a.new_tokens), "seed": str(seed), "min_margin": "%.6g" % margin,
            "torch_version": torch.__version__}
    if a.rope_scaling:
        f, lo, hi, old = a.rope_scaling.split(",")
        meta.update({"rope_scaling_factor": f, "rope_scaling_low_freq_factor": lo,
                     "rope_scaling_high_freq_factor": hi, "rope_scaling_original_max_position_embeddings": old})
    write_safetensors(a.out, t, meta)
    print("wrote %s: seed %d, %d new ids, min margin %.4g: %s" % (a.out, seed, len(out_ids), margin, out_ids))


if __name__ == "__main__":
    main()
