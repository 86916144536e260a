import { describe, expect, it, vi } from 'vitest';
import { getLiveness, getReadiness, getStats, PATHS, postEvent, type FetchFn } from '../src/api';

interface Call {
  url: string;
  init?: RequestInit;
}

/** A fake fetch answering from a table of path -> [status, body]. */
function fakeFetch(routes: Record<string, [number, string] | Error>): { fetchFn: FetchFn; calls: Call[] } {
  const calls: Call[] = [];
  const fetchFn: FetchFn = async (url, init) => {
    calls.push({ url, init });
    const route = routes[url];
    if (route === undefined) return new Response('not found', { status: 404 });
    if (route instanceof Error) throw route;
    const [status, body] = route;
    return new Response(body, { status });
  };
  return { fetchFn, calls };
}

describe('paths (must match nginx.conf and vite.config.ts)', () => {
  it('uses the /api/ prefix for everything', () => {
    expect(PATHS).toEqual({
      backendHealthz: '/api/backend/healthz',
      backendReadyz: '/api/backend/readyz',
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

describe('getStats', () => {
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
      expect(await pending).toEqual({ ok: false, message: 'request failed: timed out' });
    } finally {
      vi.useRealTimers();
    }
  });
});
