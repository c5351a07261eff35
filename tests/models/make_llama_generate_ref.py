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
With --hf-dir DIR the same weights are also written as a Hugging Face checkpoint directory,
DIR/config.json (LlamaForCausalLM) and DIR/model.safetensors (LlamaForCausalLM naming: q/k/v and
gate/up unstacked), with DIR/expected.txt holding the prompt ids and then the greedy ids (one line
each): what `pipetrain sample --init-from DIR` must reproduce. With --tokenizer-json (and a
vocabulary of at least 258) the directory also gets a tokenizer.json: byte-level BPE whose 256
tokens are the bytes (id = byte value, GPT-2's byte alphabet, no merges) and the added tokens
<|begin_of_text|> = 256 and <|end_of_text|> = 257, with Llama 3's post-processor adding
<|begin_of_text|> (the first prompt id is then 256, as Hugging Face's tokenizer would encode it).
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
from make_reference import greedy, write_safetensors  # noqa: E402  (shared with the GPT-2 case)

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


def write_tokenizer_json(path):
    """A byte-level BPE tokenizer.json of the 256 bytes (no merges) and two added tokens."""
    import json
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    vocab = {chr(c): b for b, c in zip(bs, cs)}
    special = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                "special": True} for i, t in ((256, "<|begin_of_text|>"), (257, "<|end_of_text|>"))]
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": {"type": "TemplateProcessing",
                              "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                         {"Sequence": {"id": "A", "type_id": 0}}],
                              "pair": [], "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>",
                                                                                   "ids": [256], "tokens": ["<|begin_of_text|>"]}}},
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                     "vocab": vocab, "merges": []}}
    with open(path, "w") as f:
        json.dump(tok, f, ensure_ascii=False)


def write_hf_dir(a, p, prompt_ids, out_ids):
    """config.json + model.safetensors in LlamaForCausalLM naming, and expected.txt."""
    import json
    L, NH, NKV, C, H = a.layers, a.heads, a.kv_heads, a.embd, a.intermediate
    hs = C // NH
    os.makedirs(a.hf_dir, exist_ok=True)
    t = {"model.embed_tokens.weight": p["wte.weight"], "model.norm.weight": p["lnf.weight"]}
    if not a.tied:
        t["lm_head.weight"] = p["lm_head.weight"]
    for i in range(L):
        b, h = f"blocks.{i}.", f"model.layers.{i}."
        qkv, gu = p[b + "attn.qkv.weight"], p[b + "mlp.gate_up.weight"]
        t[h + "input_layernorm.weight"] = p[b + "ln1.weight"]
        t[h + "self_attn.q_proj.weight"] = qkv[:C]
        t[h + "self_attn.k_proj.weight"] = qkv[C:C + NKV * hs]
        t[h + "self_attn.v_proj.weight"] = qkv[C + NKV * hs:]
        t[h + "self_attn.o_proj.weight"] = p[b + "attn.proj.weight"]
        t[h + "post_attention_layernorm.weight"] = p[b + "ln2.weight"]
        t[h + "mlp.gate_proj.weight"] = gu[:H]
        t[h + "mlp.up_proj.weight"] = gu[H:]
        t[h + "mlp.down_proj.weight"] = p[b + "mlp.down.weight"]
    write_safetensors(os.path.join(a.hf_dir, "model.safetensors"), t, {"format": "pt"})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
           "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
           "vocab_size": a.vocab, "max_position_embeddings": a.ctx, "rms_norm_eps": a.eps,
           "rope_theta": a.rope_theta, "tie_word_embeddings": bool(a.tied), "hidden_act": "silu",
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32", "rope_scaling": None}
    if a.rope_scaling:
        f, lo, hi, old = a.rope_scaling.split(",")
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": float(f), "low_freq_factor": float(lo),
                               "high_freq_factor": float(hi), "original_max_position_embeddings": int(old)}
    with open(os.path.join(a.hf_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if a.tokenizer_json:
        write_tokenizer_json(os.path.join(a.hf_dir, "tokenizer.json"))
    with open(os.path.join(a.hf_dir, "expected.txt"), "w") as f:
        f.write(" ".join(map(str, prompt_ids)) + "\n" + " ".join(map(str, out_ids)) + "\n")


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
    ap.add_argument("--hf-dir", default="", help="also write the weights as a Hugging Face Llama directory")
    ap.add_argument("--tokenizer-json", action="store_true", help="with --hf-dir: a byte tokenizer.json with "
                    "<|begin_of_text|> (256) and <|end_of_text|> (257), the prompt starting with 256")
    a = ap.parse_args()
    L, NH, NKV, C, H, V = a.layers, a.heads, a.kv_heads, a.embd, a.intermediate, a.vocab
    hs = C // NH
    prompt_ids = list(PROMPT.encode())
    if a.tokenizer_json:
        assert a.hf_dir and V >= 258, "--tokenizer-json needs --hf-dir and --vocab >= 258"
        prompt_ids = [256] + prompt_ids
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
        out_ids, margin = greedy(lambda ids: logits_of(p, ids, a), prompt_ids, a.new_tokens)
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
    if a.hf_dir:
        write_hf_dir(a, p, prompt_ids, out_ids)
    print("wrote %s: seed %d, %d new ids, min margin %.4g: %s" % (a.out, seed, len(out_ids), margin, out_ids))


if __name__ == "__main__":
    main()
