#!/usr/bin/python3
# Figures from minicolossus's JSON outputs, one subcommand per kind of input (for now `simulate`:
# the output of `minicolossus simulate --json`). Writes PNGs and prints their paths, one a line.
# Invariant: input is validated before matplotlib is imported; bad input exits 2 with one line on stderr.
"""Usage: scripts/plot.py simulate SIM.json [--out DIR]"""
import argparse
import json
import math
import os
import stat
import sys

PROG = "plot.py"


class BadInput(Exception):
    """One line naming the file and what is wrong with it (exit 2)."""


def load_json(path):
    try:
        st = os.stat(path)  # stat, not open: a FIFO must be refused, not waited on
    except OSError as e:
        raise BadInput(f"{path}: cannot read it ({e.strerror})")
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{path}: not a regular file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise BadInput(f"{path}: cannot read it ({e.strerror})")
    try:
        return json.loads(text)
    except ValueError as e:
        raise BadInput(f"{path}: not JSON ({e})")


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only), or exit 1 saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        sys.stderr.write(f"{PROG}: matplotlib is missing for {sys.executable}: run "
                         "`bash scripts/setup.sh python3-matplotlib` and use /usr/bin/python3\n")
        sys.exit(1)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def number(v):
    """A JSON number as float; null (how nlohmann-json writes inf and NaN) and non-numbers as NaN."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


# ---- simulate ---------------------------------------------------------------------------------

SIM_KEYS = ("gpus", "step_ms", "compute_ms", "exposed_comm_ms", "optimizer_ms", "tokens_per_s_per_gpu",
            "scaling_efficiency", "goodput", "ckpt_interval_min")


def read_simulate(path):
    sim = load_json(path)
    rows = sim.get("rows") if isinstance(sim, dict) else None
    if not isinstance(rows, list) or not rows:
        raise BadInput(f"{path}: no \"rows\" (want the output of `minicolossus simulate --json`)")
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise BadInput(f"{path}: rows[{i}] is not an object")
        missing = [k for k in SIM_KEYS if k not in r]
        if missing:
            raise BadInput(f"{path}: rows[{i}] lacks {', '.join(missing)}")
        if not (isinstance(r["gpus"], int) and not isinstance(r["gpus"], bool) and r["gpus"] > 0):
            raise BadInput(f"{path}: rows[{i}].gpus = {r['gpus']!r}: want a positive integer")
    rows = sorted(rows, key=lambda r: r["gpus"])
    cols = {k: [number(r[k]) for r in rows] for k in SIM_KEYS}
    cols["gpus"] = [r["gpus"] for r in rows]
    return sim, cols


def simulate_title(sim):
    cfg = sim.get("config") if isinstance(sim.get("config"), dict) else {}
    hw = sim.get("hardware") if isinstance(sim.get("hardware"), dict) else {}
    parts = []
    model = cfg.get("model_name", cfg.get("model"))
    if isinstance(model, str):
        parts.append(model)
    if isinstance(hw.get("name"), str):
        parts.append(f"on {hw['name']}")
    shape = [f"{k} {cfg[k]:g}" for k in ("batch", "seq", "grad_accum", "zero", "bucket_mb")
             if isinstance(cfg.get(k), (int, float)) and not isinstance(cfg.get(k), bool)]
    if shape:
        parts.append("(" + ", ".join(shape) + ")")
    return " ".join(parts) or "minicolossus simulate"


def log_gpu_axis(ax, gpus):
    ax.set_xscale("log")
    ax.set_xlabel("GPUs")
    ax.set_xlim(min(gpus) / 1.2, max(gpus) * 1.2)
    ax.grid(True, which="major", alpha=0.3)


def plot_simulate(args):
    sim, c = read_simulate(args.sim)
    plt = pyplot()
    out = args.out if args.out is not None else (os.path.dirname(os.path.abspath(args.sim)))
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise BadInput(f"--out {out}: cannot create it ({e.strerror})")
    stem = os.path.splitext(os.path.basename(args.sim))[0]
    title = simulate_title(sim)
    g = c["gpus"]
    written = []

    def save(fig, name):
        path = os.path.join(out, f"{stem}_{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    # (a) scaling: throughput per GPU (left) and efficiency relative to 1 GPU (right)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(g, c["tokens_per_s_per_gpu"], "o-", color="tab:blue", label="tokens/s per GPU")
    ax.set_ylabel("tokens/s per GPU", color="tab:blue")
    ax.set_ylim(bottom=0)
    log_gpu_axis(ax, g)
    ax2 = ax.twinx()
    ax2.plot(g, [100 * e for e in c["scaling_efficiency"]], "s--", color="tab:red", label="scaling efficiency")
    ax2.set_ylabel("scaling efficiency (%)", color="tab:red")
    ax2.set_ylim(0, 105)
    ax.set_title(f"Scaling: {title}")
    fig.legend(loc="lower left", bbox_to_anchor=(0.1, 0.15))
    save(fig, "scaling")

    # (b) where a step's time goes: stacked compute, exposed communication, optimizer; total on top
    fig, ax = plt.subplots(figsize=(8, 4.8))
    parts = [("compute", "compute_ms", "tab:blue"), ("exposed comm", "exposed_comm_ms", "tab:red"),
             ("optimizer", "optimizer_ms", "tab:green")]
    ys = [[0.0 if math.isnan(v) else v for v in c[k]] for _, k, _ in parts]
    ax.stackplot(g, *ys, labels=[p[0] for p in parts], colors=[p[2] for p in parts], alpha=0.75)
    ax.plot(g, c["step_ms"], "k.-", label="step")
    ax.set_ylabel("ms per step")
    ax.set_ylim(bottom=0)
    log_gpu_axis(ax, g)
    ax.set_title(f"Step time: {title}")
    ax.legend(loc="lower right")
    save(fig, "step_breakdown")

    # (c) failures: goodput (left) and the checkpoint interval that maximises it (right, log)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ax.plot(g, [100 * v for v in c["goodput"]], "o-", color="tab:purple", label="goodput")
    ax.set_ylabel("goodput (% of wall time that is useful)", color="tab:purple")
    ax.set_ylim(0, 105)
    log_gpu_axis(ax, g)
    ax2 = ax.twinx()
    ax2.plot(g, c["ckpt_interval_min"], "s--", color="tab:orange", label="checkpoint interval")
    ax2.set_ylabel("optimal checkpoint interval (min)", color="tab:orange")
    if any(v > 0 for v in c["ckpt_interval_min"]):
        ax2.set_yscale("log")
    ax.set_title(f"Goodput: {title}")
    fig.legend(loc="lower left", bbox_to_anchor=(0.1, 0.15))
    save(fig, "goodput")

    for p in written:
        print(p)


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Figures from minicolossus JSON outputs.")
    sub = ap.add_subparsers(dest="what", required=True, metavar="{simulate}")
    sp = sub.add_parser("simulate", help="scaling, step-time breakdown and goodput from `simulate --json`")
    sp.add_argument("sim", metavar="SIM.json", help="output of `minicolossus simulate ... --json`")
    sp.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: SIM.json's directory)")
    sp.set_defaults(run=plot_simulate)
    args = ap.parse_args(argv)
    try:
        args.run(args)
    except BadInput as e:
        sys.stderr.write(f"{PROG} {args.what}: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
