// The Event Aggregator console: polls /stats, /topics and /console/info,
// keeps the last minutes of counter samples in memory for the rates and the
// chart, and pages through /events on request. No framework, no build step;
// every value from the server is written with textContent, never as HTML.
'use strict';
(() => {
  const KEY_STORE = 'aggregator.apiKey';
  const POLL_MS = 2000;
  const ANNOUNCE_MS = 15000; // a screen reader hears the counters at most this often
  const WINDOW_S = 600; // the chart's span
  const $ = (id) => document.getElementById(id);
  const num = new Intl.NumberFormat('en');
  const dec = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });
  const pct = new Intl.NumberFormat('en', { style: 'percent', maximumFractionDigits: 1 });

  let paused = false;
  let timer = null;
  let needKey = false;
  let samples = []; // {t (s), received, unique, duplicates}
  let announced = { at: -Infinity, text: '' };
  const page = { topic: '', limit: 25, cursor: '', next: '', number: 0, loaded: false, opener: null };

  class HTTPError extends Error {
    constructor(status, detail) {
      super(`HTTP ${status}${detail ? ': ' + detail : ''}`);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.Authorization = 'Bearer ' + key;
    let res;
    try {
      res = await fetch(path, { headers, cache: 'no-store' });
    } catch (e) {
      throw new HTTPError(0, 'the server cannot be reached');
    }
    if (!res.ok) {
      let detail = '';
      try {
        const p = await res.json();
        detail = p.detail || p.title || '';
      } catch (e) { /* not problem+json */ }
      throw new HTTPError(res.status, detail);
    }
    return res.json();
  }

  function showMessage(text) {
    const m = $('message');
    m.textContent = text;
    m.hidden = false;
  }
  function hideMessage() {
    $('message').hidden = true;
    $('message').textContent = '';
  }

  // handleError explains a failed request; a 401 asks for a key.
  function handleError(err) {
    if (!(err instanceof HTTPError)) {
      showMessage('Unexpected error: ' + err.message);
      return;
    }
    if (err.status === 401) {
      const had = sessionStorage.getItem(KEY_STORE) !== null;
      needKey = true;
      $('key-form').hidden = false;
      $('forget-key').hidden = true;
      if (had) {
        sessionStorage.removeItem(KEY_STORE);
        showMessage('The API key was refused (401 Unauthorized' + (err.detail ? ': ' + err.detail : '') + '). Enter a valid key with the read scope.');
        $('key-title').textContent = 'The API key was refused';
      } else {
        showMessage('This server needs an API key to show its data (401 Unauthorized).');
      }
      $('key-input').focus();
      return;
    }
    if (err.status === 403) {
      showMessage('This API key may not read here (403 Forbidden' + (err.detail ? ': ' + err.detail : '') + '). Use a key with the read scope.');
      $('key-form').hidden = false;
      $('forget-key').hidden = false;
      return;
    }
    if (err.status === 0) {
      showMessage('The server cannot be reached; retrying.');
      return;
    }
    showMessage(`The server answered ${err.message}; retrying.`);
  }

  function setCounter(id, value) {
    const el = $(id);
    const s = String(value);
    if (el.dataset.value !== s) { // unchanged text is not announced again
      el.dataset.value = s;
      el.textContent = num.format(value);
    }
  }
  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function addSample(stats) {
    const t = performance.now() / 1000;
    const last = samples[samples.length - 1];
    if (last && stats.received < last.received) samples = []; // another store behind the URL
    samples.push({ t, received: stats.received, unique: stats.unique_processed, duplicates: stats.duplicate_dropped });
    while (samples.length > 2 && samples[0].t < t - WINDOW_S - POLL_MS / 1000) samples.shift();
  }

  // rates turns consecutive samples into per-second rates.
  function rates() {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1], b = samples[i], dt = b.t - a.t;
      if (dt <= 0) continue;
      out.push({ t: b.t, received: (b.received - a.received) / dt, unique: (b.unique - a.unique) / dt,
        duplicates: (b.duplicates - a.duplicates) / dt });
    }
    return out;
  }

  function renderCounters(stats) {
    setCounter('received', stats.received);
    setCounter('unique', stats.unique_processed);
    setCounter('duplicates', stats.duplicate_dropped);
    setText('ratio', stats.received ? pct.format(stats.duplicate_dropped / stats.received) : '–');
    // The visible counters change every poll; the live region speaks a
    // summary only when it changed and not more often than ANNOUNCE_MS.
    const text = `${num.format(stats.received)} received, ${num.format(stats.unique_processed)} unique, ` +
      `${num.format(stats.duplicate_dropped)} duplicates.`;
    const now = performance.now();
    if (text !== announced.text && now - announced.at >= ANNOUNCE_MS) {
      announced = { at: now, text };
      $('counters-live').textContent = text;
    }
    const r = rates();
    const last = r[r.length - 1];
    setText('received-rate', last ? dec.format(last.received) + ' /s' : '');
    setText('unique-rate', last ? dec.format(last.unique) + ' /s' : '');
    setText('duplicates-rate', last ? dec.format(last.duplicates) + ' /s' : '');
    renderChart(r);
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(name, attrs) {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  }

  function renderChart(r) {
    // Drawn at the element's own width, so text is never stretched.
    const chart = $('chart'), W = Math.max(200, Math.round(chart.getBoundingClientRect().width) || 600), H = 180;
    chart.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const end = r.length ? r[r.length - 1].t : 0;
    const max = Math.max(1, ...r.map((p) => Math.max(p.received, p.duplicates)));
    const x = (t) => W - ((end - t) / WINDOW_S) * W;
    const y = (v) => H - 20 - (v / max) * (H - 36); // room for the time labels below
    const nodes = [];
    for (const f of [0.25, 0.5, 0.75, 1]) {
      nodes.push(svg('line', { class: 'grid', x1: 0, x2: W, y1: y(max * f), y2: y(max * f) }));
    }
    for (const [text, attrs] of [[dec.format(max) + ' /s', { x: 4, y: 12 }],
      [`−${WINDOW_S / 60} min`, { x: 4, y: H - 5 }], ['now', { x: W - 4, y: H - 5, 'text-anchor': 'end' }]]) {
      const label = svg('text', attrs);
      label.textContent = text;
      nodes.push(label);
    }
    for (const [field, cls] of [['received', 'ingest'], ['duplicates', 'dup']]) {
      const pts = r.map((p) => `${x(p.t).toFixed(1)},${y(p[field]).toFixed(1)}`).join(' ');
      nodes.push(svg('polyline', { class: cls, points: pts }));
    }
    chart.replaceChildren(...nodes);
    if (!r.length) {
      setText('chart-desc', 'No rates yet: they appear after two updates.');
      return;
    }
    const now = r[r.length - 1];
    const peak = Math.max(...r.map((p) => p.received));
    setText('chart-desc', `Now ${dec.format(now.received)} events/s received, ${dec.format(now.duplicates)}/s duplicates; ` +
      `peak ${dec.format(peak)}/s over the last ${span(end - r[0].t)}.`);
  }

  function span(s) {
    return s < 90 ? `${Math.round(s)} s` : `${dec.format(s / 60)} minutes`;
  }

  function cell(text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function renderTopics(topics) {
    const body = $('topics').tBodies[0];
    const rows = topics.map((c) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = c.topic;
      tr.append(th, cell(num.format(c.received), 'num'), cell(num.format(c.unique_processed), 'num'),
        cell(num.format(c.duplicate_dropped), 'num'),
        cell(c.received ? pct.format(c.duplicate_dropped / c.received) : '–', 'num'));
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement('tr');
      const td = cell('No topics yet.');
      td.colSpan = 5;
      tr.append(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    // The filter offers every topic, and keeps the one chosen.
    const sel = $('topic-filter');
    const names = topics.map((c) => c.topic);
    const have = Array.from(sel.options).slice(1).map((o) => o.value);
    if (have.join('\n') !== names.join('\n')) {
      const keep = sel.value;
      const opts = names.map((n) => new Option(n, n));
      sel.replaceChildren(new Option('All topics', ''), ...opts);
      sel.value = names.includes(keep) ? keep : '';
    }
  }

  function bytes(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let v = n, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? dec.format(v) : String(v)) + ' ' + units[i];
  }
  function period(s) {
    return s === 'forever' ? 'Forever' : s;
  }

  function renderInfo(info) {
    const engine = { sqlite: 'SQLite', pebble: 'Pebble', postgres: 'Postgres' }[info.engine] || info.engine;
    setText('mode', (info.mode === 'distributed' ? 'Distributed mode' : 'All-in-one') + ' (' + engine + ')');
    setText('retention', info.retention === 'forever' ? 'Forever (nothing is deleted)' : period(info.retention));
    setText('dedup-window', period(info.dedup_window));
    const size = $('store-size');
    setText('store-size', bytes(info.store_bytes));
    size.title = num.format(info.store_bytes) + ' bytes';
    size.dataset.value = String(info.store_bytes);
    const overrides = Object.entries(info.retention_topics || {});
    $('retention-topics-wrap').hidden = overrides.length === 0;
    $('retention-topics').replaceChildren(...overrides.map(([t, d]) => {
      const li = document.createElement('li');
      li.textContent = `${t}: ${period(d)}`;
      return li;
    }));
    const lag = info.consumer_lag;
    $('lag-wrap').hidden = !lag;
    if (!lag) return;
    const parts = lag.partitions || [];
    const total = parts.reduce((s, p) => s + p.lag, 0);
    let note = parts.length
      ? `${num.format(total)} records not yet processed across ${parts.length} partitions.`
      : 'No worker reported a partition.';
    if (lag.unreachable && lag.unreachable.length) note += ' Not reachable: ' + lag.unreachable.join(', ') + '.';
    setText('lag-note', note);
    $('lag').tBodies[0].replaceChildren(...parts.map((p) => {
      const tr = document.createElement('tr');
      tr.append(cell(String(p.partition)), cell(num.format(p.lag), 'num'), cell(p.worker));
      return tr;
    }));
  }

  async function refresh() {
    timer = null;
    try {
      const [stats, topics, info] = await Promise.all([api('/stats'), api('/topics'), api('/console/info')]);
      needKey = false;
      hideMessage();
      $('key-form').hidden = true;
      $('forget-key').hidden = sessionStorage.getItem(KEY_STORE) === null;
      addSample(stats);
      renderCounters(stats);
      renderTopics(topics.topics);
      renderInfo(info);
      setText('updated', 'updated ' + new Date().toLocaleTimeString('en-GB'));
      if (!page.loaded) loadPage('');
    } catch (e) {
      handleError(e);
    }
    schedule();
  }

  function schedule() {
    if (!paused && !needKey && timer === null) timer = setTimeout(refresh, POLL_MS);
  }

  async function loadPage(cursor, byUser) {
    page.loaded = true;
    const q = new URLSearchParams({ limit: String(page.limit) });
    if (page.topic) q.set('topic', page.topic);
    if (cursor) q.set('cursor', cursor);
    setText('events-status', 'Loading…');
    let res;
    try {
      res = await api('/events?' + q);
    } catch (e) {
      page.loaded = false;
      setText('events-status', 'Events could not be loaded.');
      handleError(e);
      return;
    }
    page.cursor = cursor;
    page.next = res.next_cursor || '';
    page.number = cursor ? page.number + 1 : 1;
    const rows = res.events.map((ev, i) => {
      const tr = document.createElement('tr');
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = ev.topic;
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.textContent = 'JSON';
      btn.setAttribute('aria-label', `Show event ${ev.event_id} of ${ev.topic} as JSON`);
      btn.setAttribute('aria-controls', 'event-detail');
      btn.addEventListener('click', () => showEvent(ev, btn));
      const last = document.createElement('td');
      last.append(btn);
      tr.append(th, cell(ev.event_id), cell(ev.timestamp), cell(ev.source), cell(ev.processed_at), last);
      tr.dataset.eventId = ev.event_id;
      tr.dataset.topic = ev.topic;
      return tr;
    });
    $('events').tBodies[0].replaceChildren(...rows);
    $('next-page').disabled = !page.next;
    $('first-page').disabled = page.number <= 1;
    const where = page.topic ? `topic ${page.topic}` : 'all topics';
    setText('events-status', `Page ${page.number} of ${where}: ${res.count} events` +
      (page.next ? '; more after these.' : '; the last page.'));
    $('event-detail').hidden = true;
    // The button pressed may now be disabled, which drops focus to the body:
    // keep the reader at the new page instead.
    if (byUser && (document.activeElement === document.body || document.activeElement?.disabled)) $('events-status').focus();
  }

  function showEvent(ev, opener) {
    page.opener = opener;
    setText('detail-title', `Event ${ev.event_id} of ${ev.topic}`);
    $('event-json').textContent = JSON.stringify(ev, null, 2);
    const d = $('event-detail');
    d.hidden = false;
    d.focus();
  }

  function start() {
    $('events-status').tabIndex = -1;
    $('pause').addEventListener('click', () => {
      paused = !paused;
      $('pause').setAttribute('aria-pressed', String(paused));
      $('pause').textContent = paused ? 'Resume updates' : 'Pause updates';
      if (paused && timer !== null) { clearTimeout(timer); timer = null; }
      if (!paused) refresh();
    });
    $('forget-key').addEventListener('click', () => {
      sessionStorage.removeItem(KEY_STORE);
      $('key-title').textContent = 'API key needed';
      if (timer !== null) { clearTimeout(timer); timer = null; }
      page.loaded = false;
      refresh();
    });
    $('key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const key = $('key-input').value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORE, key);
      $('key-input').value = '';
      hideMessage();
      needKey = false;
      page.loaded = false;
      if (timer !== null) { clearTimeout(timer); timer = null; }
      refresh();
    });
    $('events-form').addEventListener('submit', (e) => {
      e.preventDefault();
      page.topic = $('topic-filter').value;
      page.limit = Number($('page-size').value);
      loadPage('', true);
    });
    $('next-page').addEventListener('click', () => { if (page.next) loadPage(page.next, true); });
    $('first-page').addEventListener('click', () => loadPage('', true));
    $('close-detail').addEventListener('click', () => {
      $('event-detail').hidden = true;
      if (page.opener && page.opener.isConnected) page.opener.focus();
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !$('event-detail').hidden) $('close-detail').click();
    });
    refresh();
  }

  start();
})();
