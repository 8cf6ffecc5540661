"""Server-side SVG plots for the lead, scoring and training pages: plain strings, no JavaScript,
titles on every mark so a hover shows the number behind it. Text is escaped here."""

from __future__ import annotations

from django.utils.html import escape
from django.utils.safestring import mark_safe

from labelhub.dimensions import DIMENSIONS, SCORE_MAX, SCORE_MIN

PALETTE = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096", "#b7791f")


def progress_svg(progress: list) -> str:
    """One stacked bar per round (``name``, ``complete``, ``in_progress``, ``untouched``,
    ``total``): complete / in progress / untouched."""
    width, bar_h, gap, label_w = 560, 18, 8, 150
    parts = []
    colours = (("complete", "#38a169"), ("in_progress", "#ecc94b"), ("untouched", "#cbd5e0"))
    for i, row in enumerate(progress):
        y = i * (bar_h + gap)
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{escape(row.name)}</text>')
        x = float(label_w)
        for attr, colour in colours:
            value = getattr(row, attr)
            w = (width - label_w - 60) * value / row.total if row.total else 0
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colour}">'
                f"<title>{attr.replace('_', ' ')}: {value}</title></rect>"
            )
            x += w
        parts.append(
            f'<text x="{width - 55}" y="{y + 13}" font-size="12">{row.complete}/{row.total}</text>'
        )
    height = max(1, len(progress)) * (bar_h + gap)
    return _svg(width, height, "".join(parts), "Progress per round")


def histogram_svg(by_source: dict[str, list[int]]) -> str:
    """Share of ratings scoring 1..5, one bar per source in each score group."""
    width, height, pad = 260, 120, 20
    sources = list(by_source)
    group_w = (width - pad) / (SCORE_MAX - SCORE_MIN + 1)
    bar_w = max(2.0, (group_w - 6) / max(1, len(sources)))
    parts = []
    for s, source in enumerate(sources):
        counts = by_source[source]
        total = sum(counts) or 1
        for i, n in enumerate(counts):
            h = (height - pad - 4) * n / total
            x = pad + i * group_w + s * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(source)}: score {i + SCORE_MIN}, '
                f"{n} ratings ({100 * n / total:.0f}%)</title></rect>"
            )
    for i in range(SCORE_MAX - SCORE_MIN + 1):
        parts.append(
            f'<text x="{pad + i * group_w + group_w / 2 - 3:.1f}" y="{height - 5}" font-size="11">{i + SCORE_MIN}</text>'
        )
    return _svg(width, height, "".join(parts), "Score distribution by source")


def alpha_svg(alpha: dict[str, dict[str, float | None]]) -> str:
    """Horizontal bars of alpha per dimension (interval dark, ordinal light), axis 0..1."""
    width, row_h, label_w = 520, 26, 170
    parts = []
    for i, dim in enumerate(DIMENSIONS):
        y = i * row_h
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{escape(dim.name)}</text>')
        for j, (level, colour) in enumerate((("interval", "#2b6cb0"), ("ordinal", "#90cdf4"))):
            value = alpha[level][dim.key]
            w = (width - label_w - 50) * max(0.0, value) if value is not None else 0
            text = "n/a" if value is None else f"{value:.2f}"
            parts.append(
                f'<rect x="{label_w}" y="{y + j * 10 + 2}" width="{w:.1f}" height="9" fill="{colour}">'
                f"<title>{level} alpha: {text}</title></rect>"
            )
        shown = alpha["interval"][dim.key]
        parts.append(
            f'<text x="{width - 45}" y="{y + 14}" font-size="12">{"n/a" if shown is None else f"{shown:.2f}"}</text>'
        )
    return _svg(
        width, len(DIMENSIONS) * row_h, "".join(parts), "Krippendorff's alpha per dimension"
    )


def _svg(width: int, height: int, body: str, title: str) -> str:
    return mark_safe(
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{body}</svg>'
    )


def scatter_svg(points: list[tuple[float, float]], *, title: str, size: int = 240) -> str:
    """Predicted (y) against human (x) reward, both in [0, 1], with the y = x line."""
    pad = 30
    inner = size - 2 * pad

    def xy(human: float, predicted: float) -> tuple[float, float]:
        return pad + inner * human, pad + inner * (1 - predicted)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        f'aria-label="{escape(title)}: predicted vs human" class="scatter">',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#a0aec0"/>',
        f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#cbd5e0" stroke-dasharray="4 3"/>',
        f'<text x="{size / 2}" y="{size - 6}" font-size="11" text-anchor="middle">human</text>',
        f'<text x="10" y="{size / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 10 {size / 2})">predicted</text>',
        f'<text x="{pad}" y="{pad - 8}" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    for human, predicted in points:
        x, y = xy(min(max(human, 0), 1), min(max(predicted, 0), 1))
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#2b6cb0" fill-opacity="0.6">'
            f"<title>human {human:.2f}, predicted {predicted:.2f}</title></circle>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def rounds_svg(
    rounds: list[str],
    series: dict[str, list[dict]],
    *,
    title: str,
    low: float,
    high: float,
    reference: float | None = None,
    width: int = 320,
    height: int = 170,
) -> str:
    """Values across rounds: x = round (in order), one coloured line per series; each point is
    ``{"x": round index, "y": value, "title": hover text, "href": link, "low"/"high": optional
    interval drawn as a bar}``. ``reference`` draws a dashed level (e.g. a 0.5 win rate)."""
    pad_l, pad_r, pad_t, pad_b = 34, 10, 22, 34
    inner_w, inner_h = width - pad_l - pad_r, height - pad_t - pad_b
    legend_rows = max(1, -(-len(series) // 2))  # two legend entries a row, under the plot
    height += (legend_rows - 1) * 12
    step = inner_w / max(1, len(rounds))  # each round in the middle of its own column

    def px(index: float) -> float:
        return pad_l + (index + 0.5) * step

    def py(value: float) -> float:
        value = min(max(value, low), high)
        return pad_t + inner_h * (1 - (value - low) / (high - low))

    parts = [
        f'<text x="{pad_l}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{inner_w}" height="{inner_h}" fill="none" '
        'stroke="#cbd5e0"/>',
        f'<text x="2" y="{pad_t + 9}" font-size="10">{high:g}</text>',
        f'<text x="2" y="{pad_t + inner_h}" font-size="10">{low:g}</text>',
    ]
    if reference is not None:
        y = py(reference)
        parts.append(
            f'<line x1="{pad_l}" y1="{y:.1f}" x2="{pad_l + inner_w}" y2="{y:.1f}" '
            'stroke="#a0aec0" stroke-dasharray="4 3"/>'
        )
    for index, name in enumerate(rounds):
        parts.append(
            f'<text x="{px(index):.1f}" y="{pad_t + inner_h + 12}" font-size="10" '
            f'text-anchor="middle">{escape(name[: max(6, int(step // 6))])}<title>'
            f"{escape(name)}</title></text>"
        )
    for s, (name, points) in enumerate(series.items()):
        colour = PALETTE[s % len(PALETTE)]
        shown = [p for p in points if p.get("y") is not None]
        if len(shown) > 1:
            path = " ".join(
                f"{'M' if i == 0 else 'L'}{px(p['x']):.1f},{py(p['y']):.1f}"
                for i, p in enumerate(shown)
            )
            parts.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for p in shown:
            x, y, value = px(p["x"]), py(p["y"]), p["y"]
            mark = []
            if p.get("low") is not None and p.get("high") is not None:
                mark.append(
                    f'<line x1="{x:.1f}" y1="{py(p["low"]):.1f}" x2="{x:.1f}" '
                    f'y2="{py(p["high"]):.1f}" stroke="{colour}" stroke-width="2" '
                    'stroke-opacity="0.5"/>'
                )
            mark.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                f"<title>{escape(p.get('title') or f'{name}: {value:.3f}')}</title></circle>"
            )
            body = "".join(mark)
            if p.get("href"):
                body = f'<a href="{escape(p["href"])}">{body}</a>'
            parts.append(body)
        legend_x = pad_l + (s % 2) * (inner_w / 2)
        legend_y = pad_t + inner_h + 26 + (s // 2) * 12
        parts.append(
            f'<text x="{legend_x:.1f}" y="{legend_y}" font-size="10" fill="{colour}">'
            f"● {escape(name[:24])}</text>"
        )
    return _svg(width, height, "".join(parts), title)
