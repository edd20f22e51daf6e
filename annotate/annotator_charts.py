"""Charts of the lead's annotator pages as inline SVG: the agreement heat map and sparklines."""

from django.utils.html import escape
from django.utils.safestring import mark_safe

MAX_CELL_LABELS = 16  # more annotators than this: no figures printed in the cells


def _colour(share: float) -> str:
    """Red (0) through yellow (0.5) to green (1)."""
    red, green = (1.0, share * 2) if share < 0.5 else (2 - share * 2, 1.0)
    return f"#{round(215 * red + 30):02x}{round(185 * green + 30):02x}50"


def agreement_heatmap(usernames: list[str], agreement: list[list[float | None]], order: list[int]) -> str:
    """Annotator × annotator agreement (share of shared pairs answered alike) as inline SVG, annotators in `order`
    (camps together); grey where too few pairs were shared. Drawn by hand rather than with matplotlib: at 50
    annotators matplotlib took about a second, these 2,500 rectangles a few milliseconds."""
    n = len(usernames)
    if n == 0:
        return ""
    cell = 14 if n > 20 else 26
    label = 8 + max(len(u) for u in usernames) * 6
    size = label + n * cell
    parts = [f'<svg class="heatmap" width="{size + 10}" height="{size + 10}" viewBox="0 0 {size + 10} {size + 10}" '
             f'role="img" aria-label="agreement between annotators" font-size="{9 if n > 20 else 11}">']
    for row, i in enumerate(order):
        y = label + row * cell
        parts.append(f'<text x="{label - 4}" y="{y + cell * 0.7:.1f}" text-anchor="end">{escape(usernames[i])}</text>')
        x0 = label + row * cell + cell * 0.6
        parts.append(f'<text transform="translate({x0:.1f},{label - 4}) rotate(-90)">{escape(usernames[i])}</text>')
        for col, j in enumerate(order):
            share = agreement[i][j]
            fill = "#d0d7de" if share is None else _colour(share)
            tip = "too few shared pairs" if share is None else f"{share:.2f}"
            parts.append(f'<rect x="{label + col * cell}" y="{y}" width="{cell - 1}" height="{cell - 1}" fill="{fill}">'
                         f'<title>{escape(usernames[i])} · {escape(usernames[j])}: {tip}</title></rect>')
            if n <= MAX_CELL_LABELS and share is not None:
                parts.append(f'<text x="{label + col * cell + cell / 2:.1f}" y="{y + cell * 0.65:.1f}" '
                             f'text-anchor="middle" font-size="8">{share:.2f}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))


def sparkline(points: list[float | None], *, width: int = 80, height: int = 18) -> str:
    """A tiny inline SVG line of values in [0, 1] (missing points skipped), with a dot on the last one."""
    known = [(i, p) for i, p in enumerate(points) if p is not None]
    if len(known) < 2:
        return ""
    step = (width - 4) / max(1, len(points) - 1)
    xy = [(2 + i * step, 2 + (1 - p) * (height - 4)) for i, p in known]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    last_x, last_y = xy[-1]
    # Numbers only: nothing here needs escaping.
    return mark_safe(
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="agreement over time"><polyline fill="none" stroke="#0969da" stroke-width="1.2" '
        f'points="{coords}"/><circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="1.8" fill="#0969da"/></svg>'
    )
