// Pure geometry of the "events per minute" chart: aligning the per-kind series of
// `GET /api/stats?series_minutes=N` onto one minute grid, choosing which kinds to draw and in which
// colour, the scales, the polyline paths and the text a screen reader gets. No DOM here (main.ts
// writes the SVG), so every function is unit-tested in test/chart.test.ts with concrete output.

export const MINUTE_MS = 60_000;

/** One minute of one kind: `{"minute_unix_ms": ..., "count": ...}` from backend. */
export interface MinutePoint {
  minuteUnixMs: number;
  count: number;
}

/** The `per_minute` array of one kind, as parsed from `/api/stats`. */
export interface KindSeries {
  kind: string;
  points: MinutePoint[];
}

/** A kind's counts on the common grid: `counts[i]` is minute `startMinuteMs + i * MINUTE_MS`. */
export interface AlignedRow {
  kind: string;
  counts: number[];
  total: number;
  peak: number;
}

export interface AlignedSeries {
  /** Start of the oldest minute on the grid; null when no kind sent a single point. */
  startMinuteMs: number | null;
  minutes: number;
  rows: AlignedRow[];
}

/**
 * Puts every kind on one grid of `minutes` minutes that ends at the newest minute any kind has.
 * The end comes from the server's timestamps, not the browser's clock, so a skewed client clock
 * cannot shift the lines. Backend already sends zero-count minutes; a kind that skips some (or
 * sends a shorter array) still lines up, missing minutes count 0. Points off the grid are dropped
 * and a minute sent twice is added up. Timestamps are floored to the minute, so a series that is
 * not exactly minute-aligned still lands in the right slot.
 */
export function alignSeries(series: readonly KindSeries[], minutes: number): AlignedSeries {
  const n = Math.max(1, Math.floor(minutes));
  let end = -Infinity;
  for (const s of series) {
    for (const p of s.points) end = Math.max(end, floorMinute(p.minuteUnixMs));
  }
  if (!Number.isFinite(end)) {
    return { startMinuteMs: null, minutes: n, rows: series.map((s) => emptyRow(s.kind, n)) };
  }
  const start = end - (n - 1) * MINUTE_MS;
  const rows = series.map((s): AlignedRow => {
    const counts = new Array<number>(n).fill(0);
    for (const p of s.points) {
      const i = (floorMinute(p.minuteUnixMs) - start) / MINUTE_MS;
      if (i >= 0 && i < n && p.count > 0) counts[i] += p.count;
    }
    return { kind: s.kind, counts, total: sum(counts), peak: Math.max(0, ...counts) };
  });
  return { startMinuteMs: start, minutes: n, rows };
}

function floorMinute(ms: number): number {
  return Math.floor(ms / MINUTE_MS) * MINUTE_MS;
}

function emptyRow(kind: string, n: number): AlignedRow {
  return { kind, counts: new Array<number>(n).fill(0), total: 0, peak: 0 };
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** How many kinds the chart draws at most: as many as there are distinct colours. */
export const MAX_SERIES = 8;

export interface SeriesChoice {
  /** Drawn, sorted by kind name so the legend does not reorder between refreshes. */
  drawn: AlignedRow[];
  /** Kinds with events in the window that did not fit. */
  notDrawn: string[];
  /** Kinds without a single event in the window (a flat line at 0 says nothing). */
  idle: string[];
}

/**
 * Chooses the kinds to draw: only kinds with events in the window; first the `pinned` ones (kinds
 * sent from this page, most recent first: whoever just sent an event wants to see its line), then
 * the busiest, ties by name. At most `max`, so every drawn kind has its own colour.
 */
export function chooseSeries(
  rows: readonly AlignedRow[],
  pinned: readonly string[] = [],
  max = MAX_SERIES,
): SeriesChoice {
  const active = rows.filter((r) => r.total > 0);
  const idle = rows.filter((r) => r.total === 0).map((r) => r.kind);
  const rank = (kind: string): number => {
    const i = pinned.indexOf(kind);
    return i === -1 ? Number.POSITIVE_INFINITY : i;
  };
  const ordered = [...active].sort(
    (a, b) => rank(a.kind) - rank(b.kind) || b.total - a.total || compareText(a.kind, b.kind),
  );
  const drawn = ordered.slice(0, Math.max(0, max)).sort((a, b) => compareText(a.kind, b.kind));
  const notDrawn = ordered.slice(Math.max(0, max)).map((r) => r.kind).sort(compareText);
  return { drawn, notDrawn, idle: idle.sort(compareText) };
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Gives each drawn kind a palette slot. A kind keeps the slot it had on the previous refresh
 * (colours must not jump when another kind appears or goes away); a new kind takes the lowest free
 * slot. With at most `paletteSize` kinds no two share a colour; beyond that slots wrap around.
 */
export function assignColors(
  kinds: readonly string[],
  previous: ReadonlyMap<string, number>,
  paletteSize = MAX_SERIES,
): Map<string, number> {
  const out = new Map<string, number>();
  const used = new Set<number>();
  for (const kind of kinds) {
    const slot = previous.get(kind);
    if (slot !== undefined && slot < paletteSize && !used.has(slot)) {
      out.set(kind, slot);
      used.add(slot);
    }
  }
  let next = 0;
  for (const kind of kinds) {
    if (out.has(kind)) continue;
    while (used.has(next) && used.size < paletteSize) next++;
    const slot = used.size < paletteSize ? next : out.size % paletteSize;
    out.set(kind, slot);
    used.add(slot);
  }
  return out;
}

/** A linear map from [d0, d1] to [r0, r1]. An empty domain maps everything to r0. */
export function linearScale(d0: number, d1: number, r0: number, r1: number): (v: number) => number {
  if (d1 === d0) return () => r0;
  const k = (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/** The smallest of 1, 2, 5, 10, 20, 50, ... that is >= n (at least 1): the top of the y axis. */
export function niceCeiling(n: number): number {
  if (!(n > 1)) return 1;
  let base = 10 ** Math.floor(Math.log10(n));
  // log10 of an exact power of ten can come out a hair low; step back up when it does.
  if (base * 10 <= n) base *= 10;
  for (const m of [1, 2, 5, 10]) if (base * m >= n) return base * m;
  return base * 10;
}

/** Tick values for a y axis topped at `max`: 0, the middle when it is a whole number, and max. */
export function yTickValues(max: number): number[] {
  const half = max / 2;
  return Number.isInteger(half) && half > 0 ? [0, half, max] : [0, max];
}

/** `"x,y x,y ..."` for an SVG polyline, one decimal (plenty at this size, and short to write). */
export function polylinePoints(
  counts: readonly number[],
  x: (i: number) => number,
  y: (v: number) => number,
): string {
  return counts.map((c, i) => `${round1(x(i))},${round1(y(c))}`).join(' ');
}

function round1(v: number): number {
  const r = Math.round(v * 10) / 10;
  return r === 0 ? 0 : r; // never "-0"
}

/** The drawing area inside the SVG's viewBox (`0 0 width height`). */
export interface ChartLayout {
  width: number;
  height: number;
  /** Room for the y labels on the left, the x labels below. */
  left: number;
  right: number;
  top: number;
  bottom: number;
}

export const LAYOUT: ChartLayout = { width: 640, height: 200, left: 36, right: 12, top: 10, bottom: 24 };

export interface ChartLine {
  kind: string;
  slot: number;
  points: string;
  total: number;
  peak: number;
}

export interface ChartModel {
  yMax: number;
  yTicks: { value: number; y: number }[];
  /** Oldest, middle and newest minute, for clock labels (main.ts formats them). */
  xTicks: { x: number; minuteUnixMs: number; anchor: 'start' | 'middle' | 'end' }[];
  lines: ChartLine[];
  /** Left, right, top and bottom edges of the plot area. */
  plot: { x0: number; x1: number; y0: number; y1: number };
}

/**
 * Everything main.ts needs to draw: scales fitted to the drawn kinds (the y axis tops at a round
 * number above the highest minute), one polyline per kind, axis ticks. `slots` comes from
 * assignColors.
 */
export function chartModel(
  aligned: AlignedSeries,
  drawn: readonly AlignedRow[],
  slots: ReadonlyMap<string, number>,
  layout: ChartLayout = LAYOUT,
): ChartModel {
  const x0 = layout.left;
  const x1 = layout.width - layout.right;
  const yTop = layout.top;
  const yBottom = layout.height - layout.bottom;
  const n = aligned.minutes;
  const yMax = niceCeiling(Math.max(0, ...drawn.map((r) => r.peak)));
  const x = linearScale(0, n - 1, x0, x1);
  const y = linearScale(0, yMax, yBottom, yTop);
  const yTicks = yTickValues(yMax).map((value) => ({ value, y: round1(y(value)) }));
  const xTicks: ChartModel['xTicks'] = [];
  if (aligned.startMinuteMs !== null) {
    const start = aligned.startMinuteMs;
    const at = (i: number, anchor: 'start' | 'middle' | 'end') =>
      xTicks.push({ x: round1(x(i)), minuteUnixMs: start + i * MINUTE_MS, anchor });
    at(0, 'start');
    if (n >= 3) at(Math.floor((n - 1) / 2), 'middle');
    if (n >= 2) at(n - 1, 'end');
  }
  const lines = drawn.map((r) => ({
    kind: r.kind,
    slot: slots.get(r.kind) ?? 0,
    points: polylinePoints(r.counts, x, y),
    total: r.total,
    peak: r.peak,
  }));
  return { yMax, yTicks, xTicks, lines, plot: { x0, x1, y0: yTop, y1: yBottom } };
}

/**
 * The chart's `aria-label`: what a sighted reader takes from it, in words (per kind: events in the
 * window and the busiest minute).
 */
export function chartDescription(model: ChartModel, minutes: number, choice: SeriesChoice): string {
  const head = `Events per minute over the last ${minutes} minutes`;
  if (model.lines.length === 0) return `${head}: no events in that time.`;
  const parts = model.lines.map(
    (l) => `${l.kind} ${l.total} ${l.total === 1 ? 'event' : 'events'}, at most ${l.peak} in a minute`,
  );
  const more = choice.notDrawn.length > 0 ? ` ${choice.notDrawn.length} more kinds not drawn.` : '';
  return `${head}: ${parts.join('; ')}.${more}`;
}
