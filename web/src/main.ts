// DOM wiring of the dashboard. All decisions (validation, parsing, formatting) are in lib.ts;
// this file only reads the form, calls api.ts and writes text into the page (never innerHTML, so
// values from the backend cannot inject markup).
import './style.css';
import { getLiveness, getReadiness, getStats, postEvent, type FetchFn } from './api';
import {
  formatAge,
  formatCount,
  formatStat,
  readinessLabel,
  validateEvent,
  type FieldErrors,
  type KindStats,
  type Liveness,
  type Readiness,
} from './lib';

const POLL_MS = 5000;
const fetchFn: FetchFn = (input, init) => fetch(input, init);

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node as T;
}

function setStatus(id: string, state: Liveness | Readiness): void {
  const node = el(id);
  node.dataset.state = state;
  node.textContent = readinessLabel(state);
}

let lastUpdateMs: number | null = null;

function renderLastUpdate(): void {
  el('last-update').textContent =
    lastUpdateMs === null
      ? 'not updated yet'
      : `updated at ${new Date(lastUpdateMs).toLocaleTimeString()}`;
}

async function refreshHealth(): Promise<void> {
  const [live, ready] = await Promise.all([getLiveness(fetchFn), getReadiness(fetchFn)]);
  setStatus('backend-live', live);
  setStatus('backend-ready', ready.backend);
  setStatus('analytics-ready', ready.analytics);
  el('readiness-detail').textContent = ready.backend === 'ready' ? '' : ready.detail;
}

function statsRow(k: KindStats): HTMLTableRowElement {
  const tr = document.createElement('tr');
  const cells: [string, boolean][] = [
    [k.kind, false],
    [formatCount(k.count), true],
    [formatStat(k.mean), true],
    [formatStat(k.p50), true],
    [formatStat(k.p95), true],
  ];
  for (const [text, numeric] of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    if (numeric) td.className = 'num';
    tr.append(td);
  }
  return tr;
}

async function refreshStats(): Promise<void> {
  const result = await getStats(fetchFn);
  const error = el('stats-error');
  if (!result.ok) {
    // Keep the last good table on screen; say why it is not fresh.
    error.textContent = result.message;
    error.hidden = false;
    return;
  }
  error.hidden = true;
  const { stats } = result;
  el('stats-total').textContent = formatCount(stats.totalEvents);
  el('stats-computed').textContent =
    stats.computedAtUnixMs === null
      ? ''
      : `· computed ${formatAge(stats.computedAtUnixMs, Date.now())}`;
  const body = el('stats-body');
  if (stats.kinds.length === 0) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = 'no events stored yet';
    tr.append(td);
    body.replaceChildren(tr);
  } else {
    body.replaceChildren(...stats.kinds.map(statsRow));
  }
}

let timer: ReturnType<typeof setTimeout> | undefined;
let inFlight = false;

async function poll(): Promise<void> {
  clearTimeout(timer);
  if (inFlight) return; // the running round schedules the next one
  inFlight = true;
  try {
    await Promise.all([refreshHealth(), refreshStats()]);
    lastUpdateMs = Date.now();
  } finally {
    inFlight = false;
  }
  renderLastUpdate();
  clearTimeout(timer);
  // Hidden tabs do not poll; visibilitychange restarts the loop.
  if (!document.hidden) timer = setTimeout(() => void poll(), POLL_MS);
}

function showFieldErrors(form: HTMLFormElement, errors: FieldErrors): void {
  for (const span of form.querySelectorAll<HTMLElement>('.field-error')) {
    const name = span.dataset.for as keyof FieldErrors;
    const message = errors[name] ?? '';
    span.textContent = message;
    const input = form.elements.namedItem(name);
    if (input instanceof HTMLInputElement) input.setAttribute('aria-invalid', String(!!message));
  }
}

function setupForm(): void {
  const form = el<HTMLFormElement>('event-form');
  const result = el('event-result');
  const button = form.querySelector('button');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const validation = validateEvent({
      kind: String(data.get('kind') ?? ''),
      value: String(data.get('value') ?? ''),
      source: String(data.get('source') ?? ''),
    });
    if (!validation.ok) {
      showFieldErrors(form, validation.errors);
      result.dataset.state = 'error';
      result.textContent = 'Fix the highlighted fields.';
      return;
    }
    showFieldErrors(form, {});
    if (button) button.disabled = true;
    result.dataset.state = 'pending';
    result.textContent = 'Sending…';
    void postEvent(fetchFn, validation.event)
      .then((res) => {
        if (res.ok) {
          result.dataset.state = 'ok';
          result.textContent = res.id ? `Accepted (202), id ${res.id}` : 'Accepted (202)';
          void poll();
        } else {
          result.dataset.state = 'error';
          result.textContent = `Rejected: ${res.message}`;
        }
      })
      .finally(() => {
        if (button) button.disabled = false;
      });
  });
}

el('poll-seconds').textContent = String(POLL_MS / 1000);
setupForm();
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void poll();
});
void poll();
