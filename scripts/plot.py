#!/usr/bin/python3
# Figures from minicolossus's JSON outputs, one subcommand per kind of input: `simulate` (the output of
# `minicolossus simulate --json`) and `metrics` (one or several `train --metrics` JSONL files, one run
# each). Writes PNGs atomically and prints their paths, one a line.
# Invariant: input is validated before matplotlib is imported; bad input exits 2 with one line on stderr.
"""Usage: scripts/plot.py simulate SIM.json [--out DIR]
       scripts/plot.py metrics RUN.jsonl [RUN.jsonl ...] [--label NAME ...] [--x step|tokens|time] [--out DIR]"""
import argparse
import json
import math
import os
import stat
import sys

PROG = "plot.py"


class BadInput(Exception):
    """One line naming the file and what is wrong with it (exit 2)."""


def read_text(path):
    try:
        st = os.stat(path)  # stat, not open: a FIFO must be refused, not waited on
    except OSError as e:
        raise BadInput(f"{path}: cannot read it ({e.strerror})")
    if stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{path}: a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(f"{path}: not a regular file (a FIFO, socket or device)")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise BadInput(f"{path}: cannot read it ({e.strerror})")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte {e.start})")


def load_json(path):
    text = read_text(path)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: arrays nested thousands deep
        raise BadInput(f"{path}: not JSON ({e})")


def out_dir(out):
    if os.path.exists(out) and not os.path.isdir(out):
        raise BadInput(f"--out {out}: exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise BadInput(f"--out {out}: cannot create it ({e.strerror or e})")
    return out


def saver(plt, written):
    """save(fig, path): a PNG written atomically (temporary name, then rename), its path recorded."""
    def save(fig, path):
        fig.tight_layout()
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            fig.savefig(tmp, dpi=120, format="png")
            os.replace(tmp, path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise BadInput(f"--out: cannot write {path} ({e.strerror or e})")
        finally:
            plt.close(fig)
        written.append(path)
    return save


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
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except OverflowError:  # an integer beyond float's range (JSON integers are unbounded in Python)
        return math.inf if v > 0 else -math.inf


def shown(v):
    """v as a message shows it: its repr, cut to 40 characters (a JSON value can be megabytes)."""
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def int_in(v, lo, hi):
    """v is a JSON integer (not a boolean) in [lo, hi)."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v < hi


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
        if not int_in(r["gpus"], 1, 2**31):
            raise BadInput(f"{path}: rows[{i}].gpus = {shown(r['gpus'])}: want an integer in [1, 2^31)")
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
    shape = [f"{k} {number(cfg[k]):g}" for k in ("batch", "seq", "grad_accum", "zero", "bucket_mb")
             if not math.isnan(number(cfg.get(k)))]
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
    out = out_dir(args.out if args.out is not None else os.path.dirname(os.path.abspath(args.sim)))
    plt = pyplot()
    stem = os.path.splitext(os.path.basename(args.sim))[0]
    title = simulate_title(sim)
    g = c["gpus"]
    written = []
    save_png = saver(plt, written)

    def save(fig, name):
        save_png(fig, os.path.join(out, f"{stem}_{name}.png"))

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


# ---- metrics ----------------------------------------------------------------------------------

# Every line of a `train --metrics` file has these (src/train/trainer.cpp, Trainer::log_step); val_loss
# only on validation steps. Older files may lack comm_exposed_ms, ranks and elapsed_s.
METRIC_KEYS = ("step", "loss", "tokens_per_s", "mfu")
X_AXES = ("step", "tokens", "time")


def x_scale(what, hi):
    """(divisor, axis label) that keeps the x axis's numbers short, for a largest value hi."""
    if what == "tokens":
        return next(((d, f"tokens trained ({u})") for d, u in ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands"))
                     if hi >= 2 * d), (1, "tokens trained"))
    if what == "time":
        return next(((d, f"wall time ({u})") for d, u in ((3600, "h"), (60, "min")) if hi >= 2 * d),
                    (1, "wall time (s)"))
    return 1, "optimizer step"


def read_metrics(path, x):
    """The run in a metrics file: columns sorted by step. A step logged twice (a run resumed from an
    earlier checkpoint appends and repeats the steps after it) keeps its last line.
    Each process's elapsed_s starts at 0, so where a resumed process's lines begin (its elapsed_s or its
    step goes back) its clock is continued from the previous process's last line: wall time spent on
    steps that were later repeated counts too."""
    text = read_text(path)
    by_step = {}
    prev = None  # (step, elapsed_s) of the last line with a finite elapsed_s
    clock = 0.0  # wall seconds of the processes before the current one
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except (ValueError, RecursionError) as e:  # RecursionError: arrays nested thousands deep
            try:  # a pretty-printed document, e.g. `simulate --json`, is JSON but not JSON lines
                json.loads(text)
            except (ValueError, RecursionError):
                raise BadInput(f"{path}:{n}: not JSON ({e})")
            raise BadInput(f"{path}: one JSON document over several lines, not JSON lines (want a "
                           "`minicolossus train --metrics` file)")
        if not isinstance(r, dict):
            raise BadInput(f"{path}:{n}: not a JSON object")
        missing = [k for k in METRIC_KEYS if k not in r]
        if missing:
            raise BadInput(f"{path}:{n}: lacks {', '.join(missing)} (want a `minicolossus train --metrics` file)")
        step = r["step"]
        if not int_in(step, 0, 2**31):  # the trainer's steps are C ints
            raise BadInput(f"{path}:{n}: step = {shown(step)}: want an integer in [0, 2^31)")
        for k in ("loss", "tokens_per_s", "mfu", "val_loss", "comm_exposed_ms", "ms", "elapsed_s"):
            v = r.get(k)  # null: how the trainer writes a NaN loss
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
                raise BadInput(f"{path}:{n}: {k} = {shown(v)}: want a number")
        if x == "time" and "elapsed_s" not in r:
            raise BadInput(f"{path}:{n}: lacks elapsed_s (written by newer trainers): use --x step")
        if x == "tokens":
            shape = [k for k in ("batch", "seq", "grad_accum") if not int_in(r.get(k), 1, 2**31)]
            if shape:
                raise BadInput(f"{path}:{n}: lacks {', '.join(shape)} (positive integers) for --x tokens: "
                               "use --x step")
        e = number(r.get("elapsed_s"))
        if math.isfinite(e):
            if prev is not None and (step <= prev[0] or e < prev[1]):
                clock += prev[1]
            prev = (step, e)
            r["wall_s"] = clock + e
        by_step[step] = r
    if not by_step:
        raise BadInput(f"{path}: no metrics lines (empty file)")
    rows = [by_step[k] for k in sorted(by_step)]
    finite = lambda v: v if math.isfinite(v) else math.nan  # Python's json reads Infinity too
    col = lambda k: [finite(number(r.get(k))) for r in rows]
    run = {k: col(k) for k in ("loss", "val_loss", "tokens_per_s", "mfu", "comm_exposed_ms", "ms")}
    run["step"] = [r["step"] for r in rows]
    if x == "step":
        run["x"] = run["step"]
    elif x == "time":
        run["x"] = col("wall_s")
    else:
        ranks = lambda r: r["ranks"] if int_in(r.get("ranks"), 1, 2**31) else 1
        run["x"] = [r["step"] * r["batch"] * r["seq"] * r["grad_accum"] * ranks(r) for r in rows]
    run["ranks"] = max((r["ranks"] for r in rows if int_in(r.get("ranks"), 1, 2**31)), default=None)
    run["has_comm"] = run["ranks"] is not None and run["ranks"] > 1 and "comm_exposed_ms" in rows[-1]
    return run


def run_labels(paths, labels):
    if labels:
        if len(labels) != len(paths):
            raise BadInput(f"--label: given {len(labels)} times for {len(paths)} files (give one per file, or none)")
        return labels
    # The file name without .jsonl; the whole path where two files share a name (run1/m.jsonl, run2/m.jsonl).
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    return [os.path.splitext(p)[0] if stems.count(s) > 1 else s for p, s in zip(paths, stems)]


def plot_metrics(args):
    runs = [read_metrics(p, args.x) for p in args.runs]  # all input checked before anything is drawn
    labels = run_labels(args.runs, args.label)
    out = out_dir(args.out if args.out is not None else os.path.dirname(os.path.abspath(args.runs[0])))
    plt = pyplot()
    from matplotlib.lines import Line2D
    written = []
    save = saver(plt, written)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = lambda i: colors[i % len(colors)]
    # Runs can coincide (2 ranks train exactly like 1 rank with twice the batch): dashes and hollow
    # markers of different shapes keep each visible where it lies on another.
    dash = lambda i: ("-", (0, (5, 2)), (0, (1, 1.5)), "-.")[i % 4]
    marker = lambda i: "os^Dv<>p"[i % 8]
    div, xlabel = x_scale(args.x, max((v for r in runs for v in r["x"] if not math.isnan(v)), default=0))
    for r in runs:
        r["x"] = [v / div for v in r["x"]]
    one = len(runs) == 1
    suffix = f": {labels[0]}" if one else f": {len(runs)} runs"

    # loss: training loss per step (line), validation loss where measured (markers), one colour per run
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, (r, name) in enumerate(zip(runs, labels)):
        ax.plot(r["x"], r["loss"], ls=dash(i), color=color(i), lw=1.3, alpha=0.9, label=name)
        vx = [x for x, v in zip(r["x"], r["val_loss"]) if not math.isnan(v)]
        vy = [v for v in r["val_loss"] if not math.isnan(v)]
        if vx:
            ax.plot(vx, vy, ls="", marker=marker(i), ms=7, mfc="none", mec=color(i), mew=1.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (nats per token)")
    ax.set_title(f"Loss{suffix}")
    ax.grid(True, alpha=0.3)
    runs_legend = ax.legend(handles=[Line2D([], [], ls=dash(i), color=color(i), lw=1.3, marker=marker(i), ms=7,
                                            mfc="none", mew=1.6, label=name) for i, name in enumerate(labels)],
                            loc="upper right", title="run")
    ax.add_artist(runs_legend)
    ax.legend(handles=[Line2D([], [], color="gray", lw=1.3, label="train"),
                       Line2D([], [], color="gray", marker="o", ls="", ms=7, mfc="none", mew=1.6, label="validation")],
              loc="upper center")
    save(fig, os.path.join(out, "loss.png"))

    # throughput: tokens/s (all ranks together) above, MFU below, sharing the x axis
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True)
    for i, (r, name) in enumerate(zip(runs, labels)):
        ax1.plot(r["x"], r["tokens_per_s"], ls=dash(i), color=color(i), lw=1.2, label=name)
        ax2.plot(r["x"], [100 * v for v in r["mfu"]], ls=dash(i), color=color(i), lw=1.2, label=name)
    ax1.set_ylabel("tokens/s (all ranks)")
    ax1.set_ylim(bottom=0)
    ax1.set_title(f"Throughput{suffix}")
    ax1.legend(loc="lower right", title="run")
    ax2.set_ylabel("MFU (% of peak FLOP/s)")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel(xlabel)
    for a in (ax1, ax2):
        a.grid(True, alpha=0.3)
    save(fig, os.path.join(out, "throughput.png"))

    # communication left exposed after backward: ms per step above, share of the step below; runs on
    # one rank have none and are named in a note instead
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6.4), sharex=True)
    single = []
    for i, (r, name) in enumerate(zip(runs, labels)):
        if not r["has_comm"]:
            single.append(name)
            continue
        ax1.plot(r["x"], r["comm_exposed_ms"], ls=dash(i), color=color(i), lw=1.2, label=f"{name} ({r['ranks']} ranks)")
        ax2.plot(r["x"], [100 * c / ms if ms > 0 else math.nan for c, ms in zip(r["comm_exposed_ms"], r["ms"])],
                 ls=dash(i), color=color(i), lw=1.2)
    ax1.set_ylabel("exposed communication (ms/step)")
    ax1.set_ylim(bottom=0)
    note = ""
    if single:  # a second title line, where it covers no data
        note = "no communication (1 rank): " + ", ".join(single)
        note = "\n" + (note if len(note) < 90 else note[:87] + "...")
    ax1.set_title(f"Exposed communication{suffix}{note}")
    ax2.set_ylabel("exposed communication (% of step)")
    ax2.set_ylim(0, 100)
    ax2.set_xlabel(xlabel)
    for a in (ax1, ax2):
        a.grid(True, alpha=0.3)
    if len(single) < len(runs):
        ax1.legend(loc="best", title="run")
    else:  # nothing drawn: the steps' range, and a ms axis that is not empty
        lo, hi = min(min(r["x"]) for r in runs), max(max(r["x"]) for r in runs)
        if lo < hi:
            ax2.set_xlim(lo, hi)
        ax1.set_ylim(0, 1)
    save(fig, os.path.join(out, "comm.png"))

    for p in written:
        print(p)


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Figures from minicolossus JSON outputs.")
    sub = ap.add_subparsers(dest="what", required=True, metavar="{simulate,metrics}")
    sp = sub.add_parser("simulate", help="scaling, step-time breakdown and goodput from `simulate --json`")
    sp.add_argument("sim", metavar="SIM.json", help="output of `minicolossus simulate ... --json`")
    sp.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: SIM.json's directory)")
    sp.set_defaults(run=plot_simulate)
    mp = sub.add_parser("metrics", help="loss, throughput and MFU, exposed communication from `train --metrics` files")
    mp.add_argument("runs", nargs="+", metavar="RUN.jsonl", help="`minicolossus train --metrics` files, one run each")
    mp.add_argument("--label", action="append", metavar="NAME",
                    help="legend name of each run, once per file in order (default: the file names)")
    mp.add_argument("--x", choices=X_AXES, default="step",
                    help="x axis: optimizer step, tokens trained, or wall time (default: step)")
    mp.add_argument("--out", metavar="DIR",
                    help="where to write loss.png, throughput.png, comm.png (default: the first file's directory)")
    mp.set_defaults(run=plot_metrics)
    args = ap.parse_args(argv)
    try:
        args.run(args)
    except BadInput as e:
        sys.stderr.write(f"{PROG} {args.what}: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
