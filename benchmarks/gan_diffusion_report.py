"""Tables and plots of benchmarks/compare_gan_diffusion.py, from its results dict (results.json).

    write_report(json.loads(Path("runs/bench/.../results.json").read_text()), Path("runs/bench/..."))

table.md: quality (per-category pass rate, overall, FD with its real-vs-real floor), cost (parameters,
training images/s, sampling ms/image at batch 1, images/s at the largest batch, network evaluations
per image), the guidance / truncation sweeps and the sampler-steps table. curve.png: quality against
training minutes; tradeoff.png: pass rate against FD over the sweeps (as Imagen's CLIP-score vs FID curves);
steps.png: pass rate, FD and seconds per image against sampler steps. Plots use matplotlib (Agg).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown_tables(results: dict[str, Any]) -> str:
    """Quality table (per-category pass rate, FD) and cost table, then the sweeps, as markdown."""
    models = {k: v for k, v in results["models"].items() if "final" in v}
    fd_name = results["feature_net"]["name"]
    categories = list(dict.fromkeys(c for m in models.values() for c in m["final"]["categories"]))
    lines = [
        f"| model | {' | '.join(categories)} | overall | {fd_name} (floor) |",
        "| --- |" + " ---: |" * (len(categories) + 2),
    ]
    for name, m in models.items():
        final = m["final"]
        floor = f" ({final['fd_floor']:.3f})" if final["fd_floor"] is not None else ""
        cells = [_pct(final["categories"].get(c)) for c in categories]
        lines.append(
            f"| {name} | {' | '.join(cells)} | {_pct(final['pass_rate'])} | {final['fd']:.3f}{floor} |"
        )
    lines += [
        "",
        "| model | params (M, sampling) | params (M, trained) | train steps | train img/s "
        "| ms/image B=1 | img/s at B=max (max) | net evals / image |",
        "| --- |" + " ---: |" * 7,
    ]
    for name, m in models.items():
        t, s = m["training"], m["speed"]
        lines.append(
            f"| {name} | {m['sampling_params_m']:.2f} | {m['trained_params_m']:.2f} | {t['steps']} "
            f"| {t['train_images_per_second']:.1f} | {s['ms_per_image_b1']:.1f} "
            f"| {s['images_per_second_max_batch']:.1f} ({s['max_batch']}) | {m['nfe_per_image']:g} |"
        )
    for name, m in models.items():
        if m["sweep"]:
            lines += ["", f"{name} sweep | pass rate (%) | {fd_name}", "| --- | ---: | ---: |"]
            lines += [
                f"| {_label(r['settings'])} | {_pct(r['pass_rate'])} | {r['fd']:.3f} |" for r in m["sweep"]
            ]
        if m.get("steps"):
            lines += [
                "",
                "| sampler | steps | pass rate (%) | " + fd_name + " | net evals / image | s / image |",
                "| --- |" + " ---: |" * 5,
            ]
            lines += [
                f"| {r['settings']['sampler']} | {r['settings']['num_steps']} | {_pct(r['pass_rate'])} "
                f"| {r['fd']:.3f} | {r['nfe_per_image']:g} | {r['seconds_per_image']:.3f} |"
                for r in m["steps"]
            ]
    return "\n".join(lines) + "\n"


def _label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


def _figure(columns: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, columns, figsize=(6.4 * columns, 4.8), squeeze=False)


def plot_curve(results, path: Path) -> None:
    """Pass rate (or FD, for unscored domains) against training minutes, one line per model."""
    plt, fig, axes = _figure()
    ax, fd_name = axes[0][0], results["feature_net"]["name"]
    for name, m in results["models"].items():
        curve = m.get("curve") or []
        minutes = [p["train_seconds"] / 60 for p in curve]
        if curve and curve[0]["pass_rate"] is not None:
            rates = [100 * p["pass_rate"] for p in curve]
            errors = [
                [r - 100 * p["ci95"][0] for r, p in zip(rates, curve)],
                [100 * p["ci95"][1] - r for r, p in zip(rates, curve)],
            ]
            ax.errorbar(minutes, rates, yerr=errors, marker="o", capsize=3, label=name)
            ax.set_ylabel("pass rate, mean over suites (%)")
        else:
            ax.plot(minutes, [p["fd"] for p in curve], marker="o", label=name)
            ax.set_ylabel(f"{fd_name} (lower is better)")
    ax.set_xlabel("training time (minutes, wall clock)")
    ax.set_title(f"Quality against training time ({results['domain']}, {results['device']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tradeoff(results, path: Path) -> None:
    """Imagen-style: pass rate against FD over guidance (diffusion, per thresholding) and truncation (GAN)."""
    plt, fig, axes = _figure()
    ax, fd_name = axes[0][0], results["feature_net"]["name"]
    for name, m in results["models"].items():
        groups: dict[str, list] = {}
        for row in m.get("sweep") or []:
            key = (
                f"{name}, thresholding={row['settings']['thresholding']}"
                if "thresholding" in row["settings"]
                else name
            )
            groups.setdefault(key, []).append(row)
        for label, rows in groups.items():
            knob = "guidance_scale" if "guidance_scale" in rows[0]["settings"] else "truncation"
            scored = rows[0]["pass_rate"] is not None
            xs = [r["fd"] for r in rows] if scored else [r["settings"][knob] for r in rows]
            ys = [100 * r["pass_rate"] for r in rows] if scored else [r["fd"] for r in rows]
            ax.plot(xs, ys, marker="o", label=label)
            for x, y, r in zip(xs, ys, rows):
                ax.annotate(
                    f"{'w' if knob == 'guidance_scale' else 't'}={r['settings'][knob]:g}",
                    (x, y),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
            ax.set_xlabel(f"{fd_name} (lower is better)" if scored else "guidance scale w / truncation t")
            ax.set_ylabel("pass rate, mean over suites (%)" if scored else f"{fd_name} (lower is better)")
    ax.set_title(f"Alignment against {fd_name}: guidance and truncation sweeps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_steps(results, path: Path) -> None:
    """Diffusion: pass rate, FD and seconds per image against sampler steps, one line per sampler."""
    rows = (results["models"].get("diffusion") or {}).get("steps") or []
    plt, fig, axes = _figure(3)
    fd_name = results["feature_net"]["name"]
    panels = [
        ("pass_rate", "pass rate, mean over suites (%)", 100),
        ("fd", f"{fd_name} (lower is better)", 1),
        ("seconds_per_image", "sampling time (s / image, batched)", 1),
    ]
    for ax, (key, label, scale) in zip(axes[0], panels):
        for sampler in dict.fromkeys(r["settings"]["sampler"] for r in rows):
            mine = [r for r in rows if r["settings"]["sampler"] == sampler and r[key] is not None]
            ax.plot(
                [r["settings"]["num_steps"] for r in mine],
                [scale * r[key] for r in mine],
                marker="o",
                label=sampler,
            )
        ax.set_xscale("log")
        ax.set_xlabel("sampler steps (log scale)")
        ax.set_ylabel(label)
        ax.set_title(label.split(" (")[0].split(",")[0].capitalize() + " against steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path) -> dict[str, Path]:
    paths = {
        "json": out / "results.json",
        "table": out / "table.md",
        "curve": out / "curve.png",
        "tradeoff": out / "tradeoff.png",
        "steps": out / "steps.png",
    }
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["table"].write_text(markdown_tables(results))
    plot_curve(results, paths["curve"])
    plot_tradeoff(results, paths["tradeoff"])
    plot_steps(results, paths["steps"])
    print(paths["table"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return paths
