import { describe, expect, it, vi } from 'vitest';
import {
  getHealth,
  getLiveness,
  getReadiness,
  getStats,
  PATHS,
  postEvent,
  statsUrl,
  type FetchFn,
} from '../src/api';

interface Call {
  url: string;
  init?: RequestInit;
}

/** A fake fetch answering from a table of path -> [status, body, headers?]. */
function fakeFetch(
  routes: Record<string, [number, string, Record<string, string>?] | Error>,
): { fetchFn: FetchFn; calls: Call[] } {
  const calls: Call[] = [];
  const fetchFn: FetchFn = async (url, init) => {
    calls.push({ url, init });
    const route = routes[url];
    if (route === undefined) return new Response('not found', { status: 404 });
    if (route instanceof Error) throw route;
    const [status, body, headers] = route;
    return new Response(body, { status, headers });
  };
  return { fetchFn, calls };
}

describe('paths (must match nginx.conf and vite.config.ts)', () => {
  it('uses the /api/ prefix for everything', () => {
    expect(PATHS).toEqual({
      backendHealthz: '/api/backend/healthz',
      backendReadyz: '/api/backend/readyz',
      health: '/api/health',
      stats: '/api/stats',
      events: '/api/events',
    });
  });
});

describe('getLiveness / getReadiness', () => {
  it('reads /api/backend/healthz', async () => {
    const { fetchFn, calls } = fakeFetch({ [PATHS.backendHealthz]: [200, 'ok'] });
    expect(await getLiveness(fetchFn)).toBe('up');
    expect(calls[0].init?.cache).toBe('no-store');
  });

  it('is down when the request fails', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.backendHealthz]: new TypeError('Failed to fetch') });
    expect(await getLiveness(fetchFn)).toBe('down');
  });

  it('reads /api/backend/readyz', async () => {
    const { fetchFn } = fakeFetch({
      [PATHS.backendReadyz]: [503, '{"nats":"ok","analytics":"connection refused"}'],
    });
    expect(await getReadiness(fetchFn)).toMatchObject({
      backend: 'not_ready',
      analytics: 'not_ready',
    });
  });

  it('is unreachable when the request fails', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.backendReadyz]: new TypeError('Failed to fetch') });
    expect((await getReadiness(fetchFn)).backend).toBe('unreachable');
  });
});

describe('getHealth', () => {
  it('reads /api/health', async () => {
    const body = JSON.stringify({
      services: [
        { name: 'backend', ok: true, detail: 'serving' },
        { name: 'nats', ok: false, detail: 'connection refused' },
      ],
    });
    const { fetchFn, calls } = fakeFetch({ [PATHS.health]: [200, body] });
    expect(await getHealth(fetchFn)).toEqual({
      available: true,
      services: [
        { name: 'backend', ok: true, detail: 'serving' },
        { name: 'nats', ok: false, detail: 'connection refused' },
      ],
    });
    expect(calls[0].init?.cache).toBe('no-store');
  });

  it('is unavailable on 404 and on a failed request', async () => {
    expect(await getHealth(fakeFetch({}).fetchFn)).toEqual({
      available: false,
      reason: 'backend has no /api/health (HTTP 404)',
    });
    const failing = fakeFetch({ [PATHS.health]: new TypeError('Failed to fetch') });
    expect(await getHealth(failing.fetchFn)).toEqual({
      available: false,
      reason: 'no answer from the web server',
    });
  });
});

describe('getStats', () => {
  it('asks for the per-minute series when series_minutes > 0', async () => {
    expect(statsUrl(60)).toBe('/api/stats?series_minutes=60');
    expect(statsUrl(0)).toBe('/api/stats');
    const body = JSON.stringify({
      kinds: [
        {
          kind: 'a',
          count: 1,
          mean: 2,
          p50: 2,
          p95: 2,
          per_minute: [{ minute_unix_ms: 1_796_160_000_000, count: 1 }],
        },
      ],
    });
    const { fetchFn, calls } = fakeFetch({ [statsUrl(60)]: [200, body] });
    const r = await getStats(fetchFn, 60);
    expect(calls[0].url).toBe('/api/stats?series_minutes=60');
    expect(r.ok && r.stats.series).toEqual([
      { kind: 'a', points: [{ minuteUnixMs: 1_796_160_000_000, count: 1 }] },
    ]);
  });

  it('parses a 200 answer', async () => {
    const body = JSON.stringify({
      total_events: 1,
      kinds: [{ kind: 'a', count: 1, mean: 2, p50: 2, p95: 2 }],
    });
    const { fetchFn } = fakeFetch({ [PATHS.stats]: [200, body] });
    const r = await getStats(fetchFn);
    expect(r.ok && r.stats.kinds[0].mean).toBe(2);
  });

  it('reports the error of a non-200 answer', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.stats]: [503, '{"error":"analytics-engine unavailable"}'] });
    expect(await getStats(fetchFn)).toEqual({
      ok: false,
      message: 'HTTP 503: analytics-engine unavailable',
    });
  });

  it('reports a body that is not JSON', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.stats]: [200, '<html>'] });
    expect(await getStats(fetchFn)).toEqual({ ok: false, message: 'stats: the answer is not JSON' });
  });

  it('reports JSON of the wrong shape', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.stats]: [200, '{"kinds":{}}'] });
    expect(await getStats(fetchFn)).toEqual({ ok: false, message: 'stats: "kinds" is not an array' });
  });

  it('reports a failed request', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.stats]: new TypeError('Failed to fetch') });
    expect(await getStats(fetchFn)).toEqual({
      ok: false,
      message: 'stats request failed: Failed to fetch',
    });
  });
});

describe('postEvent', () => {
  it('POSTs JSON and returns the id of a 202', async () => {
    const { fetchFn, calls } = fakeFetch({ [PATHS.events]: [202, '{"id":"evt-1"}'] });
    const event = { kind: 'page_view', value: 1.5, source: 'web' };
    expect(await postEvent(fetchFn, event)).toEqual({ ok: true, id: 'evt-1' });
    expect(calls[0].init?.method).toBe('POST');
    expect(new Headers(calls[0].init?.headers).get('content-type')).toBe('application/json');
    expect(JSON.parse(String(calls[0].init?.body))).toEqual(event);
  });

  it('returns the message of a 400', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.events]: [400, '{"error":"value must be finite"}'] });
    expect(await postEvent(fetchFn, { kind: 'k', value: 1, source: '' })).toEqual({
      ok: false,
      message: 'value must be finite',
      retryable: false,
      retryAfterSeconds: null,
    });
  });

  it('sends the event id and reads the 503 reason and Retry-After', async () => {
    const { fetchFn, calls } = fakeFetch({
      [PATHS.events]: [503, '{"error":"NATS unavailable"}', { 'Retry-After': '3' }],
    });
    const event = { id: 'web-1', kind: 'k', value: 1, source: '' };
    expect(await postEvent(fetchFn, event)).toEqual({
      ok: false,
      message: 'HTTP 503: NATS unavailable',
      retryable: true,
      retryAfterSeconds: 3,
    });
    expect(JSON.parse(String(calls[0].init?.body)).id).toBe('web-1');
  });

  it('a failed request may be retried', async () => {
    const { fetchFn } = fakeFetch({ [PATHS.events]: new TypeError('Failed to fetch') });
    expect(await postEvent(fetchFn, { kind: 'k', value: 1, source: '' })).toEqual({
      ok: false,
      message: 'request failed: Failed to fetch',
      retryable: true,
      retryAfterSeconds: null,
    });
  });

  it('times out a request that never answers', async () => {
    vi.useFakeTimers();
    try {
      const fetchFn: FetchFn = (_url, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener('abort', () =>
            reject(new DOMException('The operation was aborted.', 'AbortError')),
          );
        });
      const pending = postEvent(fetchFn, { kind: 'k', value: 1, source: '' });
      await vi.advanceTimersByTimeAsync(5000);
      expect(await pending).toEqual({
        ok: false,
        message: 'request failed: timed out',
        retryable: true,
        retryAfterSeconds: null,
      });
    } finally {
      vi.useRealTimers();
    }
  });
});
