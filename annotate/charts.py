"""The lead's charts, drawn server-side with matplotlib as inline SVG: labelled axes, no chart junk."""

import io
import math

import matplotlib

matplotlib.use("Agg")  # no display on a server; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

plt.rcParams.update({
    "font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
    "axes.titlesize": 10, "axes.titleweight": "bold", "legend.frameon": False,
})
PROMOTED, REJECTED, OPEN = "#1a7f37", "#cf222e", "#6e7781"
DIAGNOSTIC_LABELS = {
    "brightness": "brightness (mean luma)", "saturation": "saturation (mean)", "rgb_entropy": "RGB entropy (bits)",
    "flat_share": "flat-background share", "sharpness": "sharpness (Laplacian var.)",
}
MAX_CHECKPOINT_LABELS = 12  # more checkpoints than this: every k-th is named on the axis
SMOOTH_FROM = 40  # steps from which a training curve is drawn smoothed over its raw values


def _svg(figure) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight", pad_inches=0.05)  # the legends outside are kept whole
    plt.close(figure)
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: drop the XML prologue


def _figure(ncols: int = 1, nrows: int = 1, *, size: tuple[float, float]):
    """A figure laid out by matplotlib's constrained layout: no label, title or outside legend is cut off."""
    return plt.subplots(nrows, ncols, figsize=size, layout="constrained", squeeze=False)


def _round_axis(axes, numbers: list[int]) -> None:
    """Rounds on x: whole numbers only, half a round of margin either side."""
    axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axes.set_xlim(min(numbers, default=1) - 0.5, max(numbers, default=1) + 0.5)
    axes.set_xlabel("round")


def _checkpoint_axis(axes, labels: list[str]) -> None:
    """Checkpoints on x, named along the lineage; a long lineage names every k-th so names never overlap."""
    every = max(1, math.ceil(len(labels) / MAX_CHECKPOINT_LABELS))
    shown = list(range(0, len(labels), every))
    axes.set_xticks(shown, [labels[i] for i in shown], rotation=45, ha="right", rotation_mode="anchor")
    if labels:
        axes.set_xlim(-0.5, len(labels) - 0.5)


def _legend_outside(axes, **kwargs) -> None:
    """A legend right of the axes, never over the data."""
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


def win_rate_chart(rounds: list[dict]) -> str:
    """The child's win rate over its parent per round, with its 95% interval and the promotion threshold."""
    figure, ((axes,),) = _figure(size=(6.4, 2.6))
    measured = [r for r in rounds if r["win"]["n"]]
    for row in measured:
        win = row["win"]
        colour = PROMOTED if row["promoted"] else REJECTED if row["promoted"] is False else OPEN
        axes.errorbar([row["number"]], [win["rate"]], yerr=[[win["rate"] - win["low"]], [win["high"] - win["rate"]]],
                      fmt="o", color=colour, capsize=3)
    numbers = [r["number"] for r in rounds]
    handles = [Line2D([], [], color=colour, marker="o", linestyle="", label=label) for colour, label, shown in (
        (PROMOTED, "promoted", any(r["promoted"] for r in measured)),
        (REJECTED, "rejected", any(r["promoted"] is False for r in measured)),
        (OPEN, "undecided", any(r["promoted"] is None for r in measured)),
    ) if shown]
    if rounds:
        axes.hlines(sorted({r["threshold"] for r in rounds}), min(numbers) - 0.5, max(numbers) + 0.5,
                    colors="#888", linestyles="dashed", linewidth=0.8)
        handles.append(Line2D([], [], color="#888", linestyle="dashed", linewidth=0.8, label="promotion threshold"))
        _legend_outside(axes, handles=handles)
    _round_axis(axes, numbers)
    axes.set_ylim(0, 1)
    axes.set_ylabel("child's win rate vs parent")
    axes.set_title("Child against parent, 95% interval")
    return _svg(figure)


def _smoothed(values: list[float]) -> list[float]:
    """A trailing mean over a twentieth of the run: per-step DPO figures on small batches are mostly noise."""
    window = max(1, len(values) // 20)
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def training_chart(curves: dict[int, list[dict]]) -> str:
    """Loss, implicit accuracy and reward margin by step, one line per round (smoothed over the raw steps)."""
    figure, (panels,) = _figure(3, size=(9.6, 2.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles = {}
    for (key, label), axes in zip((("loss", "DPO loss"), ("implicit_accuracy", "implicit accuracy"),
                                   ("margin", "reward margin")), panels):
        for index, (number, steps) in enumerate(sorted(curves.items())):
            points = [(s["step"], s[key]) for s in steps if s.get(key) is not None]
            if not points:
                continue
            colour = colours[index % len(colours)]
            xs, ys = zip(*points)
            if len(points) >= SMOOTH_FROM:
                axes.plot(xs, ys, linewidth=0.5, color=colour, alpha=0.15)
                ys = _smoothed(list(ys))
            handles[number] = axes.plot(xs, ys, linewidth=1.2, color=colour, label=f"round {number}")[0]
        if key == "loss":
            axes.axhline(math.log(2), color="#888", linestyle="dashed", linewidth=0.8)
            axes.annotate("ln 2", (1, math.log(2)), xycoords=("axes fraction", "data"), xytext=(2, 0),
                          textcoords="offset points", va="center", fontsize=8, color="#666")
        axes.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
        axes.set_xlabel("step")
        axes.set_title(label)
    if handles:
        figure.legend(handles=list(handles.values()), loc="outside right upper")
    return _svg(figure)


def diagnostics_chart(checkpoints: list[dict]) -> str:
    """Each image diagnostic's mean per checkpoint, along the lineage: one small panel per diagnostic."""
    keys = list(DIAGNOSTIC_LABELS)
    figure, grid = _figure(3, 2, size=(9.6, 4.6))
    panels = list(grid.flat)
    panels[-1].set_visible(False)  # five diagnostics in a grid of six
    measured = [c for c in checkpoints if c.get("diagnostics")]
    for key, axes in zip(keys, panels):
        points = [(i, c["diagnostics"][key]) for i, c in enumerate(measured) if c["diagnostics"].get(key) is not None]
        if points:
            axes.plot(*zip(*points), marker="o", linewidth=1, color="#0969da")
        _checkpoint_axis(axes, [c["label"] for c in measured])
        axes.set_title(DIAGNOSTIC_LABELS[key])
    return _svg(figure)


def diversity_chart(checkpoints: list[dict], rounds: list[dict]) -> str:
    """Diversity per checkpoint beside the win rate that bought it: preference paid for with variety shows here."""
    figure, ((left, right),) = _figure(2, size=(9.6, 2.8))
    measured = [c for c in checkpoints if c.get("diversity") is not None]
    left.plot(range(len(measured)), [c["diversity"] for c in measured], marker="o", color="#8250df")
    _checkpoint_axis(left, [c["label"] for c in measured])
    left.set_ylim(0, max((c["diversity"] for c in measured), default=0) * 1.15 or 1)  # room above the top marker
    left.set_ylabel("mean distance across seeds")
    left.set_title("Diversity per checkpoint")
    won = [r for r in rounds if r["win"]["n"]]
    right.plot([r["number"] for r in won], [r["win"]["rate"] for r in won], marker="o", color="#0969da")
    _round_axis(right, [r["number"] for r in rounds])
    right.set_ylim(0, 1)
    right.set_ylabel("child's win rate")
    right.set_title("Win rate per round")
    return _svg(figure)


def labels_chart(rounds: list[dict]) -> str:
    """Train and eval labels per round."""
    figure, ((axes,),) = _figure(size=(6.4, 2.4))
    numbers = [r["number"] for r in rounds]
    axes.bar(numbers, [r["train_labels"] for r in rounds], color="#0969da", label="train labels")
    axes.bar(numbers, [r["eval_labels"] for r in rounds], bottom=[r["train_labels"] for r in rounds],
             color="#54aeff", label="eval labels")
    _round_axis(axes, numbers)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("judgements")
    if rounds:
        _legend_outside(axes)
    axes.set_title("Labels per round")
    return _svg(figure)


def strength_chart(strengths: list[dict]) -> str:
    """Bradley–Terry strength per checkpoint (log-odds over the base) and the win rate over the base it implies,
    both with their 95% intervals; green current or retired (promoted), red rejected, grey the base. Beside each
    implied figure, a diamond: the child's win rate over the base as measured head-to-head (`measured`), where any."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    for i, row in enumerate(strengths):
        colour = OPEN if row["is_root"] else REJECTED if row["status"] == "rejected" else PROMOTED
        for axes, (value, low, high) in ((left, (row["strength"], row["low"], row["high"])),
                                         (right, (row["vs_base"], row["vs_base_low"], row["vs_base_high"]))):
            axes.errorbar([i], [value], yerr=[[value - low], [high - value]], fmt="o", color=colour, capsize=3)
        if measured := row.get("measured"):
            right.errorbar([i + 0.2], [measured["rate"]], yerr=[[measured["rate"] - measured["low"]],
                                                                [measured["high"] - measured["rate"]]],
                           fmt="D", color=colour, markerfacecolor="white", capsize=3)

    for axes, level in ((left, 0.0), (right, 0.5)):
        axes.axhline(level, color="#888", linestyle="dashed", linewidth=0.8)
        axes.set_xticks(range(len(strengths)), [r["label"] for r in strengths], rotation=45, ha="right")
    left.set_ylabel("strength (log-odds vs base)")
    left.set_title("Bradley–Terry strength")
    right.set_ylim(0, 1)
    right.set_ylabel("implied win rate vs base")
    right.set_title("Cumulative against the base: implied ●, measured ◇" if any(r.get("measured") for r in strengths)
                    else "Cumulative against the base")
    return _svg(figure)
