import { describe, expect, it } from 'vitest';
import {
  charLength,
  errorMessage,
  eventIdFromBytes,
  eventKey,
  findAnalyticsReadiness,
  formatAge,
  formatCount,
  formatStat,
  ID_PATTERN,
  idForSend,
  parseLiveness,
  parsePostResponse,
  parseReadiness,
  parseRetryAfter,
  parseStats,
  parseValue,
  ParseError,
  readinessLabel,
  validateAttributes,
  validateEvent,
  validateKind,
  validateSource,
} from '../src/lib';

describe('validateKind (1-64 chars of [a-z0-9_.-])', () => {
  it.each(['page_view', 'a', 'x.y-z_0', '0', 'a'.repeat(64)])('accepts %j', (kind) => {
    expect(validateKind(kind)).toBeNull();
  });

  it('rejects an empty kind', () => {
    expect(validateKind('')).toMatch(/required/);
  });

  it('rejects 65 characters', () => {
    expect(validateKind('a'.repeat(65))).toMatch(/at most 64/);
  });

  it.each(['Page', 'page view', 'päge', 'a/b', 'a:b', 'ÄÖ', 'kind\n'])('rejects %j', (kind) => {
    expect(validateKind(kind)).toMatch(/lowercase/);
  });
});

describe('parseValue (finite number)', () => {
  it.each([
    ['1.5', 1.5],
    ['0', 0],
    ['-2', -2],
    ['+3', 3],
    ['.5', 0.5],
    ['5.', 5],
    ['1e3', 1000],
    ['-1.25E-2', -0.0125],
    ['  42  ', 42],
  ])('parses %j', (text, value) => {
    expect(parseValue(text)).toEqual({ ok: true, value });
  });

  it('requires a value', () => {
    expect(parseValue('   ')).toEqual({ ok: false, error: 'value is required' });
  });

  it.each(['abc', '0x10', 'NaN', 'Infinity', '-Infinity', '1,5', '1e', '--1', '1 2'])(
    'rejects %j',
    (text) => {
      expect(parseValue(text)).toEqual({ ok: false, error: 'value must be a number' });
    },
  );

  it('rejects numbers that overflow to infinity', () => {
    expect(parseValue('1e400')).toEqual({ ok: false, error: 'value must be a finite number' });
  });
});

describe('validateSource (at most 64 chars, optional)', () => {
  it('accepts empty and 64 characters', () => {
    expect(validateSource('')).toBeNull();
    expect(validateSource('s'.repeat(64))).toBeNull();
  });

  it('rejects 65 characters', () => {
    expect(validateSource('s'.repeat(65))).toMatch(/at most 64/);
  });

  it('counts characters, not UTF-16 units', () => {
    expect(charLength('😀')).toBe(1);
    expect(validateSource('😀'.repeat(64))).toBeNull();
    expect(validateSource('😀'.repeat(65))).not.toBeNull();
  });
});

describe('validateAttributes', () => {
  it('accepts up to 32 entries with short keys and values', () => {
    const attrs = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, 'v']));
    expect(validateAttributes(attrs)).toBeNull();
    expect(validateAttributes({ ['k'.repeat(64)]: 'v'.repeat(256) })).toBeNull();
  });

  it('rejects 33 entries', () => {
    const attrs = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    expect(validateAttributes(attrs)).toMatch(/at most 32/);
  });

  it('rejects long keys, long values and non-strings', () => {
    expect(validateAttributes({ ['k'.repeat(65)]: 'v' })).toMatch(/keys/);
    expect(validateAttributes({ k: 'v'.repeat(257) })).toMatch(/256/);
    expect(validateAttributes({ k: 1 })).toMatch(/string/);
  });
});

describe('validateEvent', () => {
  it('builds the request body', () => {
    expect(validateEvent({ kind: ' page_view ', value: '1.5', source: 'web' })).toEqual({
      ok: true,
      event: { kind: 'page_view', value: 1.5, source: 'web' },
    });
  });

  it('keeps an empty source (backend default is "")', () => {
    const v = validateEvent({ kind: 'k', value: '0', source: '' });
    expect(v).toEqual({ ok: true, event: { kind: 'k', value: 0, source: '' } });
  });

  it('adds non-empty attributes only', () => {
    const v = validateEvent({ kind: 'k', value: '1', source: '' }, { path: '/' });
    expect(v.ok && v.event.attributes).toEqual({ path: '/' });
    const empty = validateEvent({ kind: 'k', value: '1', source: '' }, {});
    expect(empty.ok && 'attributes' in empty.event).toBe(false);
  });

  it('reports every bad field at once', () => {
    const v = validateEvent({ kind: 'Bad Kind', value: 'x', source: 's'.repeat(65) });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(Object.keys(v.errors).sort()).toEqual(['kind', 'source', 'value']);
  });
});

describe('parseStats', () => {
  const snake = {
    total_events: 7,
    kinds: [
      { kind: 'page_view', count: 5, mean: 1.5, min: 1, max: 2, p50: 1.5, p95: 1.95, stddev: 0.4 },
      { kind: 'click', count: '2', mean: 3, min: 3, max: 3, p50: 3, p95: 3, stddev: 0 },
    ],
    computed_at_unix_ms: '1700000000000',
  };

  it('reads the snake_case StatsResponse, u64 as strings, sorted by kind', () => {
    const s = parseStats(snake);
    expect(s.totalEvents).toBe(7);
    expect(s.computedAtUnixMs).toBe(1_700_000_000_000);
    expect(s.kinds.map((k) => k.kind)).toEqual(['click', 'page_view']);
    expect(s.kinds[0]).toEqual({
      kind: 'click',
      count: 2,
      mean: 3,
      min: 3,
      max: 3,
      p50: 3,
      p95: 3,
      stddev: 0,
    });
  });

  it('reads camelCase (protobuf JSON mapping) too', () => {
    const s = parseStats({
      totalEvents: '3',
      computedAtUnixMs: 5,
      kinds: [{ kind: 'a', count: 3, mean: 1, p50: 1, p95: 1 }],
    });
    expect(s.totalEvents).toBe(3);
    expect(s.computedAtUnixMs).toBe(5);
    expect(s.kinds[0].min).toBeNull();
  });

  it('accepts an empty store and a bare array of kinds', () => {
    expect(parseStats({ total_events: 0, kinds: [] })).toEqual({
      totalEvents: 0,
      kinds: [],
      computedAtUnixMs: null,
      series: [],
      seriesPresent: false,
    });
    const s = parseStats([{ kind: 'a', count: 4, mean: 1, p50: 1, p95: 1 }]);
    expect(s.totalEvents).toBe(4);
  });

  it('treats a zero timestamp as unknown', () => {
    expect(parseStats({ kinds: [], computed_at_unix_ms: 0 }).computedAtUnixMs).toBeNull();
  });

  it.each([
    ['null', null],
    ['a string', 'x'],
    ['kinds not an array', { kinds: {} }],
    ['a kind without a name', { kinds: [{ count: 1, mean: 1, p50: 1, p95: 1 }] }],
    ['a missing p95', { kinds: [{ kind: 'a', count: 1, mean: 1, p50: 1 }] }],
    ['a non-numeric mean', { kinds: [{ kind: 'a', count: 1, mean: 'x', p50: 1, p95: 1 }] }],
  ])('rejects %s', (_, json) => {
    expect(() => parseStats(json)).toThrow(ParseError);
  });
});

describe('parseLiveness', () => {
  it('is up only on 200', () => {
    expect(parseLiveness(200)).toBe('up');
    expect(parseLiveness(502)).toBe('down');
    expect(parseLiveness(null)).toBe('down');
  });
});

describe('findAnalyticsReadiness', () => {
  it.each([
    [{ analytics: false }, 'not_ready'],
    [{ analytics_engine: 'ok' }, 'ready'],
    [{ checks: { nats: 'ok', analytics_engine: 'error: connection refused' } }, 'not_ready'],
    [{ checks: { analytics: { ready: true } } }, 'ready'],
    [{ not_ready: ['analytics-engine'] }, 'not_ready'],
    [{ checks: [{ name: 'analytics', ok: false }] }, 'not_ready'],
    [{ checks: [{ name: 'analytics', status: 'up' }] }, 'ready'],
    [{ nats: false }, null],
    ['analytics', null],
  ])('%j -> %s', (body, expected) => {
    expect(findAnalyticsReadiness(body)).toBe(expected);
  });
});

describe('parseReadiness', () => {
  it('200: backend and analytics-engine are ready', () => {
    expect(parseReadiness(200, '{"status":"ready"}')).toMatchObject({
      backend: 'ready',
      analytics: 'ready',
    });
    expect(parseReadiness(200, 'ok')).toMatchObject({ backend: 'ready', analytics: 'ready' });
  });

  it('503 naming analytics-engine', () => {
    const r = parseReadiness(503, '{"ready":false,"nats":"ok","analytics":"unavailable"}');
    expect(r).toMatchObject({ backend: 'not_ready', analytics: 'not_ready' });
    expect(r.detail).toContain('unavailable');
  });

  it('503 naming only NATS: analytics-engine answered', () => {
    expect(parseReadiness(503, '{"not_ready":["nats"]}')).toMatchObject({
      backend: 'not_ready',
      analytics: 'ready',
    });
  });

  it('503 without JSON: analytics-engine unknown', () => {
    expect(parseReadiness(503, 'Service Unavailable')).toEqual({
      backend: 'not_ready',
      analytics: 'unknown',
      detail: 'HTTP 503: Service Unavailable',
    });
  });

  it('502/504 from nginx and network errors: backend unreachable', () => {
    expect(parseReadiness(502, '<html>bad gateway</html>').backend).toBe('unreachable');
    expect(parseReadiness(504, '').backend).toBe('unreachable');
    expect(parseReadiness(null, '')).toMatchObject({ backend: 'unreachable', analytics: 'unknown' });
  });

  it('other statuses are unknown', () => {
    expect(parseReadiness(404, '')).toMatchObject({ backend: 'unknown', analytics: 'unknown' });
  });

  it('truncates long details', () => {
    const body = JSON.stringify({ nats: 'x'.repeat(500) });
    expect(parseReadiness(503, body).detail.length).toBeLessThanOrEqual(160);
  });
});

describe('parsePostResponse / errorMessage', () => {
  it('202 with an id', () => {
    expect(parsePostResponse(202, '{"id":"01HZX"}')).toEqual({ ok: true, id: '01HZX' });
  });

  it('202 without a readable body still succeeds', () => {
    expect(parsePostResponse(202, '')).toEqual({ ok: true, id: null });
  });

  it.each([
    ['{"error":"kind must match [a-z0-9_.-]{1,64}"}', 'kind must match [a-z0-9_.-]{1,64}'],
    ['{"message":"value must be finite"}', 'value must be finite'],
    ['{"error":{"message":"bad source"}}', 'bad source'],
    ['{"errors":["a","b"]}', 'a; b'],
    ['invalid kind', 'invalid kind'],
    ['"quoted"', 'quoted'],
  ])('400 %s', (body, message) => {
    expect(parsePostResponse(400, body)).toEqual({
      ok: false,
      message,
      retryable: false,
      retryAfterSeconds: null,
    });
  });

  it('400 with no body', () => {
    expect(parsePostResponse(400, '')).toEqual({
      ok: false,
      message: 'the event was rejected (HTTP 400)',
      retryable: false,
      retryAfterSeconds: null,
    });
  });

  it('503 from backend (NATS cannot store it): the reason, retryable, Retry-After', () => {
    const body = '{"error":"NATS JetStream did not store the event: timed out"}';
    expect(parsePostResponse(503, body, '2')).toEqual({
      ok: false,
      message: 'HTTP 503: NATS JetStream did not store the event: timed out',
      retryable: true,
      retryAfterSeconds: 2,
    });
  });

  it.each([
    [429, true],
    [502, true],
    [504, true],
    [500, false],
    [413, false],
  ])('HTTP %i retryable: %s', (status, retryable) => {
    const r = parsePostResponse(status, '');
    expect(!r.ok && r.retryable).toBe(retryable);
  });

  it('502 from nginx shows the page title, not the page', () => {
    const html = '<html><head><title>502 Bad Gateway</title></head><body>…</body></html>';
    expect(parsePostResponse(502, html)).toEqual({
      ok: false,
      message: 'HTTP 502: 502 Bad Gateway',
      retryable: true,
      retryAfterSeconds: null,
    });
    expect(errorMessage('<!DOCTYPE html><p>x</p>')).toBeNull();
  });

  it('other JSON bodies are summarised', () => {
    expect(errorMessage('{"code":7}')).toBe('{"code":7}');
  });
});

describe('formatting', () => {
  it.each([
    [0, '0'],
    [1.5, '1.5'],
    [2, '2'],
    [1.23456, '1.235'],
    [-0.0004, '-4.00e-4'],
    [-0.0001 + 0.0001, '0'],
    [1234.5, '1,234.5'],
    [-98765.4321, '-98,765.432'],
    [2.5e12, '2.50e+12'],
    [null, '—'],
    [Number.NaN, '—'],
    [Number.POSITIVE_INFINITY, '—'],
  ])('formatStat(%s) = %s', (n, text) => {
    expect(formatStat(n)).toBe(text);
  });

  it('formatStat never prints negative zero', () => {
    expect(formatStat(-0)).toBe('0');
  });

  it.each([
    [0, '0'],
    [999, '999'],
    [1000, '1,000'],
    [1234567, '1,234,567'],
    [12.6, '13'],
    [undefined, '—'],
  ])('formatCount(%s) = %s', (n, text) => {
    expect(formatCount(n)).toBe(text);
  });

  it('formatAge', () => {
    const now = 1_000_000;
    expect(formatAge(now - 500, now)).toBe('just now');
    expect(formatAge(now - 12_000, now)).toBe('12 s ago');
    expect(formatAge(now - 180_000, now)).toBe('3 min ago');
    expect(formatAge(now - 7_200_000, now)).toBe('2 h ago');
    expect(formatAge(now + 5_000, now)).toBe('just now');
  });

  it('readinessLabel', () => {
    expect(readinessLabel('not_ready')).toBe('not ready');
    expect(readinessLabel('ready')).toBe('ready');
    expect(readinessLabel('unknown')).toBe('unknown');
  });
});

describe('parseStats: per_minute series', () => {
  const withSeries = {
    total_events: 4,
    kinds: [
      {
        kind: 'page_view',
        count: 3,
        mean: 1,
        p50: 1,
        p95: 1,
        per_minute: [
          { minute_unix_ms: 1_796_160_000_000, count: 2 },
          { minute_unix_ms: '1796160060000', count: '1' },
        ],
      },
      { kind: 'click', count: 1, mean: 1, p50: 1, p95: 1, perMinute: [] },
    ],
  };

  it('reads per_minute (snake_case or camelCase, u64 as strings), sorted by kind', () => {
    const s = parseStats(withSeries);
    expect(s.seriesPresent).toBe(true);
    expect(s.series).toEqual([
      { kind: 'click', points: [] },
      {
        kind: 'page_view',
        points: [
          { minuteUnixMs: 1_796_160_000_000, count: 2 },
          { minuteUnixMs: 1_796_160_060_000, count: 1 },
        ],
      },
    ]);
    // The table's per-kind statistics stay as they were.
    expect(Object.keys(s.kinds[1]).sort()).toEqual(
      ['count', 'kind', 'max', 'mean', 'min', 'p50', 'p95', 'stddev'],
    );
  });

  it('a backend that sends no per_minute: seriesPresent is false', () => {
    const s = parseStats({ kinds: [{ kind: 'a', count: 1, mean: 1, p50: 1, p95: 1 }] });
    expect(s).toMatchObject({ series: [], seriesPresent: false });
  });

  it.each([
    ['not an array', { per_minute: {} }],
    ['an entry that is not an object', { per_minute: [3] }],
    ['an entry without a count', { per_minute: [{ minute_unix_ms: 1 }] }],
    ['an entry without a minute', { per_minute: [{ count: 1 }] }],
  ])('rejects per_minute %s', (_, extra) => {
    const json = { kinds: [{ kind: 'a', count: 1, mean: 1, p50: 1, p95: 1, ...extra }] };
    expect(() => parseStats(json)).toThrow(ParseError);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2026, 11, 1, 12, 0, 0);
  it.each([
    ['2', 2],
    [' 30 ', 30],
    ['0', 0],
    ['Tue, 01 Dec 2026 12:00:05 GMT', 5],
    ['Tue, 01 Dec 2026 11:59:00 GMT', 0],
    ['-1', null],
    ['1.5', null],
    ['soon', null],
    ['', null],
  ])('%j -> %s', (value, seconds) => {
    expect(parseRetryAfter(value, now)).toBe(seconds);
  });

  it('absent', () => {
    expect(parseRetryAfter(null, now)).toBeNull();
    expect(parseRetryAfter(undefined, now)).toBeNull();
  });
});

describe('event ids for retries', () => {
  it('eventIdFromBytes: "web-" and the bytes in hex, a valid contract id', () => {
    const bytes = Uint8Array.from([0, 1, 15, 16, 171, 205, 239, 255, 0, 1, 2, 3, 4, 5, 6, 7]);
    const id = eventIdFromBytes(bytes);
    expect(id).toBe('web-00010f10abcdefff0001020304050607');
    expect(id).toHaveLength(36);
    expect(ID_PATTERN.test(id)).toBe(true);
  });

  it('ID_PATTERN is the contract: 1-64 of [A-Za-z0-9_.:-]', () => {
    expect(ID_PATTERN.test('A.b_c:d-1')).toBe(true);
    expect(ID_PATTERN.test('x'.repeat(64))).toBe(true);
    expect(ID_PATTERN.test('x'.repeat(65))).toBe(false);
    expect(ID_PATTERN.test('')).toBe(false);
    expect(ID_PATTERN.test('a b')).toBe(false);
  });

  it('eventKey ignores the id and the order of attributes', () => {
    const a = eventKey({ kind: 'k', value: 1, source: 's', attributes: { x: '1', y: '2' } });
    const b = eventKey({ id: 'i', kind: 'k', value: 1, source: 's', attributes: { y: '2', x: '1' } });
    expect(a).toBe(b);
    expect(a).toBe('["k",1,"s",[["x","1"],["y","2"]]]');
    expect(eventKey({ kind: 'k', value: 2, source: 's' })).toBe('["k",2,"s",[]]');
  });

  it('idForSend: a retry of the same content reuses the id, other content gets a new one', () => {
    let n = 0;
    const fresh = () => `id-${++n}`;
    const ev = { kind: 'k', value: 1, source: '' };
    const first = idForSend(ev, null, fresh);
    expect(first).toEqual({ key: '["k",1,"",[]]', id: 'id-1' });
    // the send failed and the user clicks again: same id
    expect(idForSend({ ...ev }, first, fresh)).toBe(first);
    // changed the value: another event, another id
    expect(idForSend({ ...ev, value: 2 }, first, fresh)).toEqual({ key: '["k",2,"",[]]', id: 'id-2' });
    // nothing pending (the last send succeeded): the same content again is a new event
    expect(idForSend(ev, null, fresh).id).toBe('id-3');
  });
});
