// Pure functions of the dashboard: event validation (mirrors docs/contracts.md), parsing of the
// backend's HTTP answers and number formatting. No DOM and no network here, so every function is
// unit-tested in test/lib.test.ts. The chart's geometry is in chart.ts, the health model in
// health.ts.
import type { KindSeries, MinutePoint } from './chart';

// ---------------------------------------------------------------------------------------------
// The event (docs/contracts.md, "The event")
// ---------------------------------------------------------------------------------------------

export const KIND_PATTERN = /^[a-z0-9_.-]{1,64}$/;
export const KIND_MAX = 64;
export const SOURCE_MAX = 64;
export const ATTRIBUTES_MAX_ENTRIES = 32;
export const ATTRIBUTE_KEY_MAX = 64;
export const ATTRIBUTE_VALUE_MAX = 256;

/** The JSON body of `POST /api/events`. */
export interface EventPayload {
  /** The producer's own id (1-64 of `[A-Za-z0-9_.:-]`): a retry with the same id is stored once. */
  id?: string;
  kind: string;
  value: number;
  source: string;
  attributes?: Record<string, string>;
}

/** What the form holds: every field is text. */
export interface EventFormInput {
  kind: string;
  value: string;
  source: string;
}

export type FieldErrors = Partial<Record<'kind' | 'value' | 'source' | 'attributes', string>>;

export type Validation =
  | { ok: true; event: EventPayload }
  | { ok: false; errors: FieldErrors };

/** Length in characters (Unicode code points), as Rust's `str::chars().count()` counts. */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export function validateKind(kind: string): string | null {
  if (kind.length === 0) return 'kind is required';
  if (charLength(kind) > KIND_MAX) return `kind must be at most ${KIND_MAX} characters`;
  if (!KIND_PATTERN.test(kind)) {
    return 'kind may only contain lowercase letters, digits, "_", "." and "-"';
  }
  return null;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Parses a decimal number typed by a person: no hex, no "Infinity", no "NaN", no empty text. */
export function parseValue(text: string): { ok: true; value: number } | { ok: false; error: string } {
  const t = text.trim();
  if (t === '') return { ok: false, error: 'value is required' };
  if (!DECIMAL.test(t)) return { ok: false, error: 'value must be a number' };
  const value = Number(t);
  if (!Number.isFinite(value)) return { ok: false, error: 'value must be a finite number' };
  return { ok: true, value };
}

export function validateSource(source: string): string | null {
  if (charLength(source) > SOURCE_MAX) return `source must be at most ${SOURCE_MAX} characters`;
  return null;
}

export function validateAttributes(attributes: Record<string, unknown>): string | null {
  const entries = Object.entries(attributes);
  if (entries.length > ATTRIBUTES_MAX_ENTRIES) {
    return `at most ${ATTRIBUTES_MAX_ENTRIES} attributes`;
  }
  for (const [k, v] of entries) {
    if (typeof v !== 'string') return `attribute "${k}" must be a string`;
    if (charLength(k) > ATTRIBUTE_KEY_MAX) {
      return `attribute keys must be at most ${ATTRIBUTE_KEY_MAX} characters`;
    }
    if (charLength(v) > ATTRIBUTE_VALUE_MAX) {
      return `attribute "${k}" must be at most ${ATTRIBUTE_VALUE_MAX} characters`;
    }
  }
  return null;
}

/**
 * Validates the form and builds the request body. `kind` and `value` are trimmed (a stray space is
 * a typing accident, not part of a kind); `source` is sent as typed and omitted when empty (the
 * backend's default is "").
 */
export function validateEvent(input: EventFormInput, attributes?: Record<string, string>): Validation {
  const errors: FieldErrors = {};
  const kind = input.kind.trim();
  const kindError = validateKind(kind);
  if (kindError) errors.kind = kindError;
  const parsed = parseValue(input.value);
  if (!parsed.ok) errors.value = parsed.error;
  const sourceError = validateSource(input.source);
  if (sourceError) errors.source = sourceError;
  if (attributes !== undefined) {
    const attrError = validateAttributes(attributes);
    if (attrError) errors.attributes = attrError;
  }
  if (Object.keys(errors).length > 0 || !parsed.ok) return { ok: false, errors };
  const event: EventPayload = { kind, value: parsed.value, source: input.source };
  if (attributes !== undefined && Object.keys(attributes).length > 0) event.attributes = attributes;
  return { ok: true, event };
}

// ---------------------------------------------------------------------------------------------
// Parsing the backend's answers
// ---------------------------------------------------------------------------------------------

export class ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ParseError';
  }
}

export interface KindStats {
  kind: string;
  count: number;
  mean: number;
  min: number | null;
  max: number | null;
  p50: number;
  p95: number;
  stddev: number | null;
}

export interface StatsSnapshot {
  totalEvents: number;
  kinds: KindStats[];
  /** When analytics-engine computed the numbers, if it said so. */
  computedAtUnixMs: number | null;
  /** `per_minute` of every kind that carried one (asked for with `series_minutes`), by kind. */
  series: KindSeries[];
  /** Whether any kind carried `per_minute`: false from a backend that does not send series yet. */
  seriesPresent: boolean;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A number, or a numeric string (protobuf's JSON mapping writes 64-bit integers as strings). */
function toNumber(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && v.trim() !== '') {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

/** Reads the first of `names` that is present (snake_case from serde, camelCase from pbjson). */
function field(obj: Record<string, unknown>, ...names: string[]): unknown {
  for (const name of names) if (name in obj) return obj[name];
  return undefined;
}

function requiredNumber(obj: Record<string, unknown>, what: string, ...names: string[]): number {
  const n = toNumber(field(obj, ...names));
  if (n === null) throw new ParseError(`${what}: "${names[0]}" is missing or not a number`);
  return n;
}

function optionalNumber(obj: Record<string, unknown>, ...names: string[]): number | null {
  return toNumber(field(obj, ...names));
}

/**
 * Parses the JSON of `GET /api/stats`: the analytics `StatsResponse` (total_events, kinds[],
 * computed_at_unix_ms) as backend serialises it. A bare array of kinds is accepted too. Kinds are
 * sorted by name so the table does not jump between polls.
 */
export function parseStats(json: unknown): StatsSnapshot {
  let rawKinds: unknown;
  let obj: Record<string, unknown> = {};
  if (Array.isArray(json)) {
    rawKinds = json;
  } else if (isRecord(json)) {
    obj = json;
    rawKinds = field(obj, 'kinds') ?? [];
  } else {
    throw new ParseError('stats: expected a JSON object');
  }
  if (!Array.isArray(rawKinds)) throw new ParseError('stats: "kinds" is not an array');
  const series: KindSeries[] = [];
  let seriesPresent = false;
  const kinds = rawKinds.map((k, i): KindStats => {
    if (!isRecord(k)) throw new ParseError(`stats: kinds[${i}] is not an object`);
    const kind = field(k, 'kind');
    if (typeof kind !== 'string') throw new ParseError(`stats: kinds[${i}].kind is not a string`);
    const what = `stats: kind "${kind}"`;
    const perMinute = field(k, 'per_minute', 'perMinute');
    if (perMinute !== undefined) {
      seriesPresent = true;
      series.push({ kind, points: parsePerMinute(perMinute, what) });
    }
    return {
      kind,
      count: requiredNumber(k, what, 'count'),
      mean: requiredNumber(k, what, 'mean'),
      min: optionalNumber(k, 'min'),
      max: optionalNumber(k, 'max'),
      p50: requiredNumber(k, what, 'p50'),
      p95: requiredNumber(k, what, 'p95'),
      stddev: optionalNumber(k, 'stddev'),
    };
  });
  const byKind = (a: { kind: string }, b: { kind: string }) =>
    a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0;
  kinds.sort(byKind);
  series.sort(byKind);
  const total = optionalNumber(obj, 'total_events', 'totalEvents');
  const computed = optionalNumber(obj, 'computed_at_unix_ms', 'computedAtUnixMs');
  return {
    totalEvents: total ?? kinds.reduce((sum, k) => sum + k.count, 0),
    kinds,
    computedAtUnixMs: computed !== null && computed > 0 ? computed : null,
    series,
    seriesPresent,
  };
}

/**
 * `per_minute`: `[{"minute_unix_ms": ..., "count": ...}, ...]`, 64-bit integers as numbers or
 * strings. A malformed series is an error like any other malformed field: drawing half of it would
 * show a wrong shape.
 */
function parsePerMinute(v: unknown, what: string): MinutePoint[] {
  if (v === null) return [];
  if (!Array.isArray(v)) throw new ParseError(`${what}: "per_minute" is not an array`);
  return v.map((p, i): MinutePoint => {
    if (!isRecord(p)) throw new ParseError(`${what}: per_minute[${i}] is not an object`);
    const at = `${what}, per_minute[${i}]`;
    return {
      minuteUnixMs: requiredNumber(p, at, 'minute_unix_ms', 'minuteUnixMs'),
      count: requiredNumber(p, at, 'count'),
    };
  });
}

export function tryParseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `/healthz`: alive when it answers 200 (docs/contracts.md, "Health"). */
export type Liveness = 'up' | 'down';
export function parseLiveness(status: number | null): Liveness {
  return status === 200 ? 'up' : 'down';
}

export type Readiness = 'ready' | 'not_ready' | 'unreachable' | 'unknown';

export interface ReadinessReport {
  backend: Readiness;
  analytics: Readiness;
  /** Short human text for the badge tooltip (what is not ready, or why we do not know). */
  detail: string;
}

const ANALYTICS_NAME = /analytics/i;
const READY_WORDS = /^(ok|ready|up|true|healthy|connected|pass|passing|serving)$/i;

function readinessOfValue(v: unknown): Readiness {
  if (typeof v === 'boolean') return v ? 'ready' : 'not_ready';
  if (typeof v === 'string') return READY_WORDS.test(v.trim()) ? 'ready' : 'not_ready';
  if (isRecord(v)) {
    for (const key of ['ready', 'ok', 'healthy', 'up']) {
      if (typeof v[key] === 'boolean') return v[key] ? 'ready' : 'not_ready';
    }
    for (const key of ['status', 'state']) {
      if (typeof v[key] === 'string') return readinessOfValue(v[key]);
    }
    if ('error' in v) return 'not_ready';
  }
  return 'unknown';
}

/**
 * Looks for analytics-engine in a `/readyz` body: a key naming it (`"analytics": false`,
 * `"checks": {"analytics_engine": "error: ..."}`) or a list naming it (`"not_ready":
 * ["analytics-engine"]`). Returns null when the body does not mention it at all.
 */
export function findAnalyticsReadiness(body: unknown, depth = 0): Readiness | null {
  if (depth > 4) return null;
  if (Array.isArray(body)) {
    for (const item of body) {
      if (typeof item === 'string' && ANALYTICS_NAME.test(item)) return 'not_ready';
      if (isRecord(item)) {
        const name = field(item, 'name', 'component', 'service', 'check');
        if (typeof name === 'string' && ANALYTICS_NAME.test(name)) {
          const r = readinessOfValue(item);
          return r === 'unknown' ? 'not_ready' : r;
        }
      }
      const inner = findAnalyticsReadiness(item, depth + 1);
      if (inner) return inner;
    }
    return null;
  }
  if (!isRecord(body)) return null;
  for (const [key, value] of Object.entries(body)) {
    if (ANALYTICS_NAME.test(key)) {
      const r = readinessOfValue(value);
      return r === 'unknown' ? 'not_ready' : r;
    }
  }
  for (const value of Object.values(body)) {
    if (typeof value === 'object' && value !== null) {
      const inner = findAnalyticsReadiness(value, depth + 1);
      if (inner) return inner;
    }
  }
  return null;
}

function summarise(text: string, max = 160): string {
  const oneLine = text.replace(/\s+/g, ' ').trim();
  return oneLine.length > max ? `${oneLine.slice(0, max - 1)}…` : oneLine;
}

/**
 * Interprets backend's `/readyz` as seen through nginx (`/api/backend/readyz`). `status` is null
 * when the request itself failed (network error, timeout).
 *
 * - 200: backend is ready, and so is analytics-engine (backend is only ready when its `Ping`
 *   answers).
 * - 503 with JSON: backend is up but not ready; the body names what is not ready. analytics-engine
 *   is not ready when named, ready when the body names only other things.
 * - 502/504 or no answer: nginx could not reach backend; analytics-engine's state is unknown.
 */
export function parseReadiness(status: number | null, bodyText: string): ReadinessReport {
  if (status === null) {
    return { backend: 'unreachable', analytics: 'unknown', detail: 'no answer from the web server' };
  }
  if (status === 200) {
    return { backend: 'ready', analytics: 'ready', detail: 'all dependencies answer' };
  }
  if (status === 502 || status === 504) {
    return {
      backend: 'unreachable',
      analytics: 'unknown',
      detail: `backend unreachable through the proxy (HTTP ${status})`,
    };
  }
  const json = tryParseJson(bodyText);
  if (status === 503) {
    if (json === undefined) {
      return {
        backend: 'not_ready',
        analytics: 'unknown',
        detail: bodyText.trim() ? `HTTP 503: ${summarise(bodyText)}` : 'HTTP 503',
      };
    }
    const analytics = findAnalyticsReadiness(json);
    return {
      backend: 'not_ready',
      analytics: analytics ?? 'ready',
      detail: summarise(JSON.stringify(json)),
    };
  }
  return { backend: 'unknown', analytics: 'unknown', detail: `unexpected HTTP ${status}` };
}

export type PostResult =
  | { ok: true; id: string | null }
  | {
      ok: false;
      message: string;
      /** Sending the same event again may succeed (503, 502, 504, 429, no answer); a 400 will not. */
      retryable: boolean;
      /** From the `Retry-After` header, when there was one. */
      retryAfterSeconds: number | null;
    };

/** Pulls a human message out of an error body: `{"error": "..."}`, `{"message": "..."}`, text. */
export function errorMessage(bodyText: string): string | null {
  const json = tryParseJson(bodyText);
  if (typeof json === 'string' && json.trim()) return json.trim();
  if (isRecord(json)) {
    for (const key of ['error', 'message', 'detail', 'reason']) {
      const v = json[key];
      if (typeof v === 'string' && v.trim()) return v.trim();
      if (isRecord(v) && typeof v.message === 'string') return v.message;
    }
    const errors = json.errors;
    if (Array.isArray(errors)) {
      const parts = errors.map((e) =>
        typeof e === 'string' ? e : isRecord(e) && typeof e.message === 'string' ? e.message : null,
      );
      const texts = parts.filter((p): p is string => p !== null);
      if (texts.length > 0) return texts.join('; ');
    }
    return summarise(JSON.stringify(json));
  }
  const text = bodyText.trim();
  if (!text) return null;
  // An HTML error page (nginx's 502) is not worth showing whole.
  if (/^<(!doctype|html)/i.test(text)) {
    const title = /<title>([^<]*)<\/title>/i.exec(text);
    return title ? title[1].trim() : null;
  }
  return summarise(text);
}

/**
 * Interprets the answer to `POST /api/events`: 202 (sent only once NATS JetStream stored the
 * event) carries `{"id": "..."}`. 503 means NATS could not store it: the body has the reason and
 * `Retry-After` says when to try again. `retryAfter` is that header's raw value.
 */
export function parsePostResponse(
  status: number,
  bodyText: string,
  retryAfter: string | null = null,
  nowMs = 0,
): PostResult {
  if (status === 202 || status === 200 || status === 201) {
    const json = tryParseJson(bodyText);
    if (isRecord(json)) {
      const id = json.id;
      if (typeof id === 'string' && id) return { ok: true, id };
      if (typeof id === 'number') return { ok: true, id: String(id) };
      const ids = json.ids;
      if (Array.isArray(ids) && typeof ids[0] === 'string') return { ok: true, id: ids[0] };
    }
    return { ok: true, id: null };
  }
  const message = errorMessage(bodyText);
  const retryAfterSeconds = parseRetryAfter(retryAfter, nowMs);
  if (status === 400) {
    return {
      ok: false,
      message: message ?? 'the event was rejected (HTTP 400)',
      retryable: false,
      retryAfterSeconds,
    };
  }
  return {
    ok: false,
    message: message ? `HTTP ${status}: ${message}` : `HTTP ${status}`,
    retryable: RETRYABLE.has(status),
    retryAfterSeconds,
  };
}

const RETRYABLE = new Set([429, 502, 503, 504]);

/**
 * `Retry-After` in whole seconds: delta-seconds (`"2"`) or an HTTP date, which is measured from
 * `nowMs`. Null when absent or unreadable; never negative.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null {
  if (value === null || value === undefined) return null;
  const t = value.trim();
  if (/^\d+$/.test(t)) return Number(t);
  if (t === '' || /^[+-]?\d/.test(t)) return null;
  const at = Date.parse(t);
  if (!Number.isFinite(at)) return null;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

// ---------------------------------------------------------------------------------------------
// Event ids for retries
// ---------------------------------------------------------------------------------------------

export const ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * An event id from 16 random bytes: "web-" and 32 hex digits (36 characters, inside the contract's
 * 1-64 of `[A-Za-z0-9_.:-]`). The bytes come from `crypto.getRandomValues`, which, unlike
 * `crypto.randomUUID`, also exists on a dashboard served over plain http from a non-local host.
 */
export function eventIdFromBytes(bytes: Uint8Array): string {
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return `web-${hex}`;
}

/** The event as the form built it, without its id: two sends with the same key are one event. */
export function eventKey(event: EventPayload): string {
  const { kind, value, source, attributes } = event;
  const attrs = attributes ? Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : 1)) : [];
  return JSON.stringify([kind, value, source, attrs]);
}

/** The last send that did not get a 202: its content and the id it went out with. */
export interface PendingSend {
  key: string;
  id: string;
}

/**
 * The id for this send. Sending the same content again after a failure is a retry and reuses the
 * failed send's id, so if the first try was in fact stored (an answer lost to a timeout), backend
 * stores it once. Different content, or nothing pending (the last send succeeded, and sending the
 * same again means another event), gets a fresh id.
 */
export function idForSend(
  event: EventPayload,
  pending: PendingSend | null,
  freshId: () => string,
): PendingSend {
  const key = eventKey(event);
  if (pending && pending.key === key) return pending;
  return { key, id: freshId() };
}


// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

/** A statistic: at most 3 decimals, exponent form for very large or very small magnitudes. */
export function formatStat(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  if (n === 0) return '0';
  const abs = Math.abs(n);
  if (abs >= 1e9 || abs < 1e-3) return n.toExponential(2);
  const fixed = n.toFixed(3).replace(/\.?0+$/, '');
  return fixed === '-0' ? '0' : groupThousands(fixed);
}

/** A count with thousands separators, independent of the browser's locale. */
export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return groupThousands(String(Math.round(n)));
}

function groupThousands(numeric: string): string {
  const [intPart, frac] = numeric.split('.');
  const sign = intPart.startsWith('-') ? '-' : '';
  const digits = sign ? intPart.slice(1) : intPart;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return sign + grouped + (frac !== undefined ? `.${frac}` : '');
}

/** "just now", "12 s ago", "3 min ago", "2 h ago". */
export function formatAge(thenMs: number, nowMs: number): string {
  const s = Math.floor((nowMs - thenMs) / 1000);
  if (s < 2) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

export function readinessLabel(r: Readiness | Liveness): string {
  switch (r) {
    case 'up':
      return 'up';
    case 'down':
      return 'down';
    case 'ready':
      return 'ready';
    case 'not_ready':
      return 'not ready';
    case 'unreachable':
      return 'unreachable';
    default:
      return 'unknown';
  }
}
