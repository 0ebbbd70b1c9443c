"""Self-contained inline SVG charts (line, bar, scatter, heat map) for the HTML report; standard library only."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, replace
from html import escape

# Okabe-Ito, ordered so that the low-contrast yellow comes last.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
WIDTH, HEIGHT = 640, 360
_CHAR_W = 6.2  # rough width of an 11px character, for layout only
_GRID, _AXIS, _MUTED = "#e6e6e6", "#333333", "#666666"
_TOP = 40
_ROT_DEG = 55  # rotation of crowded bar labels
_ROT = math.radians(_ROT_DEG)


@dataclass(frozen=True)
class LineSeries:
    """One line: (x, y, error half-width) points; y or the error may be None."""

    name: str
    points: list[tuple[float, float | None, float | None]]


@dataclass(frozen=True)
class Bar:
    """One bar: a value (None shows an empty "n/a" slot), an optional error half-width and sample count."""

    label: str
    value: float | None
    error: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class ScatterGroup:
    """One group of (x, y) points, drawn in one colour."""

    name: str
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class _Plot:
    """The plot area in pixels and the tick values that span it."""

    left: float
    top: float
    right: float
    bottom: float
    xt: list[float]
    yt: list[float]

    def sx(self, v: float) -> float:
        return self.left + (v - self.xt[0]) / (self.xt[-1] - self.xt[0]) * (self.right - self.left)

    def sy(self, v: float) -> float:
        return self.bottom - (v - self.yt[0]) / (self.yt[-1] - self.yt[0]) * (self.bottom - self.top)


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _c(v: float) -> str:
    return f"{v:.1f}"


def _g(v: float) -> str:
    return f"{v:.4g}"


def _num(v: object) -> float | None:
    """v as a finite float, or None (None, NaN, infinities and non-numbers are skipped)."""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _ticks(lo: float, hi: float, integer: bool = False, target: int = 5) -> list[float]:
    """Nice round ticks covering [lo, hi]; a zero span is widened first."""
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        pad = 1.0 if integer or abs(lo) < 1e-9 else abs(lo) * 0.1
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * mag for m in steps if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, float(round(step)))
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(round((end - start) / step) + 1)]


def _tick_labels(ticks: list[float]) -> list[str]:
    """Labels with just enough decimals for the step."""
    step = ticks[1] - ticks[0]
    if step < 1e-5 or max(abs(t) for t in ticks) >= 1e12:
        return [_g(t) for t in ticks]
    d = next((d for d in range(6) if abs(round(step, d) - step) < step * 1e-6), 6)
    return [f"{(0.0 if abs(t) < step * 1e-6 else t):,.{d}f}" for t in ticks]


def _is_int(values: list[float]) -> bool:
    return all(v.is_integer() for v in values)


def _layout(w: int, h: int, xt: list[float], yt: list[float], right_pad: float, bottom_pad: float) -> _Plot:
    widest = max(len(s) for s in _tick_labels(yt))
    return _Plot(30 + widest * _CHAR_W, _TOP, w - right_pad, h - bottom_pad, xt, yt)


def _open(title: str, w: int, h: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        f'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="11">',
        f"<title>{_e(title)}</title>",
        f'<rect width="{w}" height="{h}" fill="#ffffff"/>',
        f'<text class="chart-title" x="{w / 2:.1f}" y="22" text-anchor="middle" font-size="14" '
        f'font-weight="600" fill="{_AXIS}">{_e(title)}</text>',
    ]


def _no_data(title: str, w: int, h: int) -> str:
    parts = _open(title, w, h)
    parts.append(
        f'<text class="no-data" x="{w / 2:.1f}" y="{h / 2:.1f}" text-anchor="middle" font-size="13" '
        f'fill="{_MUTED}">no data</text>'
    )
    return "\n".join([*parts, "</svg>"])


def _axes(p: _Plot, x_label: str, y_label: str, h: int, x_ticks: bool = True) -> list[str]:
    """Grid, tick labels, axis lines and axis labels."""
    out = []
    for t, s in zip(p.yt, _tick_labels(p.yt), strict=True):
        y = _c(p.sy(t))
        out.append(f'<line x1="{_c(p.left)}" x2="{_c(p.right)}" y1="{y}" y2="{y}" stroke="{_GRID}"/>')
        out.append(
            f'<text class="tick" x="{_c(p.left - 6)}" y="{y}" dy="0.32em" text-anchor="end" '
            f'fill="{_MUTED}">{_e(s)}</text>'
        )
    if x_ticks:
        for t, s in zip(p.xt, _tick_labels(p.xt), strict=True):
            x = _c(p.sx(t))
            out.append(f'<line x1="{x}" x2="{x}" y1="{_c(p.top)}" y2="{_c(p.bottom)}" stroke="{_GRID}"/>')
            out.append(
                f'<text class="tick" x="{x}" y="{_c(p.bottom + 16)}" text-anchor="middle" '
                f'fill="{_MUTED}">{_e(s)}</text>'
            )
    out.append(
        f'<path class="axis" d="M{_c(p.left)},{_c(p.top)} V{_c(p.bottom)} H{_c(p.right)}" '
        f'fill="none" stroke="{_AXIS}"/>'
    )
    if x_label:
        out.append(
            f'<text class="axis-label" x="{_c((p.left + p.right) / 2)}" y="{h - 10}" text-anchor="middle" '
            f'fill="{_AXIS}">{_e(x_label)}</text>'
        )
    if y_label:
        cy = _c((p.top + p.bottom) / 2)
        out.append(
            f'<text class="axis-label" x="14" y="{cy}" transform="rotate(-90 14 {cy})" text-anchor="middle" '
            f'fill="{_AXIS}">{_e(y_label)}</text>'
        )
    return out


def _legend_width(names: list[str]) -> float:
    return 0.0 if len(names) < 2 else min(max(len(n) for n in names), 22) * _CHAR_W + 34


def _legend(names: list[str], p: _Plot) -> list[str]:
    """A vertical legend to the right of the plot area (only for more than one series)."""
    if len(names) < 2:
        return []
    out = ['<g class="legend">']
    for i, name in enumerate(names):
        y = p.top + 6 + i * 16
        label = name if len(name) <= 22 else name[:21] + "…"
        out.append(
            f'<rect x="{_c(p.right + 12)}" y="{_c(y - 5)}" width="10" height="10" fill="{PALETTE[i % 8]}"/>'
            f'<text x="{_c(p.right + 27)}" y="{_c(y)}" dy="0.32em" fill="{_AXIS}">{_e(label)}'
            f"<title>{_e(name)}</title></text>"
        )
    return [*out, "</g>"]


def _errorbar(x: float, y_lo: float, y_hi: float, color: str, cap: float = 4) -> str:
    lo, hi = _c(y_lo), _c(y_hi)
    return (
        f'<path class="errorbar" d="M{_c(x)},{lo} V{hi} M{_c(x - cap)},{lo} H{_c(x + cap)} '
        f'M{_c(x - cap)},{hi} H{_c(x + cap)}" stroke="{color}" stroke-width="1.2" fill="none"/>'
    )


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: list[LineSeries],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Lines with markers and vertical error bars; a None y breaks the line, integer x gets integer ticks."""
    clean: list[tuple[str, list[tuple[float, float | None, float | None]]]] = []
    for s in series:
        pts = []
        for x, y, err in s.points:
            fx, fy, fe = _num(x), _num(y), _num(err)
            if fx is not None:
                pts.append((fx, fy, abs(fe) if fe and fy is not None else None))
        clean.append((s.name, sorted(pts, key=lambda q: q[0])))
    drawn = [(x, y, e or 0.0) for _, pts in clean for x, y, e in pts if y is not None]
    if not drawn:
        return _no_data(title, width, height)
    xs = [x for x, _, _ in drawn]
    ys = [y + s * e for _, y, e in drawn for s in (-1, 1)]
    xt = _ticks(min(xs), max(xs), integer=_is_int(xs))
    yt = _ticks(min(ys), max(ys))
    names = [n for n, _ in clean]
    p = _layout(width, height, xt, yt, 24 + _legend_width(names), 48)
    parts = _open(title, width, height) + _axes(p, x_label, y_label, height)
    k = len(clean)
    for i, (name, pts) in enumerate(clean):
        color, dodge = PALETTE[i % 8], (i - (k - 1) / 2) * 4
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y, _ in pts:
            if y is None:
                runs.append([])
            else:
                runs[-1].append((p.sx(x) + dodge, p.sy(y)))
        for run in runs:
            if len(run) > 1:
                coords = " ".join(f"{_c(a)},{_c(b)}" for a, b in run)
                parts.append(
                    f'<polyline class="line" points="{coords}" fill="none" stroke="{color}" stroke-width="2"/>'
                )
        for x, y, e in pts:
            if y is None:
                continue
            cx = p.sx(x) + dodge
            if e:
                parts.append(_errorbar(cx, p.sy(y - e), p.sy(y + e), color))
            tip = f"{name}: x={_g(x)}, y={_g(y)}" + (f" ± {_g(e)}" if e else "")
            parts.append(
                f'<circle class="point" cx="{_c(cx)}" cy="{_c(p.sy(y))}" r="3.5" fill="{color}" '
                f'stroke="#ffffff" stroke-width="1"><title>{_e(tip)}</title></circle>'
            )
    return "\n".join([*parts, *_legend(names, p), "</svg>"])


def _bar_labels(bars: list[Bar], slot: float) -> tuple[bool, list[list[str]]]:
    """Category labels wrapped to the slot width, or (rotated=True) one truncated line each."""
    per_line = max(3, int(slot * 0.95 / _CHAR_W))
    wrapped = [textwrap.wrap(b.label, per_line) for b in bars]
    if all(len(lines) <= 2 for lines in wrapped):
        return False, wrapped
    return True, [[b.label if len(b.label) <= 24 else b.label[:23] + "…"] for b in bars]


def bar_chart(title: str, y_label: str, bars: list[Bar], *, width: int = WIDTH, height: int = HEIGHT) -> str:
    """Vertical bars from a zero line, with optional error bars and n=count; a None value is an "n/a" slot."""
    if not bars:
        return _no_data(title, width, height)
    vals = [(_num(b.value), abs(_num(b.error) or 0.0)) for b in bars]
    ys = [0.0] + [v + s * e for v, e in vals if v is not None for s in (-1, 1)]
    yt = _ticks(min(ys), max(ys)) if max(ys) > min(ys) else [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    p0 = _layout(width, height, [0.0, float(len(bars))], yt, 16, 0)
    slot = (p0.right - p0.left) / len(bars)
    rotated, labels = _bar_labels(bars, slot)
    has_count, left_min = any(b.count is not None for b in bars), 0.0
    if rotated:
        longest = max(
            len(lines[0]) + (8 if b.count is not None else 0) for b, lines in zip(bars, labels, strict=True)
        )
        bottom = 20 + longest * _CHAR_W * math.sin(_ROT)
        left_min = 8 + longest * _CHAR_W * math.cos(_ROT) - slot / 2
    else:
        bottom = 12 + 13 * max(len(lines) for lines in labels) + (12 if has_count else 0)
    p = _layout(width, height, p0.xt, yt, 16, min(bottom, height * 0.45))
    p = replace(p, left=max(p.left, min(left_min, width * 0.3)))
    parts = _open(title, width, height) + _axes(p, "", y_label, height, x_ticks=False)
    zero, bw = p.sy(0.0), min((p.right - p.left) / len(bars) * 0.7, 80.0)
    for i, (b, (v, e), lines) in enumerate(zip(bars, vals, labels, strict=True)):
        cx = p.sx(i + 0.5)
        if v is None:
            parts.append(
                f'<text class="na" x="{_c(cx)}" y="{_c(zero - 5)}" text-anchor="middle" '
                f'fill="{_MUTED}" font-style="italic">n/a</text>'
            )
        else:
            top, base = p.sy(max(v, 0.0)), p.sy(min(v, 0.0))
            tip = f"{b.label}: {_g(v)}" + (f" ± {_g(e)}" if e else "")
            tip += f" (n={b.count})" if b.count is not None else ""
            parts.append(
                f'<rect class="bar" x="{_c(cx - bw / 2)}" y="{_c(top)}" width="{_c(bw)}" '
                f'height="{_c(max(base - top, 0.5))}" fill="{PALETTE[0] if v >= 0 else PALETTE[3]}">'
                f"<title>{_e(tip)}</title></rect>"
            )
            if e:
                parts.append(_errorbar(cx, p.sy(v - e), p.sy(v + e), _AXIS, min(6.0, bw / 4)))
        count = f"n={b.count}" if b.count is not None else ""
        if rotated:
            x, y = _c(cx + 3), _c(p.bottom + 12)
            small = f' <tspan fill="{_MUTED}" font-size="9">{_e(count)}</tspan>' if count else ""
            parts.append(
                f'<text class="category" x="{x}" y="{y}" transform="rotate(-{_ROT_DEG} {x} {y})" text-anchor="end" '
                f'fill="{_AXIS}">{_e(lines[0])}{small}<title>{_e(b.label)}</title></text>'
            )
            continue
        for j, line in enumerate(lines):
            parts.append(
                f'<text class="category" x="{_c(cx)}" y="{_c(p.bottom + 15 + 13 * j)}" '
                f'text-anchor="middle" fill="{_AXIS}">{_e(line)}</text>'
            )
        if count:
            parts.append(
                f'<text class="count" x="{_c(cx)}" y="{_c(p.bottom + 14 + 13 * len(lines))}" '
                f'text-anchor="middle" font-size="9" fill="{_MUTED}">{_e(count)}</text>'
            )
    parts.append(
        f'<line class="zero" x1="{_c(p.left)}" x2="{_c(p.right)}" y1="{_c(zero)}" y2="{_c(zero)}" '
        f'stroke="{_AXIS}"/>'
    )
    return "\n".join([*parts, "</svg>"])


def scatter_chart(
    title: str,
    x_label: str,
    y_label: str,
    groups: list[ScatterGroup],
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Semi-transparent dots, one colour per group; points with a missing coordinate are skipped."""
    clean = [
        (
            g.name,
            [(fx, fy) for x, y in g.points if (fx := _num(x)) is not None and (fy := _num(y)) is not None],
        )
        for g in groups
    ]
    xs = [x for _, pts in clean for x, _ in pts]
    ys = [y for _, pts in clean for _, y in pts]
    if not xs:
        return _no_data(title, width, height)
    xt = _ticks(min(xs), max(xs), integer=_is_int(xs))
    yt = _ticks(min(ys), max(ys), integer=_is_int(ys))
    names = [n for n, _ in clean]
    p = _layout(width, height, xt, yt, 24 + _legend_width(names), 48)
    parts = _open(title, width, height) + _axes(p, x_label, y_label, height)
    for i, (name, pts) in enumerate(clean):
        color = PALETTE[i % 8]
        for x, y in pts:
            parts.append(
                f'<circle class="dot" cx="{_c(p.sx(x))}" cy="{_c(p.sy(y))}" r="4" fill="{color}" '
                f'fill-opacity="0.55" stroke="{color}" stroke-opacity="0.9" stroke-width="0.8">'
                f"<title>{_e(f'{name}: ({_g(x)}, {_g(y)})')}</title></circle>"
            )
    return "\n".join([*parts, *_legend(names, p), "</svg>"])


# --- the data behind each chart, as table rows (the report offers them as CSV) --------------------


#: The heat map's colour scale, low to high (a light-to-dark blue: readable with the value printed on it).
_HEAT_LOW, _HEAT_HIGH = (0xF7, 0xFB, 0xFF), (0x08, 0x30, 0x6B)


def _heat(value: float, lo: float, hi: float) -> tuple[str, str]:
    """A cell's fill for `value` on [lo, hi], and the colour of the text printed on it."""
    t = 0.0 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    rgb = [round(a + (b - a) * t) for a, b in zip(_HEAT_LOW, _HEAT_HIGH, strict=True)]
    return "#" + "".join(f"{c:02x}" for c in rgb), "#ffffff" if t > 0.55 else _AXIS


def heatmap_chart(
    title: str,
    x_label: str,
    y_label: str,
    rows: list[str],
    columns: list[str],
    values: list[list[float | None]],
    *,
    lo: float = 0.0,
    hi: float = 1.0,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """A matrix as coloured cells with their values printed (a None cell is left blank): `values[i][j]` is row
    i (top to bottom), column j (left to right); the colour runs from `lo` to `hi`."""
    if not rows or not columns or all(_num(v) is None for row in values for v in row):
        return _no_data(title, width, height)
    left = 16 + min(24, max(len(r) for r in rows)) * _CHAR_W
    top, right, bottom = _TOP + 8, width - 16, height - 48
    cw, ch = (right - left) / len(columns), (bottom - top) / len(rows)
    parts = _open(title, width, height)
    for i, label in enumerate(rows):
        y = top + (i + 0.5) * ch
        shown = label if len(label) <= 24 else label[:23] + "…"
        parts.append(
            f'<text x="{left - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" fill="{_AXIS}">{_e(shown)}</text>'
        )
        for j in range(len(columns)):
            v = _num(values[i][j]) if j < len(values[i]) else None
            x = left + j * cw
            if v is None:
                parts.append(
                    f'<rect x="{x:.1f}" y="{top + i * ch:.1f}" width="{cw:.1f}" height="{ch:.1f}" '
                    f'fill="#ffffff" stroke="{_GRID}"/>'
                )
                continue
            fill, ink = _heat(v, lo, hi)
            parts.append(
                f'<rect class="cell" x="{x:.1f}" y="{top + i * ch:.1f}" width="{cw:.1f}" height="{ch:.1f}" '
                f'fill="{fill}" stroke="#ffffff"><title>{_e(label)}, {_e(columns[j])}: {_g(v)}</title></rect>'
            )
            if cw >= 28 and ch >= 14:
                parts.append(
                    f'<text x="{x + cw / 2:.1f}" y="{y + 4:.1f}" text-anchor="middle" fill="{ink}">{v:.2f}</text>'
                )
    for j, label in enumerate(columns):
        parts.append(
            f'<text x="{left + (j + 0.5) * cw:.1f}" y="{bottom + 14:.1f}" text-anchor="middle" '
            f'fill="{_AXIS}">{_e(label)}</text>'
        )
    parts.append(
        f'<text x="{(left + right) / 2:.1f}" y="{height - 12:.1f}" text-anchor="middle" '
        f'fill="{_MUTED}">{_e(x_label)}</text>'
    )
    parts.append(
        f'<text x="12" y="{(top + bottom) / 2:.1f}" text-anchor="middle" fill="{_MUTED}" '
        f'transform="rotate(-90 12 {(top + bottom) / 2:.1f})">{_e(y_label)}</text>'
    )
    return "\n".join([*parts, "</svg>"])


def heatmap_rows(rows: list[str], columns: list[str], values: list[list[float | None]]) -> list[list[object]]:
    """A header of the columns, then one row per matrix row: its label, then its cells."""
    return [["", *columns]] + [
        [label, *(_cell(row[j]) if j < len(row) else "" for j in range(len(columns)))]
        for label, row in zip(rows, values, strict=True)
    ]


def _cell(v: object) -> float | int | str:
    """A finite number as is (an integer stays one); anything else (None, NaN) as an empty cell."""
    f = _num(v)
    return "" if f is None else v if isinstance(v, int) else f


def line_rows(x_label: str, y_label: str, series: list[LineSeries]) -> list[list[object]]:
    """A header, then one row per point: series, x, y, error half-width."""
    rows: list[list[object]] = [["series", x_label, y_label, "error (s.e.)"]]
    for s in series:
        rows += [[s.name, _cell(x), _cell(y), _cell(err)] for x, y, err in s.points]
    return rows


def bar_rows(y_label: str, bars: list[Bar]) -> list[list[object]]:
    """A header, then one row per bar: label, value, error half-width, count."""
    rows: list[list[object]] = [["label", y_label, "error (s.e.)", "n"]]
    return rows + [
        [b.label, _cell(b.value), _cell(b.error), "" if b.count is None else b.count] for b in bars
    ]


def scatter_rows(x_label: str, y_label: str, groups: list[ScatterGroup]) -> list[list[object]]:
    """A header, then one row per point: group, x, y."""
    rows: list[list[object]] = [["group", x_label, y_label]]
    for g in groups:
        rows += [[g.name, _cell(x), _cell(y)] for x, y in g.points]
    return rows
