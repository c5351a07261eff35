#!/usr/bin/python3
"""Writes a GPT-2 greedy-generation reference case: a small GPT-2 with the real 50257-token
vocabulary (random weights), a prompt in GPT-2 token ids, and the ids PyTorch's greedy loop
appends to it. `pipetrain sample --init-from FILE --temperature 0` must reproduce them exactly:

    /usr/bin/python3 tests/models/make_generate_ref.py --out tests/models/reference/gpt2-greedy.safetensors

The weights are in Hugging Face GPT-2 naming and layout (Conv1D weights [in, out], the LM head tied
to wte), so the file is also an `--init-from` input. __metadata__: format "pipetrain-generate-1",
n_layer, n_head, n_embd, vocab_size, n_ctx, prompt (the text), new_tokens, min_margin (the smallest
gap between the best and second-best logit over the greedy steps: the script re-draws the weights
until it exceeds --min-margin, so fp32 rounding differences cannot flip an argmax). Tensors:
the parameters, "prompt_ids" int32 (P) and "expected.greedy_ids" int32 (N).

The prompt's ids are GPT-2's encoding of the prompt text (made with the npm package gpt-3-encoder:
"The pipeline of the future is" -> 464 11523 286 262 2003 318); the test checks pipetrain's gpt2
tokenizer gives the same ids. Greedy: at each step the first argmax of the last position's logits
of a full forward pass (no cache), as Hugging Face's greedy search does. Needs only torch.
"""
import argparse

import torch

from make_reference import gpt2_loss, greedy, write_safetensors

PROMPT = "The pipeline of the future is"
PROMPT_IDS = [464, 11523, 286, 262, 2003, 318]


def logits_of(p, ids, L, H):
    # gpt2_loss returns (loss, logits); targets are unused here beyond the loss
    tgt = torch.zeros_like(ids)
    _, logits = gpt2_loss(p, ids, tgt, L, H, return_logits=True)
    return logits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--embd", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-margin", type=float, default=1e-3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    L, H, C, V = a.layers, a.heads, a.embd, 50257
    seed = a.seed
    while True:
        torch.manual_seed(seed)
        shapes = {"wte.weight": (V, C), "wpe.weight": (a.ctx, C)}
        for i in range(L):
            for n, s in [("ln_1.weight", (C,)), ("ln_1.bias", (C,)), ("attn.c_attn.weight", (C, 3 * C)),
                         ("attn.c_attn.bias", (3 * C,)), ("attn.c_proj.weight", (C, C)),
                         ("attn.c_proj.bias", (C,)), ("ln_2.weight", (C,)), ("ln_2.bias", (C,)),
                         ("mlp.c_fc.weight", (C, 4 * C)), ("mlp.c_fc.bias", (4 * C,)),
                         ("mlp.c_proj.weight", (4 * C, C)), ("mlp.c_proj.bias", (C,))]:
                shapes[f"h.{i}.{n}"] = s
        shapes["ln_f.weight"], shapes["ln_f.bias"] = (C,), (C,)
        p = {}
        for n, s in shapes.items():
            if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n == "ln_f.weight":
                t = 1.0 + 0.1 * torch.randn(s)
            elif n.endswith(".bias"):
                t = 0.02 * torch.randn(s)
            elif n in ("wte.weight", "wpe.weight"):
                t = 0.5 * torch.randn(s)  # large enough that position and context steer the output
            else:
                t = 0.3 * torch.randn(s)
            p[n] = t.float()
        out_ids, margin = greedy(lambda ids: logits_of(p, ids, L, H), PROMPT_IDS, a.new_tokens)
        if margin >= a.min_margin:
            break
        seed += 1
    t = dict(p)
    t["prompt_ids"] = torch.tensor(PROMPT_IDS, dtype=torch.int32)
    t["expected.greedy_ids"] = torch.tensor(out_ids, dtype=torch.int32)
    meta = {"format": "pipetrain-generate-1", "model": "gpt2", "n_layer": str(L), "n_head": str(H),
            "n_embd": str(C), "vocab_size": str(V), "n_ctx": str(a.ctx), "prompt": PROMPT,
            "new_tokens": str(a.new_tokens), "seed": str(seed), "min_margin": "%.6g" % margin,
            "layer_norm_eps": "1e-05", "activation": "gelu_tanh", "tied_lm_head": "true",
            "torch_version": torch.__version__}
    write_safetensors(a.out, t, meta)
    print("wrote %s: seed %d, %d new ids, min margin %.4g: %s" % (a.out, seed, len(out_ids), margin, out_ids))


if __name__ == "__main__":
    main()
