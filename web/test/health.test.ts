import { describe, expect, it } from 'vitest';
import { DETAIL_MAX, healthView, parseHealth } from '../src/health';

const contractBody = JSON.stringify({
  services: [
    { name: 'backend', ok: true, detail: 'serving' },
    { name: 'nats', ok: true, detail: 'connected, JetStream ok' },
    { name: 'analytics-engine', ok: false, detail: 'Ping: connection refused' },
    { name: 'clickhouse', ok: true, detail: '' },
    { name: 'python', ok: true },
    { name: 'prometheus', ok: true, detail: 'ready' },
  ],
});

describe('parseHealth', () => {
  it('reads the contract answer, in backend order', () => {
    const r = parseHealth(200, contractBody);
    expect(r).toEqual({
      available: true,
      services: [
        { name: 'backend', ok: true, detail: 'serving' },
        { name: 'nats', ok: true, detail: 'connected, JetStream ok' },
        { name: 'analytics-engine', ok: false, detail: 'Ping: connection refused' },
        { name: 'clickhouse', ok: true, detail: '' },
        { name: 'python', ok: true, detail: '' },
        { name: 'prometheus', ok: true, detail: 'ready' },
      ],
    });
  });

  it('skips entries without a name, keeps the first of a repeated name, reads "ok" words', () => {
    const body = JSON.stringify({
      services: [
        { ok: true },
        'nats',
        { name: ' nats ', ok: 'ok', detail: 'first' },
        { name: 'nats', ok: false, detail: 'second' },
        { name: 'python', ok: 'error' },
        { name: 'clickhouse' },
      ],
    });
    expect(parseHealth(200, body)).toEqual({
      available: true,
      services: [
        { name: 'nats', ok: true, detail: 'first' },
        { name: 'python', ok: false, detail: '' },
        { name: 'clickhouse', ok: null, detail: '' },
      ],
    });
  });

  it('clips a long detail to one line', () => {
    const body = JSON.stringify({ services: [{ name: 'x', ok: false, detail: `a\n${'b'.repeat(400)}` }] });
    const r = parseHealth(200, body);
    const detail = r.available ? r.services[0].detail : '';
    expect(detail).toHaveLength(DETAIL_MAX);
    expect(detail.startsWith('a b')).toBe(true);
    expect(detail.endsWith('…')).toBe(true);
  });

  it.each([
    [404, '{"error":"not found"}', 'backend has no /api/health (HTTP 404)'],
    [502, '{"error":"backend unavailable"}', 'HTTP 502: backend unavailable'],
    [500, '', 'HTTP 500'],
    [200, '<html>', 'unexpected answer from /api/health (no "services" list)'],
    [200, '{"services":{}}', 'unexpected answer from /api/health (no "services" list)'],
    [null, '', 'no answer from the web server'],
  ])('HTTP %s %j: unavailable (%s)', (status, body, reason) => {
    expect(parseHealth(status, body)).toEqual({ available: false, reason });
  });
});

describe('healthView', () => {
  it('one badge per service, the detail as tooltip text', () => {
    const v = healthView(parseHealth(200, contractBody));
    expect(v.available).toBe(true);
    expect(v.note).toBe('5 of 6 services ok');
    expect(v.badges[2]).toEqual({
      name: 'analytics-engine',
      state: 'bad',
      label: 'not ok',
      detail: 'Ping: connection refused',
    });
    expect(v.badges.map((b) => `${b.name}=${b.state}`)).toEqual([
      'backend=ok',
      'nats=ok',
      'analytics-engine=bad',
      'clickhouse=ok',
      'python=ok',
      'prometheus=ok',
    ]);
  });

  it('all ok, unknown ok, and no services', () => {
    expect(healthView({ available: true, services: [{ name: 'a', ok: true, detail: '' }] }).note).toBe(
      'all 1 services ok',
    );
    expect(
      healthView({ available: true, services: [{ name: 'a', ok: null, detail: '' }] }).badges[0],
    ).toEqual({ name: 'a', state: 'unknown', label: 'unknown', detail: '' });
    expect(healthView({ available: true, services: [] })).toEqual({
      available: true,
      note: 'backend reported no services',
      badges: [],
    });
  });

  it('unavailable: says so, with no badges when there is nothing to fall back on', () => {
    expect(healthView({ available: false, reason: 'HTTP 502' })).toEqual({
      available: false,
      note: 'health unavailable: HTTP 502',
      badges: [],
    });
  });

  it('unavailable: falls back to backend /readyz', () => {
    const v = healthView(
      { available: false, reason: 'backend has no /api/health (HTTP 404)' },
      { backend: 'not_ready', analytics: 'unknown', detail: '{"nats":"connection refused"}' },
    );
    expect(v).toEqual({
      available: false,
      note: "health unavailable: backend has no /api/health (HTTP 404); showing backend's /readyz instead",
      badges: [
        { name: 'backend', state: 'bad', label: 'not ok', detail: '{"nats":"connection refused"}' },
        {
          name: 'analytics-engine',
          state: 'unknown',
          label: 'unknown',
          detail: 'as backend /readyz reports it',
        },
      ],
    });
    const ready = healthView(
      { available: false, reason: 'x' },
      { backend: 'ready', analytics: 'ready', detail: 'all dependencies answer' },
    );
    expect(ready.badges.map((b) => b.state)).toEqual(['ok', 'ok']);
  });
});
