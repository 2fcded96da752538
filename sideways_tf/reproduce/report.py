"""The results of `sideways-reproduce`: a markdown section per claim with its verdict, and a PNG per claim."""

from __future__ import annotations

import math
import textwrap
from typing import Optional, Sequence

from sideways_tf.reproduce import execute, verdict
from sideways_tf.reproduce.claims import Claim

HISTORY_KEY = {"accuracy": "val_accuracy", "train_accuracy": "accuracy", "loss": "val_loss"}
SUMMARY_METRIC = {"accuracy": "accuracy", "train_accuracy": "train_accuracy", "loss": "loss", "cosine": "cosine_mean",
                  "receptive_field": "receptive_field"}
METRIC_WORDS = {"accuracy": "held-out accuracy", "train_accuracy": "training accuracy (last epoch)",
                "loss": "held-out L2 (mean squared error)", "cosine": "cosine to exact backprop, mean over units",
                "receptive_field": "input frames the last prediction depends on"}
ACCURACIES = ("accuracy", "train_accuracy")


def _pm(values: Sequence[float], digits: int = 3) -> str:
    mean, std = verdict.mean_std(values)
    return "n/a" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def claim_section(claim: Claim, values: verdict.Values, runs: dict, png: Optional[str]) -> tuple[str, str]:
    """`(verdict, markdown)` of one claim.

    Args:
      claim: the claim.
      values: its `{(arm, metric): [per seed]}`.
      runs: `{arm: [metrics per seed]}`, for divergence, parameter counts and per-unit cosines.
      png: the plot's file name relative to the markdown (None: no plot).
    """
    decided, outcomes = verdict.judge(claim.checks, values)
    metric = SUMMARY_METRIC[claim.metric]
    lines = [f'<a id="{claim.name}"></a>', "", f"## `{claim.name}`: {claim.title}", "",
             f"*{claim.source}.* Verdict: **{decided}**.", ""]
    if claim.note:
        lines += [f"In miniature: {claim.note}.", ""]
    if claim.changed:
        lines += [f"Changed from the last version: {claim.changed}.", ""]
    header = ["arm", f"{METRIC_WORDS[claim.metric]} (mean ± std)", "per seed", "diverged", "parameters"]
    if claim.metric == "cosine":
        header.insert(3, "per unit, bottom to top (mean over seeds)")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in claim.arms:
        seeds = values.get((arm.name, metric), [])
        metrics = runs.get(arm.name, [])
        diverged = sum(1 for m in metrics if m.get("diverged"))
        parameters = sorted({m["parameters"] for m in metrics if m.get("parameters")})
        row = [arm.name, _pm(seeds), " ".join(f"{v:.3f}" for v in seeds), f"{diverged} of {len(metrics)}",
               ", ".join(f"{p:,}" for p in parameters) or "n/a"]
        if claim.metric == "cosine":
            row.insert(3, " ".join(f"{v:.3f}" for v in _unit_means(metrics)))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| check | left | right | difference | 2 se | verdict |", "|---|---|---|---|---|---|"]
    for outcome in outcomes:
        lines.append(f"| {outcome.statement} | {outcome.left:.3f} | {outcome.right:.3f} | {outcome.difference:+.3f} "
                     f"| {outcome.noise:.3f} | {outcome_words(outcome)} |")
    if png:
        lines += ["", f"![{claim.name}]({png})"]
    return decided, "\n".join(lines) + "\n"


def outcome_words(outcome: verdict.Outcome) -> str:
    """A check's verdict in the report; a check not shown says what more seeds would do."""
    if outcome.verdict != verdict.NOT_SHOWN or outcome.seeds < 2:
        return outcome.verdict
    if outcome.seeds_needed is None:
        return f"{outcome.verdict} (more seeds would not decide it: the difference lies between 0 and the margin)"
    return f"{outcome.verdict} (the same difference would decide it with {outcome.seeds_needed} seeds per arm)"


def _unit_means(metrics: Sequence[dict]) -> list[float]:
    per_seed = [m["cosine_units"] for m in metrics if m.get("cosine_units")]
    if not per_seed:
        return []
    return [sum(unit) / len(unit) for unit in zip(*per_seed, strict=True)]


def document(sections: Sequence[tuple[Claim, str, str]], header: str) -> str:
    """The whole markdown: `header`, a summary table of verdicts, then each claim's section."""
    lines = [header.rstrip(), "", "| claim | verdict | from |", "|---|---|---|"]
    for claim, decided, _ in sections:
        lines.append(f"| [`{claim.name}`](#{claim.name}) {claim.title} | **{decided}** | {claim.source} |")
    return "\n".join(lines) + "\n\n" + "\n".join(text for _, _, text in sections)


def plot(path: str, claim: Claim, runs: dict, chance: Optional[float] = None) -> bool:
    """One PNG per claim; False without matplotlib.

    Accuracy and loss claims: the held-out metric per epoch (mean over seeds, ± std shaded) and a
    bar per arm with its error bar. The cosine claim: each arm's cosine per unit, with error bars. The
    receptive-field claim: frames in the field against depth, a line per rule.
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np

    names = [arm.name for arm in claim.arms]
    if claim.metric == "cosine":
        figure, axis = plt.subplots(figsize=(6.5, 4))
        for i, name in enumerate(names):
            per_seed = np.array([m["cosine_units"] for m in runs.get(name, []) if m.get("cosine_units")])
            if per_seed.size:
                units = np.arange(1, per_seed.shape[1] + 1)
                axis.errorbar(units, per_seed.mean(0), yerr=per_seed.std(0), color=f"C{i}", marker="o",
                              capsize=3, label=name)
        axis.set_xlabel("unit (1 = bottom)")
        axis.set_ylabel("cosine to exact backprop")
        axis.legend(fontsize=8)
    elif claim.metric == "receptive_field":
        figure, axis = plt.subplots(figsize=(6.5, 4))
        modes = sorted({arm.changes["mode"] for arm in claim.arms})
        for i, mode in enumerate(modes):
            points = sorted((m["depth"], m["receptive_field"]) for arm in claim.arms if arm.changes["mode"] == mode
                            for m in runs.get(arm.name, []) if "depth" in m)
            if points:
                axis.plot(*zip(*points, strict=True), color=f"C{i}", marker="o", label=mode)
        axis.set_xlabel("units (depth)")
        axis.set_ylabel("frames in the temporal receptive field")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.legend(fontsize=8)
    else:
        figure, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4))
        key = HISTORY_KEY[claim.metric]
        for i, name in enumerate(names):
            histories = [m["history"].get(key, []) for m in runs.get(name, []) if not m.get("diverged")]
            length = min((len(h) for h in histories), default=0)
            if length:
                series = np.array([h[:length] for h in histories])
                epochs = np.arange(1, length + 1)
                curves.plot(epochs, series.mean(0), color=f"C{i}", marker="o", label=name)
                curves.fill_between(epochs, series.mean(0) - series.std(0), series.mean(0) + series.std(0),
                                    color=f"C{i}", alpha=0.2)
            finals = [execute.with_derived(m).get(claim.metric, math.nan) for m in runs.get(name, [])]
            finals = [value for value in finals if math.isfinite(value)]
            if finals:
                bars.bar(i, np.mean(finals), yerr=np.std(finals), color=f"C{i}", capsize=4)
                bars.plot([i] * len(finals), finals, "k.", markersize=4)
        if chance is not None:
            for axis in (curves, bars):
                axis.axhline(chance, color="k", linestyle="--", linewidth=1, label="chance")
        curves.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        curves.set_xlabel("epoch")
        curves.set_ylabel(METRIC_WORDS[claim.metric].replace(" (last epoch)", ""))
        curves.legend(fontsize=8)
        bars.set_xticks(range(len(names)))
        bars.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        bars.set_ylabel(f"final {METRIC_WORDS[claim.metric]}")
    figure.suptitle("\n".join(textwrap.wrap(f"{claim.name}: {claim.title}", 100)), fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True
