#!/usr/bin/python3
"""Writes a Llama reference case (the container of tests/models/reference/gpt2-ref.safetensors, with
metadata model: llama; see that folder's README) for any config, computed by PyTorch in fp32 on the
CPU, so that test_reference can check pipetrain's Llama against it:

    /usr/bin/python3 tests/models/make_llama_reference.py --layers 3 --heads 6 --kv-heads 1 --embd 72 \
        --intermediate 80 --vocab 97 --batch 3 --seq 20 --tied --rope-scaling 8,1,4,256 \
        --out /tmp/llama.safetensors
    build/tests/models/test_reference /tmp/llama.safetensors

The forward is Hugging Face's LlamaForCausalLM (transformers' modeling_llama.py, eager attention)
written out, so that no `transformers` package is needed:
- RMSNorm in fp32: x * rsqrt(mean(x^2) + eps), then weight * x;
- rotary embedding in rotate-half form: inv_freq = 1 / theta^(arange(0, hs, 2) / hs) in fp32 (with
  Llama 3.1's "llama3" rope_scaling when asked), angles = inv_freq x position, cos/sin of
  cat(angles, angles), q' = q cos + rotate_half(q) sin (and k);
- grouped-query attention: repeat_kv repeats each of the n_kv_head key/value heads for
  n_head / n_kv_head query heads; causal softmax of q k^T / sqrt(hs) in fp32;
- SwiGLU MLP down(silu(gate(x)) * up(x)); final RMSNorm; LM head lm_head.weight, or the token
  embedding with --tied (tie_word_embeddings);
- loss: mean cross-entropy over the positions whose target is not -100 (targets are the next-token
  ids per position, so no shift, as in the GPT-2 case).
No biases anywhere. Parameters are in Hugging Face naming and layout (weights [out, in] as
torch.nn.Linear). Weights are random with about unit-variance activations (linear weights
N(0, 1/in), norm weights 1 + N(0, 0.1^2)), so attention is far from uniform and every path
matters. Then one AdamW step (weight decay on tensors of rank >= 2) and the losses before four more.
Needs only torch (Debian's python3-torch runs under /usr/bin/python3).
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import train_reference, write_safetensors  # noqa: E402  (shared with the GPT-2 case)


class Cfg:
    def __init__(self, a):
        self.L, self.NH, self.NKV, self.C = a.layers, a.heads, a.kv_heads, a.embd
        self.H, self.V, self.eps, self.theta, self.tied = a.intermediate, a.vocab, a.eps, a.rope_theta, a.tied
        self.hs = self.C // self.NH
        self.scaling = None
        if a.rope_scaling:
            f, lo, hi, old = a.rope_scaling.split(",")
            self.scaling = dict(factor=float(f), low_freq_factor=float(lo), high_freq_factor=float(hi),
                                original_max_position_embeddings=int(old))


def rope_inv_freq(c):
    """transformers' _compute_default_rope_parameters, then _compute_llama3_parameters."""
    inv_freq = 1.0 / (c.theta ** (torch.arange(0, c.hs, 2, dtype=torch.int64).float() / c.hs))
    if c.scaling is None:
        return inv_freq
    s = c.scaling
    factor, lo, hi, old = s["factor"], s["low_freq_factor"], s["high_freq_factor"], s["original_max_position_embeddings"]
    low_freq_wavelen = old / lo
    high_freq_wavelen = old / hi
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old / wavelen - lo) / (hi - lo)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def rms_norm(x, w, eps):
    """LlamaRMSNorm."""
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + eps)
    return w * x


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    b, nkv, t, hs = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, nkv, n_rep, t, hs).reshape(b, nkv * n_rep, t, hs)


def llama_loss(p, ids, targets, c, return_logits=False):
    B, T = ids.shape
    x = p["model.embed_tokens.weight"][ids]
    # LlamaRotaryEmbedding.forward: fp32 angles, cos/sin of cat(freqs, freqs)
    inv_freq = rope_inv_freq(c)
    pos = torch.arange(T, dtype=torch.int64)[None, :]
    freqs = (inv_freq[None, :, None].float() @ pos[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]  # (1, 1, T, hs): broadcast over heads
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for i in range(c.L):
        pre = f"model.layers.{i}."
        h = rms_norm(x, p[pre + "input_layernorm.weight"], c.eps)
        q = F.linear(h, p[pre + "self_attn.q_proj.weight"]).view(B, T, c.NH, c.hs).transpose(1, 2)
        k = F.linear(h, p[pre + "self_attn.k_proj.weight"]).view(B, T, c.NKV, c.hs).transpose(1, 2)
        v = F.linear(h, p[pre + "self_attn.v_proj.weight"]).view(B, T, c.NKV, c.hs).transpose(1, 2)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        k, v = repeat_kv(k, c.NH // c.NKV), repeat_kv(v, c.NH // c.NKV)
        s = torch.matmul(q, k.transpose(2, 3)) * (c.hs ** -0.5)
        s = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1, dtype=torch.float32)
        a = torch.matmul(s, v).transpose(1, 2).reshape(B, T, c.NH * c.hs)
        x = x + F.linear(a, p[pre + "self_attn.o_proj.weight"])
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], c.eps)
        g = F.silu(F.linear(h, p[pre + "mlp.gate_proj.weight"])) * F.linear(h, p[pre + "mlp.up_proj.weight"])
        x = x + F.linear(g, p[pre + "mlp.down_proj.weight"])
    x = rms_norm(x, p["model.norm.weight"], c.eps)
    logits = F.linear(x, p["model.embed_tokens.weight"] if c.tied else p["lm_head.weight"])
    loss = F.cross_entropy(logits.reshape(B * T, -1).float(), targets.reshape(-1), ignore_index=-100)
    return (loss, logits) if return_logits else loss


def param_shapes(c):
    kv = c.NKV * c.hs
    shapes = {"model.embed_tokens.weight": (c.V, c.C)}
    for i in range(c.L):
        pre = f"model.layers.{i}."
        shapes[pre + "input_layernorm.weight"] = (c.C,)
        shapes[pre + "self_attn.q_proj.weight"] = (c.NH * c.hs, c.C)
        shapes[pre + "self_attn.k_proj.weight"] = (kv, c.C)
        shapes[pre + "self_attn.v_proj.weight"] = (kv, c.C)
        shapes[pre + "self_attn.o_proj.weight"] = (c.C, c.NH * c.hs)
        shapes[pre + "post_attention_layernorm.weight"] = (c.C,)
        shapes[pre + "mlp.gate_proj.weight"] = (c.H, c.C)
        shapes[pre + "mlp.up_proj.weight"] = (c.H, c.C)
        shapes[pre + "mlp.down_proj.weight"] = (c.C, c.H)
    shapes["model.norm.weight"] = (c.C,)
    if not c.tied:
        shapes["lm_head.weight"] = (c.V, c.C)
    return shapes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--embd", type=int, default=32)
    ap.add_argument("--intermediate", type=int, default=48)
    ap.add_argument("--vocab", type=int, default=61)
    ap.add_argument("--ctx", type=int, default=0, help="max_position_embeddings (default: --seq)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=12)
    ap.add_argument("--eps", type=float, default=1e-5, help="rms_norm_eps")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--rope-scaling", default="",
                    help="Llama 3.1 scaling as factor,low_freq_factor,high_freq_factor,original_max_position_embeddings")
    ap.add_argument("--tied", action="store_true", help="tie_word_embeddings: the LM head is the token embedding")
    ap.add_argument("--ignore", type=int, default=0, help="this many random targets are -100 (ignored by the loss)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    c = Cfg(a)
    if c.C % c.NH or c.hs % 2 or c.NH % c.NKV:
        ap.error("--embd must be a multiple of --heads with an even head width, and --heads a multiple of --kv-heads")
    ctx = a.ctx or a.seq
    torch.manual_seed(a.seed)
    params = {}
    for n, s in param_shapes(c).items():
        if n.endswith("norm.weight"):
            t = 1.0 + 0.1 * torch.randn(s)
        elif n == "model.embed_tokens.weight":
            t = torch.randn(s) * (c.C ** -0.5 if c.tied else 1.0)  # tied: also the LM head, logits ~ N(0, 1)
        else:
            t = torch.randn(s) * s[1] ** -0.5
        params[n] = t.float().requires_grad_(True)
    ids = torch.randint(0, c.V, (a.batch, a.seq), dtype=torch.int64)
    targets = torch.randint(0, c.V, (a.batch, a.seq), dtype=torch.int64)
    if a.ignore:
        targets.view(-1)[torch.randperm(a.batch * a.seq)[: a.ignore]] = -100

    out, hp = train_reference(params, ids, targets,
                              lambda return_logits=False: llama_loss(params, ids, targets, c, return_logits))
    meta = {"format": "pipetrain-reference-1", "model": "llama", "n_layer": str(c.L), "n_head": str(c.NH),
            "n_kv_head": str(c.NKV), "n_embd": str(c.C), "intermediate_size": str(c.H), "vocab_size": str(c.V),
            "max_position_embeddings": str(ctx), "batch": str(a.batch), "seq": str(a.seq),
            "rms_norm_eps": repr(c.eps), "rope_theta": repr(c.theta),
            "tie_word_embeddings": "true" if c.tied else "false", "hidden_act": "silu",
            "loss": "mean cross-entropy over the batch*seq positions whose target is not -100",
            "adamw_lr": str(hp["lr"]), "adamw_beta1": str(hp["betas"][0]), "adamw_beta2": str(hp["betas"][1]),
            "adamw_eps": str(hp["eps"]), "adamw_weight_decay": str(hp["wd"]),
            "weight_decay_applies_to": "tensors of rank >= 2",
            "losses_note": "expected.losses[i] is the loss before update i+2 on the same batch",
            "torch_version": torch.__version__}
    if c.scaling:
        s = c.scaling
        meta.update({"rope_scaling_type": "llama3", "rope_scaling_factor": repr(s["factor"]),
                     "rope_scaling_low_freq_factor": repr(s["low_freq_factor"]),
                     "rope_scaling_high_freq_factor": repr(s["high_freq_factor"]),
                     "rope_scaling_original_max_position_embeddings": str(s["original_max_position_embeddings"])})
    write_safetensors(a.out, out, meta)


if __name__ == "__main__":
    main()
