// HTTP calls of the dashboard. Every call goes to the page's own origin: nginx (or Vite's dev
// server) proxies /api/ to backend, see README.md "Routing". `fetchFn` is a parameter so the tests
// can pass a fake one.
import {
  errorMessage,
  parseLiveness,
  parsePostResponse,
  parseReadiness,
  parseStats,
  ParseError,
  type EventPayload,
  type Liveness,
  type PostResult,
  type ReadinessReport,
  type StatsSnapshot,
} from './lib';
import { parseHealth, type HealthResult } from './health';

export type FetchFn = (input: string, init?: RequestInit) => Promise<Response>;

export const PATHS = {
  backendHealthz: '/api/backend/healthz',
  backendReadyz: '/api/backend/readyz',
  health: '/api/health',
  stats: '/api/stats',
  events: '/api/events',
} as const;

/** How many minutes of per-kind counts the chart shows (`series_minutes` of `/api/stats`). */
export const SERIES_MINUTES = 60;

export const TIMEOUT_MS = 4000;

interface RawAnswer {
  status: number;
  text: string;
  /** The `Retry-After` header (backend sends it with a 503 from POST /api/events). */
  retryAfter: string | null;
}

async function request(fetchFn: FetchFn, path: string, init: RequestInit = {}): Promise<RawAnswer> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const res = await fetchFn(path, { ...init, signal: controller.signal, cache: 'no-store' });
    const text = await res.text();
    return { status: res.status, text, retryAfter: res.headers.get('Retry-After') };
  } finally {
    clearTimeout(timer);
  }
}

export async function getLiveness(fetchFn: FetchFn): Promise<Liveness> {
  try {
    const { status } = await request(fetchFn, PATHS.backendHealthz);
    return parseLiveness(status);
  } catch {
    return parseLiveness(null);
  }
}

export async function getReadiness(fetchFn: FetchFn): Promise<ReadinessReport> {
  try {
    const { status, text } = await request(fetchFn, PATHS.backendReadyz);
    return parseReadiness(status, text);
  } catch {
    return parseReadiness(null, '');
  }
}

/** `GET /api/health`: every service of the stack as backend sees it (see health.ts). */
export async function getHealth(fetchFn: FetchFn): Promise<HealthResult> {
  try {
    const { status, text } = await request(fetchFn, PATHS.health, {
      headers: { Accept: 'application/json' },
    });
    return parseHealth(status, text);
  } catch {
    return parseHealth(null, '');
  }
}

export type StatsResult = { ok: true; stats: StatsSnapshot } | { ok: false; message: string };

/** The stats URL: with `series_minutes` > 0 every kind carries its `per_minute` counts. */
export function statsUrl(seriesMinutes: number): string {
  return seriesMinutes > 0 ? `${PATHS.stats}?series_minutes=${seriesMinutes}` : PATHS.stats;
}

export async function getStats(fetchFn: FetchFn, seriesMinutes = 0): Promise<StatsResult> {
  let answer: RawAnswer;
  try {
    answer = await request(fetchFn, statsUrl(seriesMinutes), {
      headers: { Accept: 'application/json' },
    });
  } catch (e) {
    return { ok: false, message: `stats request failed: ${describe(e)}` };
  }
  if (answer.status !== 200) {
    const why = errorMessage(answer.text);
    return { ok: false, message: why ? `HTTP ${answer.status}: ${why}` : `HTTP ${answer.status}` };
  }
  try {
    return { ok: true, stats: parseStats(JSON.parse(answer.text)) };
  } catch (e) {
    const why = e instanceof ParseError ? e.message : 'stats: the answer is not JSON';
    return { ok: false, message: why };
  }
}

export async function postEvent(fetchFn: FetchFn, event: EventPayload): Promise<PostResult> {
  try {
    const { status, text, retryAfter } = await request(fetchFn, PATHS.events, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(event),
    });
    return parsePostResponse(status, text, retryAfter, Date.now());
  } catch (e) {
    // No answer (network error, timeout): the event may or may not have been stored, so a retry
    // is right, and the id it carries again keeps it from being stored twice.
    return {
      ok: false,
      message: `request failed: ${describe(e)}`,
      retryable: true,
      retryAfterSeconds: null,
    };
  }
}

function describe(e: unknown): string {
  if (e instanceof Error) return e.name === 'AbortError' ? 'timed out' : e.message;
  return String(e);
}
