"""The lead's charts, drawn server-side with matplotlib as inline SVG: labelled axes, no chart junk."""

import io
import math

import matplotlib

matplotlib.use("Agg")  # no display on a server; set before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none",
    "axes.titlesize": 10, "axes.titleweight": "bold", "legend.frameon": False,
})
PROMOTED, REJECTED, OPEN = "#1a7f37", "#cf222e", "#6e7781"
DIAGNOSTIC_LABELS = {
    "brightness": "brightness (mean luma)", "saturation": "saturation (mean)", "rgb_entropy": "RGB entropy (bits)",
    "flat_share": "flat-background share", "sharpness": "sharpness (Laplacian var.)",
}


def _svg(figure) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: drop the XML prologue


def win_rate_chart(rounds: list[dict]) -> str:
    """The child's win rate over its parent per round, with its 95% interval and the promotion threshold."""
    figure, axes = plt.subplots(figsize=(6, 2.6))
    measured = [r for r in rounds if r["win"]["n"]]
    for row in measured:
        win = row["win"]
        colour = PROMOTED if row["promoted"] else REJECTED if row["promoted"] is False else OPEN
        axes.errorbar([row["number"]], [win["rate"]], yerr=[[win["rate"] - win["low"]], [win["high"] - win["rate"]]],
                      fmt="o", color=colour, capsize=3)
    if rounds:
        axes.hlines(sorted({r["threshold"] for r in rounds}), 0.5, max(r["number"] for r in rounds) + 0.5,
                    colors="#888", linestyles="dashed", linewidth=0.8, label="promotion threshold")
        axes.set_xlim(0.5, max(r["number"] for r in rounds) + 0.5)
        axes.legend(loc="lower right")
    axes.set_ylim(0, 1)
    axes.set_xlabel("round")
    axes.set_ylabel("child's win rate vs parent")
    axes.set_xticks([r["number"] for r in rounds] or [1])
    axes.set_title("Evaluation: green promoted, red rejected, grey undecided")
    return _svg(figure)


def training_chart(curves: dict[int, list[dict]]) -> str:
    """Loss, implicit accuracy and reward margin by step, one line per round."""
    figure, panels = plt.subplots(1, 3, figsize=(9, 2.6))
    for (key, label), axes in zip((("loss", "DPO loss"), ("implicit_accuracy", "implicit accuracy"),
                                   ("margin", "reward margin")), panels):
        for number, steps in sorted(curves.items()):
            points = [(s["step"], s[key]) for s in steps if s.get(key) is not None]
            if points:
                axes.plot(*zip(*points), linewidth=1, label=f"round {number}")
        if key == "loss":
            axes.axhline(math.log(2), color="#888", linestyle="dashed", linewidth=0.8)
            axes.text(0, math.log(2), " ln 2", va="bottom", fontsize=8, color="#666")
        axes.set_xlabel("step")
        axes.set_title(label)
    if curves:
        panels[0].legend(fontsize=8)
    return _svg(figure)


def diagnostics_chart(checkpoints: list[dict]) -> str:
    """Each image diagnostic's mean per checkpoint, along the lineage."""
    keys = list(DIAGNOSTIC_LABELS)
    figure, panels = plt.subplots(1, len(keys), figsize=(13, 2.4))
    figure.subplots_adjust(wspace=0.45)
    measured = [c for c in checkpoints if c.get("diagnostics")]
    for key, axes in zip(keys, panels):
        points = [(i, c["diagnostics"][key]) for i, c in enumerate(measured) if c["diagnostics"].get(key) is not None]
        if points:
            axes.plot(*zip(*points), marker="o", linewidth=1, color="#0969da")
        axes.set_xticks(range(len(measured)), [c["label"] for c in measured], rotation=45, ha="right")
        axes.set_title(DIAGNOSTIC_LABELS[key])
    return _svg(figure)


def diversity_chart(checkpoints: list[dict], rounds: list[dict]) -> str:
    """Diversity per checkpoint beside the win rate that bought it: preference paid for with variety shows here."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 2.6))
    measured = [c for c in checkpoints if c.get("diversity") is not None]
    left.plot(range(len(measured)), [c["diversity"] for c in measured], marker="o", color="#8250df")
    left.set_xticks(range(len(measured)), [c["label"] for c in measured], rotation=45, ha="right")
    left.set_ylim(bottom=0)
    left.set_ylabel("mean distance across seeds")
    left.set_title("Diversity per checkpoint")
    won = [r for r in rounds if r["win"]["n"]]
    right.plot([r["number"] for r in won], [r["win"]["rate"] for r in won], marker="o", color="#0969da")
    right.set_ylim(0, 1)
    right.set_xlabel("round")
    right.set_ylabel("child's win rate")
    right.set_title("Win rate per round")
    return _svg(figure)


def labels_chart(rounds: list[dict]) -> str:
    """Train and eval labels per round."""
    figure, axes = plt.subplots(figsize=(6, 2.3))
    numbers = [r["number"] for r in rounds]
    axes.bar(numbers, [r["train_labels"] for r in rounds], color="#0969da", label="train labels")
    axes.bar(numbers, [r["eval_labels"] for r in rounds], bottom=[r["train_labels"] for r in rounds],
             color="#54aeff", label="eval labels")
    axes.set_xticks(numbers or [1])
    axes.set_xlabel("round")
    axes.set_ylabel("judgements")
    if rounds:
        axes.legend()
    axes.set_title("Labels per round")
    return _svg(figure)


def strength_chart(strengths: list[dict]) -> str:
    """Bradley–Terry strength per checkpoint (log-odds over the base) and the win rate over the base it implies,
    both with their 95% intervals; green current or retired (promoted), red rejected, grey the base."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 2.8))
    for i, row in enumerate(strengths):
        colour = OPEN if row["is_root"] else REJECTED if row["status"] == "rejected" else PROMOTED
        for axes, (value, low, high) in ((left, (row["strength"], row["low"], row["high"])),
                                         (right, (row["vs_base"], row["vs_base_low"], row["vs_base_high"]))):
            axes.errorbar([i], [value], yerr=[[value - low], [high - value]], fmt="o", color=colour, capsize=3)
    for axes, level in ((left, 0.0), (right, 0.5)):
        axes.axhline(level, color="#888", linestyle="dashed", linewidth=0.8)
        axes.set_xticks(range(len(strengths)), [r["label"] for r in strengths], rotation=45, ha="right")
    left.set_ylabel("strength (log-odds vs base)")
    left.set_title("Bradley–Terry strength")
    right.set_ylim(0, 1)
    right.set_ylabel("implied win rate vs base")
    right.set_title("Cumulative against the base")
    return _svg(figure)
