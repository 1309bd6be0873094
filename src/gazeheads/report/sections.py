"""The report's sections in the paper's order: overview, discovery, steering (one subsection per
protocol), tracking. Each returns ReportSections, or none when the run has nothing for it."""

from __future__ import annotations

from .. import plots
from . import examples, figures
from .page import Figure, ReportSection, Table
from .run import RunData, interval, percent

STEERED = ("gaze", "random", "all")


def _accuracy_cell(row: dict | None) -> str:
    if row is None or not row.get("n"):
        return ""
    text = f"{percent(row['accuracy'])} {interval(row)}"
    if row.get("junk_rate"):
        text += f" ({percent(row['junk_rate'], 0)} junk)"
    return text


def overview(data: RunData) -> ReportSection:
    """What was run, and the headline numbers in one table."""
    groups = [(p, "all" if p == "coco" else None) for p in data.protocols() if p != "topk"]
    k, total = data.k(), data.n_heads()
    conditions = [c for c in STEERED if any(r["condition"] == c for r in data.rows if r["protocol"] != "topk")]
    rows = []
    for protocol, size in groups:
        by = {r["condition"]: r for r in data.rows_of(protocol, size)}
        chance = data.chance(protocol, size)
        rows.append([data.protocol_name(protocol) + (", all sizes" if size else "")]
                    + [_accuracy_cell(by.get(c)) for c in conditions]
                    + [_accuracy_cell(data.unsteered_of(protocol, size)), percent(chance) if chance else ""])
    heads = [data.condition_name(c, total if c == "all" else k, short=True) for c in conditions]
    parts = [f"Model: {data.model_name()}."]
    if data.settings.get("data"):
        parts.append(f"Data: {data.settings['data']}.")
    if k:
        parts.append(f"Steering uses K = {k} heads" + (f" of {total}" if total else "")
                     + (f"; the random control draws them from the heads whose gaze score is in the lowest "
                        f"{data.percentile():g}% (outside the top K)." if data.percentile() is not None else "."))
    if data.settings.get("judge"):
        parts.append(f"Answers are judged by the {data.settings['judge']} judge.")
    tables = []
    if rows:
        tables.append(Table(["Protocol"] + heads + ["Unsteered", "Chance"], rows,
                            "Accuracy: share of answers that describe the target, with 95% bootstrap intervals over "
                            "strips (scenes); junk answers count as misses."))
    return ReportSection("Overview", " ".join(parts), tables=tables, anchor="overview")


def discovery(data: RunData) -> list[ReportSection]:
    """Gaze scores of every head: histogram, layer x head map, panel matrices, the top heads."""
    ranking = data.ranking
    if ranking is None:
        return []
    k = data.k()
    out = data.run_dir
    n, total = ranking.n_strips, ranking.shape.total
    shape = f"{ranking.shape.n_layers} layers x {ranking.shape.n_heads} heads"
    chance = 1 / ranking.n_panels
    above = int((ranking.scores > chance).sum())
    figs = [
        Figure(plots.score_histogram(ranking, out / "discovery_score_histogram.png", top_k=k),
               f"Gaze scores of all {total} heads ({shape}) on {n} strips, log scale. Dotted: chance "
               f"(1/{ranking.n_panels}, a head that spreads all its attention evenly over the image); {above} heads "
               f"score above it." + (f" Dashed: the top-{k} cut." if k else "")),
        Figure(plots.score_map(ranking, out / "discovery_score_map.png", top_k=k),
               f"Gaze score of every head by layer and head (counting from 0), {n} strips."
               + (f" The top-{k} heads, the ones steered, are outlined." if k else "")),
        Figure(plots.panel_matrices(ranking, out / "discovery_panel_matrices.png"),
               f"Queried x attended panel matrices, averaged over {n} strips, of the four highest- and four "
               f"lowest-scoring heads, on one colour scale: each cell is the attention mass of the question's last "
               f"token on one panel's image tokens. A gaze head puts its mass on the diagonal. LlHh = layer l, "
               f"head h, counting from 0."),
    ]
    shown = ranking.ordered()[: max(k or 0, 10)]
    table = Table(["Rank", "Head", "Gaze score"],
                  [[str(i), f"{plots.head_name(l, h)} (layer {l}, head {h})", f"{s:.3f}"] for i, (l, h, s) in
                   enumerate(shown, 1)],
                  f"The {len(shown)} highest-scoring heads" + (f" (the top {k} are steered)" if k else "") + ".")
    intro = (f"Every head of {ranking.model_id} ({shape} = {total} heads) is scored on {n} strips"
             + (f" ({ranking.source})" if ranking.source else "") + ". For each strip and panel k the model reads "
             "a question about panel k; the attention of the question's last token is summed over each panel's "
             "image tokens, giving a queried x attended panel matrix per head. The gaze score is the mean of its "
             "diagonal: the share of attention a head puts on the panel being asked about.")
    return [ReportSection("Discovery", intro, figs, [table], anchor="discovery")]


def steering(data: RunData) -> list[ReportSection]:
    """The grouped figures and tables, then one subsection per protocol with its figures and examples."""
    figs = [f for f in (figures.accuracy_overview(data), figures.per_panel(data), figures.unsteered_panels(data))
            if f is not None]
    k = data.k()
    heads = "; ".join(data.condition_name(c, data.n_heads() if c == "all" else k)
                      for c in STEERED if any(r["condition"] == c for r in data.rows))
    intro = (f"Each held-out strip is asked a question once per target panel while the chosen heads are steered "
             f"to that panel (the bias +B on the target's image tokens, -B on the other image tokens). Head sets: "
             f"{heads}. An answer scores when the judge places it on the target; the unsteered answer of every "
             f"strip is recorded too and shown beside the steered ones.")
    sections = [ReportSection("Steering", intro, figs, [_protocols_table(data), _results_table(data)],
                              anchor="steering")]
    pictures = examples.Pictures(data)
    for protocol in data.protocols():
        sections.append(_protocol_section(data, protocol, pictures))
    return sections


def _protocols_table(data: RunData) -> Table:
    rows = []
    for protocol in data.protocols():
        s = data.protocol_settings.get(protocol) or {}
        tokens = f"{s['segment_tokens']} per segment" if s.get("segment_tokens") else str(s.get("max_new_tokens", ""))
        steer = f"{s.get('mode', '')}, B = {s.get('strength', 0):g}, {s.get('phase', '')}" if s else ""
        rows.append([data.protocol_name(protocol), s.get("question", ""), tokens, steer,
                     str(data.n_strips(protocol))])
    return Table(["Protocol", "Question asked", "Tokens generated", "Steering", "Strips or scenes"], rows,
                 "What each protocol asks and how it steers.")


def _results_table(data: RunData) -> Table:
    rows = []
    for protocol in data.protocols():
        for size in [None] if protocol != "coco" else ["all", "small", "medium", "large"]:
            found = data.rows_of(protocol, size)
            if not found:
                continue
            name = data.protocol_name(protocol) + (f", {'all sizes' if size == 'all' else size}" if size else "")
            chance = data.chance(protocol, size)
            for r in found:
                k = r["k"]
                rows.append([name, data.condition_name(r["condition"], k, short=True), str(r["n"]),
                             str(r["n_clusters"]), percent(r["accuracy"]), interval(r), percent(r["junk_rate"]),
                             percent(chance) if chance is not None else ""])
            if protocol == "topk":
                continue
            u = data.unsteered_of(protocol, size)
            if u is not None:
                rows.append([name, "unsteered", str(u["n"]), f"{u['strips_placed']} of {u['strips']} placed",
                             percent(u["accuracy"]), interval(u), "", ""])
    headers = ["Protocol", "Head set", "Answers", "Strips (scenes)", "Accuracy", "95% interval", "Junk", "Chance"]
    return Table(headers, rows,
                 "Every result of the run. Intervals resample whole strips (scenes) 10,000 times. Unsteered rows "
                 "score the unsteered answers against the same targets, over the strips whose unsteered answer the "
                 "judge placed.")


def _protocol_section(data: RunData, protocol: str, pictures: examples.Pictures) -> ReportSection:
    name = data.protocol_name(protocol)
    question = data.question(protocol)
    intro = f'Question: "{question}"' if question else ""
    figs: list[Figure] = []
    tables: list[Table] = []
    rows = data.rows_of(protocol)
    if protocol == "topk":
        u = data.unsteered_of("topk")
        path = plots.topk_curve(rows, data.run_dir / "topk_curve.png", unsteered=u["accuracy"] if u else None)
        ks = sorted({r["k"] for r in rows})
        strips, n = rows[0]["n_clusters"], rows[0]["n"]
        figs.append(Figure(path, f"Accuracy against the number of heads steered, K = {', '.join(map(str, ks))}, "
                                 f"for the top-K gaze heads and K random non-gaze heads, with 95% intervals "
                                 f"(bands); {strips} strips x {n // max(1, strips)} targets per point."))
    elif protocol == "dynamic":
        steered = [r for r in data.records_of("dynamic") if r["condition"] in STEERED]
        labels = {c: data.condition_name(c, k, short=True) for c, k in {(r["condition"], r["k"]) for r in rows}}
        path = plots.dynamic_schedules(steered, data.run_dir / "dynamic_schedules.png", labels=labels)
        n = min(4, len({r["strip"] for r in steered}))
        figs.append(Figure(path, f"Scheduled panel (black steps) and the panel the judge places each segment on "
                                 f"(dots, one colour per head set) for the first {n} strips; missing dots are junk "
                                 f"segments."))
        tables.append(Table(["Head set", "Strips", "Segments on schedule", "Spearman (mean ± sd)",
                             "Spearman undefined (counted as 0)"],
                            [[data.condition_name(r["condition"], r["k"], short=True), str(r["n_strips"]),
                              f"{percent(r['accuracy'])} {interval(r)}",
                              f"{r['spearman_mean']:.2f} ± {r['spearman_std']:.2f}", str(r["spearman_undefined"])]
                             for r in rows],
                            "Rank correlation per strip between the schedule and the judged panels."))
        intro += ("\n\nThe target moves through a derangement of the panels (no panel in its reading-order place), "
                  "one segment each; every segment is judged on its own.")
        table = examples.dynamic_examples(data, pictures)
        tables += [table] if table else []
    elif protocol == "coco":
        fig = figures.boxes_by_size(data)
        figs += [fig] if fig else []
        table = examples.box_examples(data, pictures)
        tables += [table] if table else []
    else:
        table = examples.static_examples(data, protocol, pictures)
        tables += [table] if table else []
    return ReportSection(name, intro.strip(), figs, tables, anchor=f"steering-{protocol}", level=3)


def tracking(data: RunData) -> list[ReportSection]:
    """The unsteered narration tracked by gaze and control heads, and the steered narration."""
    info = data.tracking
    out = data.run_dir
    if not info or not (out / "tracking_unsteered.png").is_file():
        return []
    unsteered = info["unsteered"]
    n_tokens = len(unsteered.get("tokens", []))
    weighted = unsteered.get("gaze", {}).get("value_weighted")
    weighting = "value-weighted (each key's attention times the norm of its value vector)" if weighted else "raw"
    n_panels = len(unsteered.get("gaze", {}).get("regions", [[]])[0]) or 6
    separator = "." if data.synthetic() else None
    found = plots.narration_transitions(unsteered.get("tokens", []), n_panels, separator=separator)
    where = ("the separators between captions; Pk marks the k-th caption, as the model narrates the panels in "
             "reading order" if separator else 'the tokens where "Panel k:" begins')
    figs = [Figure(out / "tracking_unsteered.png",
                   f"Unsteered narration of strip {info['strip']} ({n_tokens} tokens), tracked by the "
                   f"{unsteered['gaze_heads']} (left) and by {unsteered['control_heads']} (right), on one colour "
                   f"scale: per generated token, each panel's share of the heads' image attention, {weighting}. "
                   f"Red dashed lines mark where the narration moves on to the next panel, labelled P1, P2, ... "
                   f"({len(found)} panel starts found at {where}); the red line marks the panel being narrated.")]
    steered = info.get("steered")
    if steered and (out / "tracking_steered.png").is_file():
        schedule = "-".join(map(str, steered.get("schedule", [])))
        figs.append(Figure(out / "tracking_steered.png",
                           f"Steered, for contrast: the same strip narrated while the {unsteered['gaze_heads']} are "
                           f"forced to the scheduled panel ({schedule}, {steered.get('segment_tokens')} tokens "
                           f"each; outlined), and tracked by those same heads. Their attention follows the schedule "
                           f"by construction; what the figure shows is whether the text follows (above)."))
    intro = (f'Unsteered narration: "{unsteered["text"]}"'
             + (f'\n\nSteered narration: "{steered["text"]}"' if steered else ""))
    return [ReportSection("Tracking", intro, figs, anchor="tracking")]
