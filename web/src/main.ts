// DOM wiring of the dashboard. All decisions (validation, parsing, formatting, chart geometry,
// health) are in lib.ts, chart.ts and health.ts; this file only reads the form, calls api.ts and
// writes into the page. It writes text and attributes only (never innerHTML), so values from the
// backend cannot inject markup. Lists (badges, table rows, chart lines, legend) are updated in
// place, keyed by name: a refresh changes attributes and text of the elements already there
// instead of rebuilding them, so nothing flickers and an open tooltip stays open.
import './style.css';
import { getHealth, getReadiness, getStats, postEvent, SERIES_MINUTES, type FetchFn } from './api';
import {
  alignSeries,
  assignColors,
  chartDescription,
  chartModel,
  chooseSeries,
  MAX_SERIES,
} from './chart';
import { healthView, type HealthBadge, type HealthView } from './health';
import {
  eventIdFromBytes,
  eventKey,
  formatAge,
  formatCount,
  formatStat,
  idForSend,
  validateEvent,
  type FieldErrors,
  type KindStats,
  type PendingSend,
  type StatsSnapshot,
} from './lib';

const POLL_MS = 5000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const fetchFn: FetchFn = (input, init) => fetch(input, init);

function el<T extends Element = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node as unknown as T;
}

/** Writes only when the text changed: no needless DOM mutation (and no repeated announcement). */
function setText(node: Node, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}

function setAttr(node: Element, name: string, value: string): void {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K): SVGElementTagNameMap[K] {
  return document.createElementNS(SVG_NS, tag);
}

/**
 * Makes `parent`'s children match `items`, in order: an element whose `keyAttr` matches an item's
 * key is kept and updated, missing ones are created, the rest removed.
 */
function reconcile<T, E extends Element>(
  parent: Element,
  items: readonly T[],
  keyAttr: string,
  key: (item: T, index: number) => string,
  create: (item: T) => E,
  update: (node: E, item: T) => void,
): void {
  const existing = new Map<string, E>();
  for (const child of Array.from(parent.children)) {
    const k = child.getAttribute(keyAttr);
    if (k !== null) existing.set(k, child as E);
  }
  let cursor = parent.firstElementChild;
  items.forEach((item, i) => {
    const k = key(item, i);
    let node = existing.get(k);
    if (node) {
      existing.delete(k);
    } else {
      node = create(item);
      node.setAttribute(keyAttr, k);
    }
    update(node, item);
    if (node === cursor) cursor = cursor.nextElementSibling;
    else parent.insertBefore(node, cursor);
  });
  for (const stale of existing.values()) stale.remove();
}

let lastUpdateMs: number | null = null;

function renderLastUpdate(): void {
  setText(
    el('last-update'),
    lastUpdateMs === null
      ? 'not updated yet'
      : `updated at ${new Date(lastUpdateMs).toLocaleTimeString()}`,
  );
}

// --- health ------------------------------------------------------------------------------------

function createBadge(): HTMLLIElement {
  const li = document.createElement('li');
  li.className = 'badge';
  const name = document.createElement('span');
  name.className = 'badge-name';
  const state = document.createElement('span');
  state.className = 'badge-state';
  // The tooltip (title) is not read out reliably by screen readers; this hidden text is.
  const detail = document.createElement('span');
  detail.className = 'sr-only';
  // The space is for text read out ("nats ok", not "natsok"); in the flex box it takes no room.
  li.append(name, ' ', state, detail);
  return li;
}

function updateBadge(li: HTMLLIElement, b: HealthBadge): void {
  li.dataset.state = b.state;
  setAttr(li, 'title', b.detail || `${b.name}: ${b.label}`);
  const [name, state, detail] = Array.from(li.children);
  setText(name, b.name);
  setText(state, b.label);
  setText(detail, b.detail ? `: ${b.detail}` : '');
}

function renderHealth(view: HealthView): void {
  const note = el('health-note');
  setText(note, view.note);
  note.dataset.state = view.available ? 'available' : 'unavailable';
  const list = el('health-badges');
  list.dataset.health = view.available ? 'available' : 'unavailable';
  reconcile(list, view.badges, 'data-service', (b) => b.name, createBadge, updateBadge);
}

async function refreshHealth(): Promise<void> {
  const health = await getHealth(fetchFn);
  // Only when /api/health is missing: backend's /readyz still tells about backend itself.
  const fallback = health.available ? undefined : await getReadiness(fetchFn);
  renderHealth(healthView(health, fallback));
}

// --- stats table -------------------------------------------------------------------------------

function createRow(): HTMLTableRowElement {
  const tr = document.createElement('tr');
  for (let i = 0; i < 5; i++) {
    const td = document.createElement('td');
    if (i > 0) td.className = 'num';
    tr.append(td);
  }
  return tr;
}

function updateRow(tr: HTMLTableRowElement, k: KindStats): void {
  const texts = [k.kind, formatCount(k.count), formatStat(k.mean), formatStat(k.p50), formatStat(k.p95)];
  texts.forEach((text, i) => setText(tr.cells[i], text));
}

function renderTable(stats: StatsSnapshot): void {
  setText(el('stats-total'), formatCount(stats.totalEvents));
  setText(
    el('stats-computed'),
    stats.computedAtUnixMs === null ? '' : `· computed ${formatAge(stats.computedAtUnixMs, Date.now())}`,
  );
  const body = el('stats-body');
  if (stats.kinds.length === 0) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = document.createElement('td');
    td.colSpan = 5;
    td.textContent = 'no events stored yet';
    tr.append(td);
    body.replaceChildren(tr);
    return;
  }
  body.querySelector('tr.empty')?.remove();
  reconcile(body, stats.kinds, 'data-kind', (k) => k.kind, createRow, updateRow);
}

// --- chart -------------------------------------------------------------------------------------

/** Palette slot per kind, kept between refreshes so a kind keeps its colour. */
let colorSlots = new Map<string, number>();
/** Kinds sent from this page, newest first: always drawn (see chart.ts chooseSeries). */
let pinnedKinds: string[] = [];

function clock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function renderChart(stats: StatsSnapshot): void {
  const aligned = alignSeries(stats.series, SERIES_MINUTES);
  const choice = chooseSeries(aligned.rows, pinnedKinds);
  colorSlots = assignColors(
    choice.drawn.map((r) => r.kind),
    colorSlots,
  );
  const model = chartModel(aligned, choice.drawn, colorSlots);
  const { x0, x1, y1 } = model.plot;

  reconcile(
    el('chart-grid'),
    model.yTicks,
    'data-tick',
    (_t, i) => String(i),
    () => {
      const g = svg('g');
      g.append(svg('line'), svg('text'));
      return g;
    },
    (g, t) => {
      const [line, text] = Array.from(g.children);
      setAttr(line, 'x1', String(x0));
      setAttr(line, 'x2', String(x1));
      setAttr(line, 'y1', String(t.y));
      setAttr(line, 'y2', String(t.y));
      setAttr(text, 'x', String(x0 - 6));
      setAttr(text, 'y', String(t.y));
      setText(text, formatCount(t.value));
    },
  );

  reconcile(
    el('chart-x-labels'),
    model.xTicks,
    'data-tick',
    (_t, i) => String(i),
    () => svg('text'),
    (text, t) => {
      setAttr(text, 'x', String(t.x));
      setAttr(text, 'y', String(y1 + 16));
      setAttr(text, 'text-anchor', t.anchor);
      setText(text, clock(t.minuteUnixMs));
    },
  );

  reconcile(
    el('chart-lines'),
    model.lines,
    'data-kind',
    (l) => l.kind,
    () => {
      const line = svg('polyline');
      line.append(svg('title'));
      return line;
    },
    (line, l) => {
      setAttr(line, 'data-slot', String(l.slot));
      setAttr(line, 'points', l.points);
      setText(line.firstElementChild as Element, `${l.kind}: ${l.total} in ${SERIES_MINUTES} min`);
    },
  );

  reconcile(
    el('chart-legend'),
    model.lines,
    'data-kind',
    (l) => l.kind,
    () => {
      const li = document.createElement('li');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.setAttribute('aria-hidden', 'true');
      const name = document.createElement('span');
      const total = document.createElement('span');
      total.className = 'muted';
      li.append(swatch, name, total);
      return li;
    },
    (li, l) => {
      li.dataset.slot = String(l.slot);
      const [, name, total] = Array.from(li.children);
      setText(name, l.kind);
      // In brackets: the text read out is "page_view (12)", not "page_view12".
      setText(total, `(${formatCount(l.total)})`);
    },
  );

  setAttr(el('chart'), 'aria-label', chartDescription(model, SERIES_MINUTES, choice));
  const notes: string[] = [];
  if (!stats.seriesPresent && stats.kinds.length > 0) {
    notes.push('backend sent no per-minute counts (per_minute) with the stats');
  } else if (model.lines.length === 0) {
    notes.push(`no events in the last ${SERIES_MINUTES} minutes`);
  }
  if (choice.notDrawn.length > 0) {
    notes.push(`${choice.notDrawn.length} more kinds not drawn: ${choice.notDrawn.join(', ')}`);
  }
  if (choice.idle.length > 0) notes.push(`${choice.idle.length} kinds without events in this time`);
  setText(el('chart-note'), notes.join(' · '));
}

async function refreshStats(): Promise<void> {
  const result = await getStats(fetchFn, SERIES_MINUTES);
  const error = el('stats-error');
  if (!result.ok) {
    // Keep the last good table and chart on screen; say why they are not fresh.
    setText(error, result.message);
    error.hidden = false;
    return;
  }
  error.hidden = true;
  renderTable(result.stats);
  renderChart(result.stats);
}

// --- polling -----------------------------------------------------------------------------------

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

// --- the event form ----------------------------------------------------------------------------

function showFieldErrors(form: HTMLFormElement, errors: FieldErrors): void {
  for (const span of form.querySelectorAll<HTMLElement>('.field-error')) {
    const name = span.dataset.for as keyof FieldErrors;
    const message = errors[name] ?? '';
    span.textContent = message;
    const input = form.elements.namedItem(name);
    if (input instanceof HTMLInputElement) input.setAttribute('aria-invalid', String(!!message));
  }
}

/** A fresh event id; getRandomValues works on plain http too (randomUUID needs https). */
function freshId(): string {
  return eventIdFromBytes(crypto.getRandomValues(new Uint8Array(16)));
}

function setupForm(): void {
  const form = el<HTMLFormElement>('event-form');
  const result = el('event-result');
  const button = form.querySelector('button');
  // The last send that got no 202. Sending the same content again reuses its id (a retry).
  let pending: PendingSend | null = null;

  const readForm = () => {
    const data = new FormData(form);
    return validateEvent({
      kind: String(data.get('kind') ?? ''),
      value: String(data.get('value') ?? ''),
      source: String(data.get('source') ?? ''),
    });
  };
  // "Retry" while the form still holds the event that failed, "Send" once it holds another.
  const labelButton = () => {
    if (!button) return;
    const v = pending ? readForm() : null;
    const retry = v !== null && v.ok && eventKey(v.event) === pending?.key;
    setText(button, retry ? 'Retry' : 'Send');
  };
  form.addEventListener('input', labelButton);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const validation = readForm();
    if (!validation.ok) {
      showFieldErrors(form, validation.errors);
      result.dataset.state = 'error';
      result.textContent = 'Fix the highlighted fields.';
      return;
    }
    showFieldErrors(form, {});
    const send = idForSend(validation.event, pending, freshId);
    pending = send;
    const event = { ...validation.event, id: send.id };
    if (button) button.disabled = true;
    result.dataset.state = 'pending';
    result.textContent = 'Sending…';
    void postEvent(fetchFn, event)
      .then((res) => {
        if (res.ok) {
          pending = null;
          pinnedKinds = [event.kind, ...pinnedKinds.filter((k) => k !== event.kind)].slice(0, MAX_SERIES);
          result.dataset.state = 'ok';
          result.textContent = `Accepted (202): stored, id ${res.id ?? event.id}`;
          void poll();
        } else if (res.retryable) {
          // Never pretend success: say why, and that retrying is safe (same id, stored once).
          const when = res.retryAfterSeconds ? ` in ${res.retryAfterSeconds} s` : '';
          result.dataset.state = 'retry';
          result.textContent =
            `Not accepted: ${res.message}. You may retry${when}: ` +
            'the retry sends the same event id, so the event is stored only once.';
        } else {
          pending = null;
          result.dataset.state = 'error';
          result.textContent = `Rejected: ${res.message}`;
        }
      })
      .finally(() => {
        if (button) button.disabled = false;
        labelButton();
      });
  });
}

el('poll-seconds').textContent = String(POLL_MS / 1000);
el('chart-minutes').textContent = String(SERIES_MINUTES);
setupForm();
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void poll();
});
void poll();
