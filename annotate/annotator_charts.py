"""Charts of the lead's annotator pages: the agreement heat map (matplotlib SVG) and inline SVG sparklines."""

import numpy as np
from django.utils.safestring import mark_safe

from annotate.charts import _figure, _svg

MAX_CELL_LABELS = 16  # more annotators than this: no figures printed in the cells


def agreement_heatmap(usernames: list[str], agreement: list[list[float | None]], order: list[int]) -> str:
    """Annotator × annotator agreement (share of shared pairs answered alike), annotators in `order` (camps together);
    grey where too few pairs were shared."""
    n = len(usernames)
    if n == 0:
        return ""
    matrix = np.array([[np.nan if x is None else x for x in agreement[i]] for i in order], dtype=float)[:, order]
    names = [usernames[i] for i in order]
    side = min(10.0, 2.0 + 0.18 * n)
    figure, axes = _figure(size=(side + 1.2, side))
    ax = axes[0][0]
    cmap = __import__("matplotlib").colormaps["RdYlGn"].copy()
    cmap.set_bad("#d0d7de")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(n), names, rotation=90, fontsize=7 if n > 20 else 8)
    ax.set_yticks(range(n), names, fontsize=7 if n > 20 else 8)
    ax.spines[:].set_visible(False)
    if n <= MAX_CELL_LABELS:
        for i in range(n):
            for j in range(n):
                if not np.isnan(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6)
    figure.colorbar(image, ax=ax, shrink=0.7, label="agreement")
    ax.set_title("agreement on shared pairs")
    return _svg(figure)


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
