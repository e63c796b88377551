"""The evaluation written out: ``eval.json`` with every figure, ``report.md`` with plots a person can read.

Plots are PNG files drawn with matplotlib's Agg backend (no display needed):
``scores.png`` (genuine and impostor score distributions with the threshold),
``det.png`` (miss rate against false-alert rate, log-log), ``groups-<label>.png``
(per-group bars at the one threshold) and ``roc.png`` for a pairs file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lookout.evaluation.harness import clean

JSON_NAME, MARKDOWN_NAME = "eval.json", "report.md"


def write_report(doc: dict, out_dir: Path) -> dict[str, Path]:
    """Write eval.json, the plots and report.md into ``out_dir``; returns what was written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"json": out_dir / JSON_NAME}
    written["json"].write_text(json.dumps(clean(doc), indent=1, allow_nan=False) + "\n")
    plots = draw_plots(doc, out_dir)
    written.update(plots)
    written["markdown"] = out_dir / MARKDOWN_NAME
    written["markdown"].write_text(markdown(doc, {k: p.name for k, p in plots.items()}))
    return written


# -- plots -----------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def draw_plots(doc: dict, out_dir: Path) -> dict[str, Path]:
    plt = _plt()
    out: dict[str, Path] = {}
    raw, threshold = doc["raw"], doc["threshold"]["value"]

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    every = [v for k in ("impostor", "nonmated_max", "genuine") for v in raw[k] if v is not None]
    bins = np.linspace(min([*every, threshold]) - 0.01, max([*every, threshold]) + 0.01, 49)
    for key, label, colour in (
        ("impostor", "different people (1:1 impostor)", "tab:red"),
        ("nonmated_max", "strangers' best gallery score", "tab:orange"),
        ("genuine", "same person (genuine)", "tab:green"),
    ):
        values = [v for v in raw[key] if v is not None]
        if values:
            ax.hist(
                values,
                bins=bins,
                alpha=0.55,
                weights=np.full(len(values), 1 / len(values)),
                color=colour,
                label=f"{label} (n={len(values)})",
            )
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("similarity score (cosine)")
    ax.set_ylabel("share of each kind of comparison")
    ax.set_title("Score distributions: the further apart, the better")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out["scores"] = out_dir / "scores.png"
    fig.savefig(out["scores"])
    plt.close(fig)

    det = raw["det"]
    fpir = np.array([np.nan if v is None else v for v in det["fpir"]], float)
    fnir = np.array([np.nan if v is None else v for v in det["fnir"]], float)
    n_non, n_mated = doc["openset"]["nonmated_probes"], doc["openset"]["mated_probes"]
    if n_non and n_mated:
        floor_x, floor_y = 0.5 / n_non, 0.5 / n_mated
        fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
        ax.step(np.maximum(fpir, floor_x), np.maximum(fnir, floor_y), where="post", color="tab:blue", label="DET")
        at = doc["openset"]["at_threshold"]
        if at["fpir"] is not None and at["fnir"] is not None:
            ax.plot(
                max(at["fpir"], floor_x),
                max(at["fnir"], floor_y),
                "o",
                color="black",
                label=f"at threshold {threshold:.3f}",
            )
        for target in (1e-2, 3e-3, 1e-3):
            ax.axvline(target, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(min(1e-4, floor_x), 1.05)
        ax.set_ylim(min(1e-3, floor_y), 1.05)
        ax.set_xlabel(f"FPIR: share of strangers raising an alert (n={n_non})")
        ax.set_ylabel(f"FNIR: share of enrolled faces missed (n={n_mated})")
        ax.set_title("DET: lower left is better")
        ax.text(0.02, 0.02, "zero rates drawn at half of one error", transform=ax.transAxes, fontsize=7, color="grey")
        ax.legend(fontsize=7)
        fig.tight_layout()
        out["det"] = out_dir / "det.png"
        fig.savefig(out["det"])
        plt.close(fig)

    for g in doc["groups"]:
        names = list(g["groups"])
        figures = [
            ("fnir", "miss rate (FNIR)"),
            ("fpir", "false-alert rate (FPIR)"),
            ("fmr", "1:1 false-match rate"),
            ("fta", "failure to acquire"),
        ]
        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
        width = 0.8 / len(figures)
        for k, (key, label) in enumerate(figures):
            values = [g["groups"][n][key] for n in names]
            xs = np.arange(len(names)) + (k - len(figures) / 2 + 0.5) * width
            ax.bar(xs, [v if v is not None else 0 for v in values], width, label=label)
            for x, v in zip(xs, values):
                if v is None:
                    ax.text(x, 0.005, "n/a", ha="center", fontsize=6, rotation=90)
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels([f"{n}\n({g['groups'][n]['probes']} probes)" for n in names], fontsize=8)
        ax.set_ylabel("rate at the one threshold")
        ax.set_title(f"Per {g['attribute']} at threshold {g['threshold']:.3f}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        key = f"groups-{_slug(g['attribute'])}"
        out[key] = out_dir / f"{key}.png"
        fig.savefig(out[key])
        plt.close(fig)

    ver = doc.get("verification")
    if ver and ver.get("roc"):
        far = np.array(ver["roc"]["far"], float)
        tar = np.array(ver["roc"]["tar"], float)
        floor = 0.5 / max(1, ver["impostor_pairs"])
        fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
        ax.step(np.maximum(far, floor), tar, where="post")
        ax.set_xscale("log")
        ax.set_xlabel(f"FAR: impostor pairs accepted (n={ver['impostor_pairs']})")
        ax.set_ylabel(f"TAR: genuine pairs accepted (n={ver['genuine_pairs']})")
        ax.set_title("ROC (1:1 verification): upper left is better")
        fig.tight_layout()
        out["roc"] = out_dir / "roc.png"
        fig.savefig(out["roc"])
        plt.close(fig)
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "group"


# -- words -------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _ci(ci: dict | None) -> str:
    return "" if not ci else f" (95% interval {_pct(ci['low'])}-{_pct(ci['high'])})"


def _flag(t: dict) -> str:
    return "" if t.get("trustworthy") else " ⚠"


def markdown(doc: dict, plots: dict[str, str]) -> str:
    o, at = doc["openset"], doc["openset"]["at_threshold"]
    th = doc["threshold"]
    cal = doc["calibration"]
    enr, acq = doc["enrolment"], doc["acquisition"]
    mated, non = o["mated_probes"], o["nonmated_probes"]
    missed = at["fnir_trust"]["errors"]
    alerts = at["fpir_trust"]["errors"]
    lines = [
        "# Lookout evaluation report",
        "",
        f"Model **{doc['model']['name']}** ({doc['model']['precision']}, digest `{doc['model']['digest'][:12]}`), "
        f"data `{doc['dataset']['root'] or 'in memory'}`: {doc['dataset']['description']}. "
        f"Made {doc['created']} by lookout {doc['lookout_version']}.",
        "",
        "## In short",
        "",
        f"At the threshold **{th['value']:.3f}** ({th['source']}), of **{mated}** faces of enrolled people, "
        f"**{mated - missed}** were named correctly and **{missed}** were missed "
        f"(miss rate {_pct(at['fnir'])}{_ci(at['fnir_ci'])}); "
        f"{_pct(at['wrong_person_rate'])} of them were put to the wrong person. "
        f"Of **{non}** faces of people who are not enrolled, **{alerts}** raised a false alert "
        f"(false-alert rate {_pct(at['fpir'])}).",
        "",
        f"Ignoring the threshold, the right person came first for {_pct(o['rank1'])} of the faces found "
        f"(rank-1{_ci(o['rank1_ci'])}), and among the first five for {_pct(o['rank5'])}."
        + (f" ({o['rank5_note']}.)" if o.get("rank5_note") else ""),
        "",
        f"Same-person scores: median {doc['scores']['genuine'].get('median', 'n/a')}, lowest "
        f"{doc['scores']['genuine'].get('min', 'n/a')}. Different-person scores: median "
        f"{doc['scores']['impostor'].get('median', 'n/a')}, highest {doc['scores']['impostor'].get('max', 'n/a')}. "
        f"Separation d' = {_num(doc['scores']['dprime'])} (how many spreads apart the two are; above ~4 is "
        f"well separated, but a few outliers decide the errors).",
        "",
        "## How far to trust these figures",
        "",
        *[f"- {s}" for s in doc["trust"]],
        "- Figures marked ⚠ rest on fewer than 30 errors (Doddington's rule of 30) and can move a lot with more data.",
        "",
        "## What the threshold means for an operator",
        "",
        f"The threshold was chosen for a false-alert rate (FPIR) of {cal['target_fpir']:g} per stranger walking past, "
        f"at a gallery of {cal['gallery_size']} people, by the method **{cal['method']}** "
        f"from {cal['probe_count']} scores.",
        "",
        *[f"- {n}" for n in cal["notes"]],
        "",
        f"- As calibrated: {doc['operator']['calibrated']['text']}",
    ]
    if doc["operator"].get("data_cannot_rule_out"):
        lines.append(
            f"- What this data can actually confirm is weaker: with no false alert among {non} strangers, "
            f"the rate could still be {doc['operator']['data_cannot_rule_out']['fpir']:.2g}. "
            f"{doc['operator']['data_cannot_rule_out']['text']}"
        )
    lines += [
        "- A larger gallery means more chances for a stranger to look like someone enrolled: "
        "calibrate again when the gallery grows (the tools refuse a calibration made for a gallery half the size "
        "or a different model).",
        "- Every alert is a *candidate* for a person to check, never an identification: "
        "review it against the enrolled photos before anyone acts on it.",
        "",
        "## Open-set identification (the watchlist question)",
        "",
        f"Per {o['unit']}. A miss: the right person is not first, or scores below the threshold. "
        "A false alert: a stranger's best score reaches the threshold.",
        "",
        "| figure | value | errors / trials |",
        "|---|---|---|",
        f"| miss rate (FNIR) at {th['value']:.3f} | {_pct(at['fnir'])}{_ci(at['fnir_ci'])}{_flag(at['fnir_trust'])} "
        f"| {missed} / {mated} |",
        f"| false-alert rate (FPIR) at {th['value']:.3f} | {_pct(at['fpir'])}{_flag(at['fpir_trust'])} "
        f"| {alerts} / {non} |",
        f"| wrong person named at {th['value']:.3f} | {_pct(at['wrong_person_rate'])} | |",
        f"| rank-1 hit rate | {_pct(o['rank1'])}{_ci(o['rank1_ci'])}{_flag(o['rank1_trust'])} "
        f"| {o['rank1_trust']['errors']} / {o['rank1_trust']['trials']} |",
        f"| rank-5 hit rate | {_pct(o['rank5'])} | |",
    ]
    for e in o["fnir_at_fpir"]:
        if e["measurable"]:
            lines.append(
                f"| FNIR at FPIR {e['target_fpir']:g} (threshold {e['threshold']:.3f}) | {_pct(e['fnir'])}"
                f"{_ci(e.get('fnir_ci'))}{_flag(e['fpir_trust'])} | |"
            )
        else:
            lines.append(f"| FNIR at FPIR {e['target_fpir']:g} | not measurable: {e['reason']} | |")
    z = o.get("fnir_at_zero_false_alerts")
    if z:
        lines.append(
            f"| FNIR with no false alert on this data (threshold {z['threshold']:.3f}) | {_pct(z['fnir'])} ⚠ "
            f"| FPIR only known to be below {z['fpir_upper_95']:.2g} |"
        )
    lines += [""]
    if "scores" in plots:
        lines += [
            f"![score distributions]({plots['scores']})",
            "",
            "Green: a face against the same person's enrolled photos. Red: against everyone else. "
            "Orange: each stranger's best match in the whole gallery, which is what raises false alerts. "
            "The dashed line is the threshold: green to its left are misses, red/orange to its right are "
            "false alerts.",
            "",
        ]
    if "det" in plots:
        lines += [
            f"![DET curve]({plots['det']})",
            "",
            "Each point of the curve is one possible threshold: moving right accepts more false alerts "
            "to miss fewer people. Dotted lines mark FPIR 1e-2, 3e-3 and 1e-3.",
            "",
        ]
    lines += [
        "## Enrolment and capture",
        "",
        f"- Failure to enrol: {enr['photos']['failures']} of {enr['photos']['attempts']} enrolment photos "
        f"({_pct(enr['photos']['rate'])}) gave no usable face{_reasons(enr['photos'])}; "
        f"{enr['people']['failures']} of {enr['people']['attempts']} people could not be enrolled at all"
        + (f" ({', '.join(enr['people']['failed'])})" if enr["people"]["failed"] else "")
        + ".",
        f"- Failure to acquire: {acq['failures']} of {acq['attempts']} probes ({_pct(acq['rate'])}) gave no usable "
        f"face{_reasons(acq)}. A device skips these faces, so for an enrolled person they count as misses above.",
    ]
    for f in enr["photos"]["failed"] + acq["failed"]:
        lines.append(f"  - `{f['item']}` ({f['person']}): {', '.join(f['reasons'])}")
    lines += [""]
    for g in doc["groups"]:
        lines += _group_section(g, plots.get(f"groups-{_slug(g['attribute'])}"))
    ver = doc.get("verification")
    if ver:
        lines += _verification_section(ver, plots.get("roc"))
    lines += [
        "## Words used",
        "",
        "- **Score**: cosine similarity of two face embeddings, -1..1; higher means more alike.",
        "- **Mated probe**: a face of someone who is enrolled. **Non-mated probe**: someone who is not.",
        "- **FNIR** (miss rate) and **FPIR** (false-alert rate): see above; the two trade against each other "
        "through the threshold.",
        "- **FMR / FAR**: the share of single comparisons between two different people that pass the threshold. "
        "FPIR grows roughly as FMR times the number of people enrolled.",
        "- **95% interval**: the range the figure would likely fall in if measured again on other people; "
        "computed by resampling people, not photos.",
        "",
    ]
    return "\n".join(lines)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _reasons(f: dict) -> str:
    return f" ({', '.join(f'{k}: {v}' for k, v in f['reasons'].items())})" if f["reasons"] else ""


def _ratio(r: dict) -> str:
    if r.get("ratio") is None:
        return r.get("note", "n/a")
    return f"{r['ratio']:.2f}x" + (f" ({r['note']})" if r.get("note") else "")


def _group_section(g: dict, plot: str | None) -> list[str]:
    lines = [
        f"## Per {g['attribute']}",
        "",
        f"All at the one threshold {g['threshold']:.3f}, as a deployment runs. A max/min ratio far above 1 "
        "means one group fares worse (NIST IR 8280 found 2-5x more false positives for women and 10-100x for "
        "some groups in many algorithms).",
        "",
        "| group | probes | people | miss rate | false-alert rate | 1:1 false matches | rank-1 | failed to acquire |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in g["groups"].items():
        lines.append(
            f"| {name} | {v['probes']} | {v['people']} | {_pct(v['fnir'])}{_flag(v['fnir_trust']) if v['mated'] else ''} "
            f"| {_pct(v['fpir'])}{_flag(v['fpir_trust']) if v['nonmated'] else ''} "
            f"| {_pct(v['fmr'], 2)}{_flag(v['fmr_trust'])} | {_pct(v['rank1'])} | {_pct(v['fta'])} |"
        )
    r = g["max_min_ratio"]
    lines.append(
        f"| **max/min** | | | {_ratio(r['fnir'])} | {_ratio(r['fpir'])} | {_ratio(r['fmr'])} "
        f"| {_ratio(r['rank1'])} | {_ratio(r['fta'])} |"
    )
    lines.append("")
    if plot:
        lines += [f"![per {g['attribute']}]({plot})", ""]
    return lines


def _verification_section(v: dict, plot: str | None) -> list[str]:
    lines = [
        "## 1:1 verification (pairs file)",
        "",
        f"{v['compared_pairs']} pairs compared ({v['genuine_pairs']} same person, {v['impostor_pairs']} "
        f"different), {v['failed_to_acquire']} left out because a photo gave no usable face.",
        "",
        f"- Accuracy at the best threshold ({v['best_threshold']:.3f}): {_pct(v['best_accuracy'])}"
        f"{_ci(v.get('best_accuracy_ci'))}. The threshold is fitted on the same pairs, so this is optimistic.",
        f"- Equal error rate: {_pct(v['eer'])}; d' = {_num(v['dprime'])}.",
    ]
    for e in v["tar_at_far"]:
        if e["measurable"]:
            lines.append(
                f"- TAR at FAR {e['target_far']:g}: {_pct(e['tar'])} (threshold {e['threshold']:.3f})"
                f"{_flag(e['far_trust'])}"
            )
        else:
            lines.append(f"- TAR at FAR {e['target_far']:g}: not measurable, {e['reason']}")
    lines.append("")
    if plot:
        lines += [f"![ROC]({plot})", ""]
    return lines


def summary_lines(doc: dict) -> list[str]:
    """A few lines for the terminal."""
    o, at = doc["openset"], doc["openset"]["at_threshold"]
    return [
        f"model {doc['model']['name']} ({doc['model']['precision']}): {doc['dataset']['description']}",
        f"threshold {doc['threshold']['value']:.3f} ({doc['threshold']['source']}, {doc['calibration']['method']})",
        f"FNIR {_pct(at['fnir'])}  FPIR {_pct(at['fpir'])}  rank-1 {_pct(o['rank1'])}  rank-5 {_pct(o['rank5'])}  "
        f"d' {_num(doc['scores']['dprime'])}",
        f"FTE {_pct(doc['enrolment']['photos']['rate'])} of photos  FTA {_pct(doc['acquisition']['rate'])} of probes",
        *(
            f"{e['target_fpir']:g}: " + (f"FNIR {_pct(e['fnir'])}" if e["measurable"] else "not measurable")
            for e in o["fnir_at_fpir"]
        ),
    ]


def comparison(docs: list[dict]) -> dict:
    """The same evaluation under several models, side by side (e.g. FP32 against INT8)."""
    rows = []
    for d in docs:
        o, at, speed = d["openset"], d["openset"]["at_threshold"], d.get("speed") or {}
        rows.append(
            {
                "model": d["model"]["name"],
                "precision": d["model"]["precision"],
                "digest": d["model"]["digest"],
                "rank1": o["rank1"],
                "rank5": o["rank5"],
                "dprime": d["scores"]["dprime"],
                "genuine_min": d["scores"]["genuine"].get("min"),
                "genuine_median": d["scores"]["genuine"].get("median"),
                "impostor_max": d["scores"]["impostor"].get("max"),
                "threshold": d["threshold"]["value"],
                "threshold_source": d["threshold"]["source"],
                "fnir": at["fnir"],
                "fpir": at["fpir"],
                "ms_per_face_batch1": (speed.get("batch1") or {}).get("median_ms"),
                "p95_ms_batch1": (speed.get("batch1") or {}).get("p95_ms"),
                "faces_per_s_batch8": (speed.get("batch8") or {}).get("faces_per_s"),
                "load_1min": speed.get("load_1min"),
            }
        )
    base = rows[0]
    for r in rows[1:]:
        if base["ms_per_face_batch1"] and r["ms_per_face_batch1"]:
            r["speedup_batch1"] = base["ms_per_face_batch1"] / r["ms_per_face_batch1"]
        if base["dprime"] is not None and r["dprime"] is not None:
            r["dprime_change"] = r["dprime"] - base["dprime"]
        if base["rank1"] is not None and r["rank1"] is not None:
            r["rank1_change"] = r["rank1"] - base["rank1"]
    return {"dataset": docs[0]["dataset"], "rows": rows}


def write_comparison(docs: list[dict], out_dir: Path) -> Path:
    comp = comparison(docs)
    out_dir = Path(out_dir)
    (out_dir / "comparison.json").write_text(json.dumps(clean(comp), indent=1, allow_nan=False) + "\n")
    lines = [
        "# Same evaluation, different models",
        "",
        f"Data: {comp['dataset']['description']}. Each model has its own threshold, calibrated the same way "
        "on the same data. Speed measured during the run (see the CPU load: a shared CPU slows every figure).",
        "",
        "| model | precision | rank-1 | d' | same-person min / median | different-person max | threshold "
        "| miss rate | false-alert rate | ms/face (batch 1, median / p95) | faces/s (batch 8) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in comp["rows"]:
        speed = f"{r['ms_per_face_batch1']:.2f} / {r['p95_ms_batch1']:.2f}" if r["ms_per_face_batch1"] else "n/a"
        if r.get("speedup_batch1"):
            speed += f" ({r['speedup_batch1']:.2f}x)"
        lines.append(
            f"| {r['model']} | {r['precision']} | {_pct(r['rank1'])} | {_num(r['dprime'])} "
            f"| {r['genuine_min']} / {r['genuine_median']} | {r['impostor_max']} | {r['threshold']:.3f} "
            f"| {_pct(r['fnir'])} | {_pct(r['fpir'])} | {speed} "
            f"| {r['faces_per_s_batch8']:.0f} | {r['load_1min']} |"
        )
    lines += [
        "",
        "A lower-precision model is worth making the default only when rank-1 and d' are unchanged "
        "within what this data can resolve, and its threshold is re-calibrated (never reuse the FP32 one).",
        "",
    ]
    path = out_dir / "comparison.md"
    path.write_text("\n".join(lines))
    return path


__all__ = ["comparison", "draw_plots", "markdown", "summary_lines", "write_comparison", "write_report"]
