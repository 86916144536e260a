import { describe, expect, it } from 'vitest';
import {
  alignSeries,
  assignColors,
  chartDescription,
  chartModel,
  chooseSeries,
  LAYOUT,
  linearScale,
  MINUTE_MS,
  niceCeiling,
  polylinePoints,
  yTickValues,
  type AlignedRow,
} from '../src/chart';

const T = 1_796_160_000_000; // a minute boundary (the contract's example)

function row(kind: string, counts: number[]): AlignedRow {
  return { kind, counts, total: counts.reduce((a, b) => a + b, 0), peak: Math.max(0, ...counts) };
}

describe('alignSeries', () => {
  it('puts every kind on one grid ending at the newest minute of any kind', () => {
    const aligned = alignSeries(
      [
        {
          kind: 'a',
          points: [
            { minuteUnixMs: T, count: 1 },
            { minuteUnixMs: T + MINUTE_MS, count: 2 },
            { minuteUnixMs: T + 2 * MINUTE_MS, count: 0 },
          ],
        },
        // not minute-aligned: floored into its minute
        { kind: 'b', points: [{ minuteUnixMs: T + MINUTE_MS + 500, count: 4 }] },
        // older than the grid: dropped
        { kind: 'c', points: [{ minuteUnixMs: T - 2 * MINUTE_MS, count: 9 }] },
        // the same minute twice: added up
        {
          kind: 'd',
          points: [
            { minuteUnixMs: T, count: 1 },
            { minuteUnixMs: T, count: 2 },
          ],
        },
      ],
      3,
    );
    expect(aligned).toEqual({
      startMinuteMs: T,
      minutes: 3,
      rows: [
        { kind: 'a', counts: [1, 2, 0], total: 3, peak: 2 },
        { kind: 'b', counts: [0, 4, 0], total: 4, peak: 4 },
        { kind: 'c', counts: [0, 0, 0], total: 0, peak: 0 },
        { kind: 'd', counts: [3, 0, 0], total: 3, peak: 3 },
      ],
    });
  });

  it('60 minutes of backend output (oldest first, zeros included) map one to one', () => {
    const points = Array.from({ length: 60 }, (_, i) => ({
      minuteUnixMs: T + i * MINUTE_MS,
      count: i === 59 ? 5 : 0,
    }));
    const aligned = alignSeries([{ kind: 'a', points }], 60);
    expect(aligned.startMinuteMs).toBe(T);
    expect(aligned.rows[0].counts).toHaveLength(60);
    expect(aligned.rows[0].counts[59]).toBe(5);
    expect(aligned.rows[0].total).toBe(5);
  });

  it('no points at all: no grid start, empty rows', () => {
    expect(alignSeries([], 60)).toEqual({ startMinuteMs: null, minutes: 60, rows: [] });
    expect(alignSeries([{ kind: 'a', points: [] }], 2)).toEqual({
      startMinuteMs: null,
      minutes: 2,
      rows: [{ kind: 'a', counts: [0, 0], total: 0, peak: 0 }],
    });
  });
});

describe('chooseSeries', () => {
  const rows = [
    row('a', [5]),
    row('b', [9]),
    row('c', [0]),
    row('d', [5]),
    row('e', [1]),
  ];

  it('pinned kinds first, then the busiest, at most max; drawn sorted by name', () => {
    expect(chooseSeries(rows, ['e'], 2)).toEqual({
      drawn: [row('b', [9]), row('e', [1])],
      notDrawn: ['a', 'd'],
      idle: ['c'],
    });
  });

  it('ties are broken by name; every active kind fits under the default max', () => {
    expect(chooseSeries(rows, [], 3).drawn.map((r) => r.kind)).toEqual(['a', 'b', 'd']);
    const all = chooseSeries(rows);
    expect(all.drawn.map((r) => r.kind)).toEqual(['a', 'b', 'd', 'e']);
    expect(all.notDrawn).toEqual([]);
  });

  it('a pinned kind without events in the window is not drawn', () => {
    expect(chooseSeries(rows, ['c'], 1).drawn.map((r) => r.kind)).toEqual(['b']);
  });
});

describe('assignColors', () => {
  const plain = (m: Map<string, number>) => Object.fromEntries(m);

  it('keeps previous slots and gives new kinds the lowest free one', () => {
    const prev = new Map([
      ['b', 0],
      ['gone', 1],
    ]);
    expect(plain(assignColors(['a', 'b', 'c'], prev))).toEqual({ a: 1, b: 0, c: 2 });
  });

  it('a slot outside the palette is given anew', () => {
    expect(plain(assignColors(['a'], new Map([['a', 9]]), 8))).toEqual({ a: 0 });
  });

  it('wraps around only when there are more kinds than colours', () => {
    expect(plain(assignColors(['a', 'b', 'c'], new Map(), 2))).toEqual({ a: 0, b: 1, c: 0 });
  });
});

describe('scales and ticks', () => {
  it('linearScale', () => {
    expect(linearScale(0, 10, 0, 100)(2.5)).toBe(25);
    expect(linearScale(0, 4, 176, 10)(1)).toBe(134.5);
    expect(linearScale(3, 3, 7, 9)(100)).toBe(7);
  });

  it.each([
    [0, 1],
    [-3, 1],
    [1, 1],
    [1.5, 2],
    [2, 2],
    [3, 5],
    [5, 5],
    [6, 10],
    [10, 10],
    [11, 20],
    [99, 100],
    [100, 100],
    [101, 200],
    [1000, 1000],
    [4500, 5000],
  ])('niceCeiling(%s) = %s', (n, top) => {
    expect(niceCeiling(n)).toBe(top);
  });

  it.each([
    [1, [0, 1]],
    [2, [0, 1, 2]],
    [5, [0, 5]],
    [10, [0, 5, 10]],
    [20, [0, 10, 20]],
  ])('yTickValues(%s) = %j', (max, ticks) => {
    expect(yTickValues(max)).toEqual(ticks);
  });

  it('polylinePoints rounds to one decimal and never writes -0', () => {
    expect(polylinePoints([0, 1, 2], (i) => i * 10.04, (v) => 100 - v * 33.333)).toBe(
      '0,100 10,66.7 20.1,33.3',
    );
    expect(polylinePoints([0], () => -0.04, () => 0)).toBe('0,0');
    expect(polylinePoints([], (i) => i, (v) => v)).toBe('');
  });
});

describe('chartModel', () => {
  const aligned = {
    startMinuteMs: T,
    minutes: 3,
    rows: [row('a', [0, 2, 1]), row('b', [1, 0, 0])],
  };
  const slots = new Map([
    ['a', 3],
    ['b', 0],
  ]);

  it('fits the y axis to the busiest minute and draws one polyline per kind', () => {
    // LAYOUT: plot area x 36..628, y 10..176 (0 at the bottom).
    expect(LAYOUT).toEqual({ width: 640, height: 200, left: 36, right: 12, top: 10, bottom: 24 });
    expect(chartModel(aligned, aligned.rows, slots)).toEqual({
      yMax: 2,
      yTicks: [
        { value: 0, y: 176 },
        { value: 1, y: 93 },
        { value: 2, y: 10 },
      ],
      xTicks: [
        { x: 36, minuteUnixMs: T, anchor: 'start' },
        { x: 332, minuteUnixMs: T + MINUTE_MS, anchor: 'middle' },
        { x: 628, minuteUnixMs: T + 2 * MINUTE_MS, anchor: 'end' },
      ],
      lines: [
        { kind: 'a', slot: 3, points: '36,176 332,10 628,93', total: 3, peak: 2 },
        { kind: 'b', slot: 0, points: '36,93 332,176 628,176', total: 1, peak: 1 },
      ],
      plot: { x0: 36, x1: 628, y0: 10, y1: 176 },
    });
  });

  it('60 minutes: ticks at the oldest, the 30th and the newest minute', () => {
    const sixty = { startMinuteMs: T, minutes: 60, rows: [row('a', new Array(60).fill(1))] };
    const m = chartModel(sixty, sixty.rows, new Map());
    expect(m.xTicks).toEqual([
      { x: 36, minuteUnixMs: T, anchor: 'start' },
      { x: 327, minuteUnixMs: T + 29 * MINUTE_MS, anchor: 'middle' },
      { x: 628, minuteUnixMs: T + 59 * MINUTE_MS, anchor: 'end' },
    ]);
    expect(m.yMax).toBe(1);
    expect(m.lines[0].points.split(' ')).toHaveLength(60);
    expect(m.lines[0].points.startsWith('36,10 46,10 56.1,10 ')).toBe(true);
  });

  it('nothing to draw: axes from 0 to 1, no x ticks without a grid', () => {
    const m = chartModel({ startMinuteMs: null, minutes: 60, rows: [] }, [], new Map());
    expect(m).toMatchObject({ yMax: 1, xTicks: [], lines: [] });
    expect(m.yTicks).toEqual([
      { value: 0, y: 176 },
      { value: 1, y: 10 },
    ]);
  });

  it('chartDescription says per kind what the lines show', () => {
    const m = chartModel(aligned, aligned.rows, slots);
    const choice = { drawn: aligned.rows, notDrawn: ['x', 'y'], idle: [] };
    expect(chartDescription(m, 3, choice)).toBe(
      'Events per minute over the last 3 minutes: a 3 events, at most 2 in a minute; ' +
        'b 1 event, at most 1 in a minute. 2 more kinds not drawn.',
    );
    const empty = chartModel({ startMinuteMs: null, minutes: 60, rows: [] }, [], new Map());
    expect(chartDescription(empty, 60, { drawn: [], notDrawn: [], idle: [] })).toBe(
      'Events per minute over the last 60 minutes: no events in that time.',
    );
  });
});
