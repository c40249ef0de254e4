"""Markdown report and bar chart of ``eval/metrics.json``."""

from __future__ import annotations

from cemg_ray import artifacts
from cemg_ray.plotting import pyplot
from cemg_ray.store import Store


def metrics_markdown(metrics: dict, ks: list[int]) -> str:
    cols = [f"{m}@{k}" for k in ks for m in ("HR", "NDCG")]
    lines = ["# Evaluation", "",
             "Leave-one-out, full ranking of the catalog, one target per user. Cold-start: targets with "
             "at most the configured number of training interactions.", ""]
    for part in ("overall", "cold_start"):
        lines += [f"## {part.replace('_', '-')}", "", "| model | users | " + " | ".join(cols) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        for name, m in metrics.items():
            users = m["users"] if part == "overall" else m.get("cold_start_users", "")
            vals = " | ".join(f"{m[part].get(c, float('nan')):.4f}" for c in cols)
            lines.append(f"| {name} | {users} | {vals} |")
        lines.append("")
    lines += ["Standard errors over the users (a gap of a few of these is more than noise):", ""]
    for name, m in metrics.items():
        for part in ("overall", "cold_start"):
            se = m.get(f"{part}_se", {})  # absent in metrics written before standard errors were kept
            if se:
                figures = ", ".join(f"{c} {se[c]:.4f}" for c in cols if c in se)
                lines.append(f"- {name}, {part.replace('_', '-')}: {figures}")
    lines.append("")
    return "\n".join(lines)


def write_report(store: Store, metrics: dict, ks: list[int]) -> None:
    store.write_text(artifacts.EVAL_REPORT, metrics_markdown(metrics, ks))
    plt = pyplot()

    names = list(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, part in zip(axes, ("overall", "cold_start")):
        width = 0.8 / max(1, len(names))
        for j, name in enumerate(names):
            vals = [metrics[name][part].get(f"NDCG@{k}", 0.0) for k in ks]
            ax.bar([i + j * width for i in range(len(ks))], vals, width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(ks))], [f"NDCG@{k}" for k in ks])
        ax.set_title(part.replace("_", "-"))
    axes[0].legend(fontsize=8)
    store.write_figure(artifacts.EVAL_FIGURE, fig)
    plt.close(fig)
