// The health model: `GET /api/health` (one entry per service of the stack, docs/contracts.md)
// turned into the badges the page shows. When backend does not answer it (an older backend
// without the route: 404; backend down: nginx's 502), the page says "health unavailable" and falls
// back to what backend's `/readyz` still tells (lib.ts parseReadiness). Pure: tested in
// test/health.test.ts.
import { errorMessage, tryParseJson, type Readiness, type ReadinessReport } from './lib';

export interface ServiceHealth {
  name: string;
  /** null when the entry had no usable `ok`. */
  ok: boolean | null;
  detail: string;
}

export type HealthResult =
  | { available: true; services: ServiceHealth[] }
  | { available: false; reason: string };

export type BadgeState = 'ok' | 'bad' | 'unknown';

export interface HealthBadge {
  /** The service name; also the key the page updates the badge by. */
  name: string;
  state: BadgeState;
  /** The visible word: "ok", "not ok" or "unknown". */
  label: string;
  /** Shown as the tooltip. */
  detail: string;
}

export interface HealthView {
  available: boolean;
  /** One line above the badges: "5 of 6 services ok" or why health is unavailable. */
  note: string;
  badges: HealthBadge[];
}

export const DETAIL_MAX = 300;
const OK_WORDS = /^(ok|true|up|ready|healthy|pass|passing|serving)$/i;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clip(text: string, max = DETAIL_MAX): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

function okOf(v: unknown): boolean | null {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && v.trim() !== '') return OK_WORDS.test(v.trim());
  return null;
}

/**
 * Parses the answer to `GET /api/health`. `status` is null when the request failed. The contract
 * says 200 always, with `{"services": [{"name", "ok", "detail"}]}`; anything else means the
 * route is not there (yet) or backend is not reachable, and the reason says which. Entries keep
 * backend's order (it lists the stack in dependency order); an entry without a name is skipped and
 * a repeated name keeps its first entry, because the name is the badge's key.
 */
export function parseHealth(status: number | null, bodyText: string): HealthResult {
  if (status === null) return { available: false, reason: 'no answer from the web server' };
  if (status === 404) return { available: false, reason: 'backend has no /api/health (HTTP 404)' };
  if (status !== 200) {
    const why = errorMessage(bodyText);
    return { available: false, reason: why ? `HTTP ${status}: ${why}` : `HTTP ${status}` };
  }
  const json = tryParseJson(bodyText);
  const list = isRecord(json) ? json.services : undefined;
  if (!Array.isArray(list)) {
    return { available: false, reason: 'unexpected answer from /api/health (no "services" list)' };
  }
  const seen = new Set<string>();
  const services: ServiceHealth[] = [];
  for (const item of list) {
    if (!isRecord(item) || typeof item.name !== 'string' || item.name.trim() === '') continue;
    const name = item.name.trim();
    if (seen.has(name)) continue;
    seen.add(name);
    const detail = typeof item.detail === 'string' ? clip(item.detail) : '';
    services.push({ name, ok: okOf(item.ok), detail });
  }
  return { available: true, services };
}

function badge(name: string, state: BadgeState, detail: string): HealthBadge {
  const label = state === 'ok' ? 'ok' : state === 'bad' ? 'not ok' : 'unknown';
  return { name, state, label, detail };
}

function stateOfReadiness(r: Readiness): BadgeState {
  if (r === 'ready') return 'ok';
  if (r === 'not_ready' || r === 'unreachable') return 'bad';
  return 'unknown';
}

/**
 * The badges and the line above them. With /api/health: one badge per service. Without it: the
 * note says "health unavailable" and why, and, when given, backend's `/readyz` report supplies two
 * badges (backend, analytics-engine) so the page still shows what it can.
 */
export function healthView(result: HealthResult, fallback?: ReadinessReport): HealthView {
  if (result.available) {
    const badges = result.services.map((s) =>
      badge(s.name, s.ok === null ? 'unknown' : s.ok ? 'ok' : 'bad', s.detail),
    );
    const ok = badges.filter((b) => b.state === 'ok').length;
    const note =
      badges.length === 0
        ? 'backend reported no services'
        : ok === badges.length
          ? `all ${badges.length} services ok`
          : `${ok} of ${badges.length} services ok`;
    return { available: true, note, badges };
  }
  const note = `health unavailable: ${result.reason}`;
  if (!fallback) return { available: false, note, badges: [] };
  return {
    available: false,
    note: `${note}; showing backend's /readyz instead`,
    badges: [
      badge('backend', stateOfReadiness(fallback.backend), clip(fallback.detail)),
      badge('analytics-engine', stateOfReadiness(fallback.analytics), 'as backend /readyz reports it'),
    ],
  };
}
