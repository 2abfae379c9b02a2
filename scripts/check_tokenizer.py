#!/usr/bin/python3
"""Cross-checks minicolossus's GPT-2 tokenizer against tiktoken, live, and compares their speed.

Both tokenizers get the same ranks file (gpt2.tiktoken, from scripts/setup.sh) and GPT-2's pattern;
tiktoken needs no network here (its Encoding is built from the file). minicolossus's ids are read
from the shards `minicolossus prepare --tokenizer gpt2` writes (its leading <|endoftext|> dropped:
Note [One document] in src/data/prepare.cpp).

Checks: the built-in corpus (the King James Bible, `bible 'Gen1:1-Rev22:21'`), the tricky texts in
TRICKY below, and every Unicode code point in letter/number/space/other contexts (one line each;
a mismatch names the code points). Speed: MB/s of one thread each on the corpus (tiktoken's
encode_ordinary, timed in Python; minicolossus's tokenizing time as `prepare` reports it, so without
reading the file, loading the ranks or writing shards).

Usage: python3 scripts/check_tokenizer.py --minicolossus build/minicolossus [--ranks FILE]
           [--tiktoken-path DIR] [--text FILE] [--no-codepoints] [--write-vectors FILE]
tiktoken: `python3 -m pip install --target /tmp/tt tiktoken`, then --tiktoken-path /tmp/tt.
--write-vectors writes the committed unit-test vectors (tests/data/gpt2_vectors.json) from tiktoken.
Exit status: 0 all agree, 1 a mismatch, 2 bad usage / missing tools.
"""
import argparse
import base64
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = 50256

# Texts whose ids the unit tests pin (tests/data/gpt2_vectors.json) and this script checks live.
TRICKY = {
    "ascii": "Hello, world! It's a test: we'll see, they've gone, I'm here, you're there, he'd know.",
    "contractions_upper": "IT'S WE'LL THEY'VE I'M YOU'RE HE'D DON'T 'tis o'clock ''s",
    "accents": "Café naïve résumé façade Ångström Straße Dvořák Łódź São Paulo crème brûlée",
    "cjk": "日本語のテキスト。中文字符，한국어 문장입니다。漢字かな交じり文",
    "emoji": "I 💖 emoji 🎉🎉 👍🏽 family: 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 ✨🔥",
    "digits": "0 1 12 123 1234 12345 123456 3.14159 1,000,000 2024-05-20 ٣٤٥ ⅷ ² ½ 1st",
    "spaces": "a  b   c    d\t\te \t f\u00a0g\u3000h\u2003i   ",
    "newlines": "line one\nline two\n\nafter blank\n\n\n  indented\r\nwindows\rmac\n \n\t\n",
    "trailing_spaces": "word     \n     word\n\n\n\n",
    "punctuation": "!!! ??? ... --- (a) [b] {c} <d> @e #f $g %h ^i &j *k _l +m =n |o ~p `q \\r /s",
    "mixed_scripts": "Ελληνικά Русский עברית العربية हिन्दी ไทย ქართული Ꭰꮳꮃ",
    "special_text": "<|endoftext|> is text here, not the special token <|endoftext|>",
    "unicode_spaces": "a \u0085b \u2028c\u2029d \u200be \u180ef\u202fg\u205fh\u1680i\x0bj\x0ck\x1c\x1d\x1e\x1f",
    "long_word": "supercalifragilisticexpialidocious" * 3 + " pneumonoultramicroscopicsilicovolcanoconiosis",
    "code": "def f(x):\n    return x**2  # square\n\nif __name__ == '__main__':\n    print(f(3))\n",
    "combining": "e\u0301 a\u0308 n\u0303 Z\u0351\u0311\u0334 \u0915\u094d\u0937",
    "only_spaces": "      ",
    "single": "a",
}


def die(msg, code=2):
    print(f"check_tokenizer: {msg}", file=sys.stderr)
    sys.exit(code)


def default_ranks():
    cache = os.environ.get("MC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "minicolossus")
    return os.path.join(cache, "gpt2.tiktoken")


def load_encoding(ranks_path):
    import tiktoken  # noqa: imported late, after --tiktoken-path

    ranks = {}
    try:
        with open(ranks_path, "rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    tok, rank = line.split()
                    ranks[base64.b64decode(tok, validate=True)] = int(rank)
    except OSError as e:
        die(f"{ranks_path}: cannot read it ({e.strerror})")
    except ValueError:  # binascii.Error is a ValueError, so is a line without two fields
        die(f"{ranks_path}:{n}: not '<base64 token> <rank>' (want tiktoken's gpt2.tiktoken)")
    enc = tiktoken.Encoding("gpt2-local", pat_str=PATTERN, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": EOT})
    return enc, {r: t for t, r in ranks.items()}, tiktoken.__version__


def read_shard(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack("<256i", data[:1024])
    n = header[2]
    return list(struct.unpack(f"<{n}H", data[1024:1024 + 2 * n]))


def bible(verses):
    """The King James text of `verses` from Debian's bible-kjv, as bytes."""
    try:
        return subprocess.run(["bible", verses], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        die(f"`bible {verses}` failed ({e}): install bible-kjv (scripts/setup.sh) or pass --text FILE")


def mc_encode(mc, ranks_path, text_bytes, workdir):
    """minicolossus's ids for text_bytes, and its tokenizing speed in MB/s (from prepare's report, which
    computes it from the unrounded time: the seconds it prints read 0.00 on small inputs)."""
    src = os.path.join(workdir, "in.txt")
    out = os.path.join(workdir, "out")
    with open(src, "wb") as f:
        f.write(text_bytes)
    env = dict(os.environ, MC_GPT2_TIKTOKEN=ranks_path, OMP_NUM_THREADS="1")
    r = subprocess.run([mc, "prepare", "--input", src, "--out", out, "--tokenizer", "gpt2"],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        die(f"minicolossus prepare failed ({r.returncode}): {r.stderr.strip()}", 1)
    m = re.search(r"([0-9.]+) MB/s\)", r.stdout)
    ids = read_shard(os.path.join(out, "train_000000.bin")) + read_shard(os.path.join(out, "val_000000.bin"))
    if not ids or ids[0] != EOT:
        die("prepare's shard does not start with <|endoftext|>", 1)
    return ids[1:], float(m.group(1)) if m else None


def first_mismatch(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare(name, text, enc, decode, mc, ranks, workdir):
    want = enc.encode_ordinary(text)
    got, _ = mc_encode(mc, ranks, text.encode("utf-8"), workdir)
    i = first_mismatch(want, got)
    if i is None:
        print(f"ok   {name}: {len(want)} tokens")
        return True
    ctx = b"".join(decode[t] for t in want[max(0, i - 5):i])
    print(f"FAIL {name}: first difference at token {i} (after {ctx!r}): tiktoken {want[i:i + 8]}, "
          f"minicolossus {got[i:i + 8]}")
    return False


def codepoint_check(enc, decode, mc, ranks, workdir):
    """Two lines per code point c: 'a{c}1{c}?{c} {c}{c}\\n' and 'x {c}a\\n' (the second shows whether c is
    white space: if so the space before it is a piece of its own). Lines are piece-aligned in both
    tokenizers (each ends in a newline followed by a letter), so the token stream splits by bytes."""
    cps = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    lines = []
    for cp in cps:
        c = chr(cp)
        lines.append(f"a{c}1{c}?{c} {c}{c}\nx {c}a\n")
    text = "".join(lines)
    got, _ = mc_encode(mc, ranks, text.encode("utf-8"), workdir)
    bad = []
    pos = 0  # index into got
    for cp, line in zip(cps, lines):
        want = enc.encode_ordinary(line)
        n = len(line.encode("utf-8"))
        mine, size = [], 0
        while size < n and pos < len(got):
            mine.append(got[pos])
            size += len(decode.get(got[pos], b""))
            pos += 1
        if mine != want:
            bad.append(cp)
            if size != n:  # a token crossed the line: realign on the next line start
                return bad + [-1]
    if pos != len(got):
        bad.append(-1)
    return bad


def ranges(cps):
    out, start, prev = [], None, None
    for cp in cps:
        if start is None:
            start = prev = cp
        elif cp == prev + 1:
            prev = cp
        else:
            out.append((start, prev))
            start = prev = cp
    if start is not None:
        out.append((start, prev))
    return ", ".join(f"U+{a:04X}" if a == b else f"U+{a:04X}..U+{b:04X}" for a, b in out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minicolossus", help="the minicolossus binary")
    ap.add_argument("--ranks", default=default_ranks(), help="gpt2.tiktoken (default: the setup.sh cache)")
    ap.add_argument("--tiktoken-path", help="a directory holding the tiktoken package (pip --target)")
    ap.add_argument("--text", help="the corpus to compare and time (default: `bible 'Gen1:1-Rev22:21'`)")
    ap.add_argument("--no-codepoints", action="store_true", help="skip the every-code-point check")
    ap.add_argument("--write-vectors", metavar="FILE", help="write the unit tests' vectors from tiktoken and stop")
    args = ap.parse_args()
    if args.tiktoken_path:
        sys.path.insert(0, args.tiktoken_path)
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        die("tiktoken is not importable: python3 -m pip install --target /tmp/tt tiktoken; --tiktoken-path /tmp/tt")
    if not os.path.isfile(args.ranks):
        die(f"{args.ranks}: no ranks file (run scripts/setup.sh, or pass --ranks)")
    enc, decode, version = load_encoding(args.ranks)

    if args.write_vectors:
        kjv = bible("Gen1:1-Gen1:31").decode("utf-8")
        texts = dict(TRICKY, kjv_genesis_1=kjv)
        vec = [{"name": k, "text": v, "ids": enc.encode_ordinary(v)} for k, v in texts.items()]
        with open(args.write_vectors, "w", encoding="utf-8") as f:
            head = json.dumps({"tiktoken": version, "pattern": PATTERN})[:-1]
            f.write(head + ', "vectors": [\n' + ",\n".join(json.dumps(v) for v in vec) + "\n]}\n")
        print(f"wrote {len(vec)} vectors to {args.write_vectors} (tiktoken {version})")
        return 0

    if not args.minicolossus:
        die("--minicolossus BIN is required")
    if args.text:
        try:
            with open(args.text, "rb") as f:
                corpus = f.read().decode("utf-8")
        except OSError as e:
            die(f"--text {args.text}: cannot read it ({e.strerror})")
        except UnicodeDecodeError as e:
            die(f"--text {args.text}: not UTF-8 (byte {e.start}); tiktoken encodes text")
    else:
        corpus = bible("Gen1:1-Rev22:21").decode("utf-8")

    ok = True
    with tempfile.TemporaryDirectory() as work:
        for name, text in TRICKY.items():
            ok &= compare(name, text, enc, decode, args.minicolossus, args.ranks, work)
        # The corpus: agreement and speed.
        mb = len(corpus.encode("utf-8")) / 1e6
        tt = []
        for _ in range(3):
            t0 = time.perf_counter()
            want = enc.encode_ordinary(corpus)
            tt.append(time.perf_counter() - t0)
        mc_speed = []
        for _ in range(3):
            got, speed = mc_encode(args.minicolossus, args.ranks, corpus.encode("utf-8"), work)
            mc_speed.append(speed)
        i = first_mismatch(want, got)
        if i is None:
            print(f"ok   corpus: {len(want)} tokens, {mb:.2f} MB, byte-exact")
        else:
            ok = False
            print(f"FAIL corpus: first difference at token {i}: tiktoken {want[i:i + 8]}, minicolossus {got[i:i + 8]}")
        print(f"speed (one thread, best of 3, {mb:.2f} MB): tiktoken {version} encode_ordinary "
              f"{mb / min(tt):.1f} MB/s ({min(tt):.2f} s); minicolossus "
              + (f"{max(mc_speed):.1f} MB/s ({mb / max(mc_speed):.2f} s)" if all(mc_speed)
                 else "(no speed in prepare's output)"))
        if not args.no_codepoints:
            bad = codepoint_check(enc, decode, args.minicolossus, args.ranks, work)
            if bad:
                ok = False
                cps = [c for c in bad if c >= 0]
                print(f"FAIL code points: {len(cps)} lines differ: {ranges(cps)}"
                      + (" (and the streams lost alignment)" if -1 in bad else ""))
            else:
                print("ok   code points: all 1,112,064 agree in letter/number/space/other contexts")
    print("all agree" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
