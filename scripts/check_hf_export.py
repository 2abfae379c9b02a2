#!/usr/bin/python3
"""Checks `minicolossus export --format hf` against the same checkpoint's llm.c export and `eval`.

  python3 scripts/check_hf_export.py --mc build/minicolossus --ckpt CKPT --data DIR --work SCRATCH [--max-seqs N]

Needs numpy and safetensors (from PyPI; put them on PYTHONPATH, e.g. installed with
`python3 -m pip install --target DIR safetensors numpy`); exits 77 (skipped) without them. Checks:
the file layout (header length prefix, space padding to 8 bytes, contiguous offsets, {"format": "pt"}),
every tensor name and shape GPT2LMHeadModel expects, values equal to the llm.c export's (Conv1D
weights transposed, wte cut to V rows, no lm_head.weight: tied), config.json, and the validation loss
of a numpy GPT-2 forward on the loaded weights against `minicolossus eval`. Where torch and transformers
import, the directory is also loaded with GPT2LMHeadModel.from_pretrained and its loss compared.
Prints one line per check and the figures; exit 0 if all pass, 1 otherwise.
"""
import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys

try:
    import numpy as np
    from safetensors.numpy import load_file
except ImportError as e:  # the CLI test skips
    print(f"skipped: {e} (install numpy and safetensors, e.g. pip install --target DIR, and set PYTHONPATH)")
    sys.exit(77)

failures = 0


def check(ok, what):
    global failures
    print(("ok   - " if ok else "FAIL - ") + what)
    if not ok:
        failures += 1


def read_llmc(path):
    """llm.c model file (fp32 version 3) -> (header dict, {our tensor name: array}) in llm.c's order."""
    raw = open(path, "rb").read()
    h = struct.unpack("<256i", raw[:1024])
    assert h[0] == 20240326 and h[1] == 3, f"{path}: not an fp32 llm.c model"
    maxT, V, L, NH, C, Vp = h[2:8]
    data = np.frombuffer(raw, dtype="<f4", offset=1024)
    shapes = [("wte", (Vp, C)), ("wpe", (maxT, C))]
    per_layer = [("ln1w", (C,)), ("ln1b", (C,)), ("qkvw", (3 * C, C)), ("qkvb", (3 * C,)), ("attprojw", (C, C)),
                 ("attprojb", (C,)), ("ln2w", (C,)), ("ln2b", (C,)), ("fcw", (4 * C, C)), ("fcb", (4 * C,)),
                 ("fcprojw", (C, 4 * C)), ("fcprojb", (C,))]
    for kind, shp in per_layer:
        shapes += [(f"h.{l}.{kind}", shp) for l in range(L)]
    shapes += [("lnf.w", (C,)), ("lnf.b", (C,))]
    out, off = {}, 0
    for name, shp in shapes:
        n = int(np.prod(shp))
        out[name] = data[off:off + n].reshape(shp)
        off += n
    assert off == data.size, f"{path}: size mismatch"
    return dict(maxT=maxT, V=V, L=L, NH=NH, C=C, Vp=Vp), out


def hf_name_map(L):
    """HF name -> (our name, transposed?)."""
    m = {"transformer.wte.weight": ("wte", False), "transformer.wpe.weight": ("wpe", False),
         "transformer.ln_f.weight": ("lnf.w", False), "transformer.ln_f.bias": ("lnf.b", False)}
    for l in range(L):
        h, p = f"transformer.h.{l}.", f"h.{l}."
        m.update({h + "ln_1.weight": (p + "ln1w", False), h + "ln_1.bias": (p + "ln1b", False),
                  h + "attn.c_attn.weight": (p + "qkvw", True), h + "attn.c_attn.bias": (p + "qkvb", False),
                  h + "attn.c_proj.weight": (p + "attprojw", True), h + "attn.c_proj.bias": (p + "attprojb", False),
                  h + "ln_2.weight": (p + "ln2w", False), h + "ln_2.bias": (p + "ln2b", False),
                  h + "mlp.c_fc.weight": (p + "fcw", True), h + "mlp.c_fc.bias": (p + "fcb", False),
                  h + "mlp.c_proj.weight": (p + "fcprojw", True), h + "mlp.c_proj.bias": (p + "fcprojb", False)})
    return m


def val_sequences(data_dir, T, K):
    """The first K validation sequences exactly as minicolossus' Dataset makes them: windows of T+1 tokens
    at stride T inside each *val*.bin shard (sorted), never crossing a shard."""
    files = sorted(f for f in os.listdir(data_dir) if f.endswith(".bin") and "val" in f[:-4])
    seqs = []
    for f in files:
        raw = open(os.path.join(data_dir, f), "rb").read()
        h = struct.unpack("<256i", raw[:1024])
        tok = np.frombuffer(raw, dtype="<u2", offset=1024, count=h[2]).astype(np.int64)
        for s in range(0, (len(tok) - 1) // T):
            seqs.append(tok[s * T:s * T + T + 1])
            if len(seqs) == K:
                return np.stack(seqs)
    return np.stack(seqs)


def numpy_loss(w, cfg, seqs):
    """GPT-2 forward in float64 on HF-named weights (Conv1D: x @ W + b), mean cross-entropy."""
    C, NH, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    eps = cfg["layer_norm_epsilon"]
    assert cfg["activation_function"] == "gelu_new"
    W = {k: v.astype(np.float64) for k, v in w.items()}

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * W[p + ".weight"] + W[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    total, count = 0.0, 0
    for s in seqs:
        x_ids, y = s[:-1], s[1:]
        T = len(x_ids)
        x = W["transformer.wte.weight"][x_ids] + W["transformer.wpe.weight"][:T]
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        for l in range(L):
            p = f"transformer.h.{l}."
            qkv = ln(x, p + "ln_1") @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
            q, k, v = (qkv[:, i * C:(i + 1) * C].reshape(T, NH, C // NH).transpose(1, 0, 2) for i in range(3))
            att = q @ k.transpose(0, 2, 1) / math.sqrt(C // NH)
            att = np.where(mask, -np.inf, att)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            yv = (att @ v).transpose(1, 0, 2).reshape(T, C)
            x = x + yv @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
            h = gelu(ln(x, p + "ln_2") @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
            x = x + h @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
        logits = ln(x, "transformer.ln_f") @ W["transformer.wte.weight"].T  # tied head
        m = logits.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
        total += float((lse - logits[np.arange(T), y]).sum())
        count += T
    return total / count


def check_tokenizer_files(mc, hf_dir, work):
    """transformers' tokenizers (slow and fast) from the exported vocab.json/merges.txt against ours: the
    same ids for the tricky texts of check_tokenizer.py (GPT-2's BPE, from `minicolossus prepare`), or one
    id per byte for the byte tokenizer, and decoding back to the same text."""
    from transformers import AutoTokenizer, GPT2Tokenizer

    if not os.path.exists(os.path.join(hf_dir, "vocab.json")):
        print("note: no tokenizer files in the export (the tokenizer is neither gpt2 nor byte)")
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import check_tokenizer as ct

    fast, slow = AutoTokenizer.from_pretrained(hf_dir), GPT2Tokenizer.from_pretrained(hf_dir)
    check(fast.is_fast and len(fast) == len(slow), f"AutoTokenizer loads the export ({type(fast).__name__}, "
          f"{len(fast)} tokens)")
    texts = dict(ct.TRICKY, all="\n".join(ct.TRICKY.values()))
    gpt2 = len(fast) == ct.EOT + 1
    bad = []
    for i, (name, text) in enumerate(texts.items()):
        if gpt2:
            # transformers reads a literal <|endoftext|> as the special token (GPT-2's own tokenizer files do
            # the same; tiktoken's encode with allowed_special="all"), where prepare keeps it as text
            # (encode_ordinary): so the texts between them are compared, joined by 50256.
            want = []
            for j, piece in enumerate(text.split("<|endoftext|>")):
                want += [ct.EOT] if j else []
                if piece:
                    d = os.path.join(work, f"tok{i}_{j}")
                    os.makedirs(d, exist_ok=True)
                    want += ct.mc_encode(mc, os.environ.get("MC_GPT2_TIKTOKEN") or ct.default_ranks(),
                                         piece.encode(), d)[0]
        else:
            want = list(text.encode())
        for tok in (fast, slow):
            ids = tok.encode(text)
            if ids != want or tok.decode(ids) != text:
                bad.append(f"{name} ({type(tok).__name__}: first difference at "
                           f"{ct.first_mismatch(ids, want)})")
    check(not bad, f"transformers' tokenizers give our ids and decode back for {len(texts)} texts "
          f"({'GPT-2 BPE' if gpt2 else 'bytes'})" + (": " + ", ".join(bad) if bad else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mc", required=True, help="minicolossus binary")
    ap.add_argument("--ckpt", required=True, help="checkpoint to export")
    ap.add_argument("--data", required=True, help="data directory (its val shards)")
    ap.add_argument("--work", required=True, help="scratch directory for the exports")
    ap.add_argument("--max-seqs", type=int, default=16, help="validation sequences to compare on")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    hf_dir, ref = os.path.join(a.work, "hf"), os.path.join(a.work, "ref.bin")
    for cmd in ([a.mc, "export", "--ckpt", a.ckpt, "--format", "hf", "--out", hf_dir],
                [a.mc, "export", "--ckpt", a.ckpt, "--out", ref]):
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    hdr, ours = read_llmc(ref)
    L, C, V, maxT = hdr["L"], hdr["C"], hdr["V"], hdr["maxT"]

    # The file layout, byte for byte.
    path = os.path.join(hf_dir, "model.safetensors")
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    check((8 + n) % 8 == 0 and raw[8:8 + n].rstrip(b" ").endswith(b"}"), f"header of {n} bytes, space-padded to 8")
    check(header.get("__metadata__", {}).get("format") == "pt", '__metadata__ {"format": "pt"}')
    spans = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    contiguous = spans[0][0] == 0 and all(b[0] == a_[1] for a_, b in zip(spans, spans[1:]))
    check(contiguous and spans[-1][1] == len(raw) - 8 - n, f"{len(spans)} tensors tile the data buffer exactly")
    check(all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__"), "every tensor F32")

    # Names, shapes and values against the llm.c export.
    w = load_file(path)
    names = hf_name_map(L)
    check(set(w) == set(names), f"names: the {len(names)} GPT2LMHeadModel parameters, no lm_head.weight (tied)")
    bad = []
    for hf, (mine, transposed) in names.items():
        want = ours[mine]
        if mine == "wte":
            want = want[:V]  # the padded rows Vp - V are not part of the model
        if transposed:
            want = want.T
        if hf not in w or w[hf].shape != want.shape or not np.array_equal(w[hf], want):
            bad.append(hf)
    check(not bad, "shapes and values equal the llm.c export's (Conv1D weights transposed, wte V x C)"
          + (f"; differ: {bad[:4]}" if bad else ""))
    check(w["transformer.wte.weight"].shape == (V, C) and w["transformer.h.0.attn.c_attn.weight"].shape == (C, 3 * C)
          and w["transformer.h.0.mlp.c_proj.weight"].shape == (4 * C, C),
          f"wte {V}x{C}, c_attn {C}x{3 * C}, mlp.c_proj {4 * C}x{C}")
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    check(cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"] and cfg["vocab_size"] == V
          and cfg["n_positions"] == maxT and cfg["n_embd"] == C and cfg["n_layer"] == L and cfg["n_head"] == hdr["NH"]
          and cfg["activation_function"] == "gelu_new" and cfg["layer_norm_epsilon"] == 1e-5
          and cfg["tie_word_embeddings"] is True, "config.json matches the model")

    # The loss: minicolossus eval vs a numpy forward of the loaded weights.
    out = subprocess.run([a.mc, "eval", "--ckpt", a.ckpt, "--data", a.data, "--max-seqs", str(a.max_seqs)],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"val_loss ([0-9.]+) \((\d+) sequences of (\d+) tokens", out)
    if not m:
        check(False, f"eval's output has a val_loss line: {out.strip()[:200]!r}")
        sys.exit(1)
    ev, K, T = float(m.group(1)), int(m.group(2)), int(m.group(3))
    seqs = val_sequences(a.data, T, K)
    nl = numpy_loss(w, cfg, seqs)
    rel = abs(nl - ev) / abs(ev)
    print(f"figures: eval {ev:.6f}, numpy forward of the safetensors {nl:.6f}, relative difference {rel:.2e} "
          f"({K} sequences of {T} tokens)")
    check(rel < 1e-5, f"numpy loss matches eval (relative difference {rel:.2e} < 1e-5)")

    try:
        import torch
        import transformers
        from transformers import GPT2LMHeadModel
    except ImportError as e:
        print(f"note: torch/transformers not importable here ({e}); GPT2LMHeadModel check not run")
    else:
        model = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
        check(model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr(), "transformers ties lm_head")
        with torch.no_grad():
            x = torch.tensor(seqs[:, :-1])
            y = torch.tensor(seqs[:, 1:])
            logits = model(x).logits.double()
            tl = float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)))
        trel = abs(tl - ev) / abs(ev)
        print(f"figures: GPT2LMHeadModel (transformers {transformers.__version__}, torch {torch.__version__}) "
              f"{tl:.6f}, relative difference to eval {trel:.2e}")
        check(trel < 1e-4, f"GPT2LMHeadModel loss matches eval (relative difference {trel:.2e} < 1e-4)")
        check_tokenizer_files(a.mc, hf_dir, a.work)
    print("all passed" if failures == 0 else f"{failures} failed")
    sys.exit(0 if failures == 0 else 1)


if __name__ == "__main__":
    main()
