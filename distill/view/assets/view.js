// distill view: the page's behaviour. Every string from the report is untrusted: it reaches the DOM through
// textContent, or through markdown-it with HTML and images off (its output is escaped text and safe tags).
"use strict";
(() => {
  const PAGE = 25;        // sample rows per page
  const KEEP_CHUNKS = 8;  // decoded chunks kept for paging back and forth
  const CLAMP_CHARS = 1500, CLAMP_LINES = 24;  // longer texts start folded, with "show more"
  const COLORS = ["#3b6fd8", "#e0703b", "#3ba55d", "#c0392b", "#8e5bd8", "#c9a227", "#2aa3b8", "#d8589e"];

  const report = JSON.parse(document.getElementById("distill-report").textContent);
  const md = markdownit({ html: false, linkify: false, typographer: false });
  md.disable("image");
  const renderLinkOpen = md.renderer.rules.link_open || ((tokens, i, options, env, self) => self.renderToken(tokens, i, options));
  md.renderer.rules.link_open = (tokens, i, options, env, self) => {
    tokens[i].attrSet("rel", "noopener noreferrer nofollow");
    tokens[i].attrSet("target", "_blank");
    return renderLinkOpen(tokens, i, options, env, self);
  };

  const view = { chartsDrawn: 0, runs: {} };
  window.distillView = view;
  let busyJobs = 0;
  const setBusy = (delta) => {
    busyJobs = Math.max(0, busyJobs + delta);
    document.body.dataset.busy = busyJobs ? "1" : "0";
  };

  // ---- small DOM helpers (text only) ----
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }
  // Any value as text (an object, e.g. a message's content parts, as its JSON).
  const str = (value) => (typeof value === "string" ? value : value == null ? ""
    : typeof value === "object" ? JSON.stringify(value) : String(value));
  const fmt = (value) => {
    if (value === null || value === undefined) return "—";
    if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en-US")
      : value.toLocaleString("en-US", { maximumFractionDigits: 4 });
    return str(value);
  };
  function table(columns, rows) {
    const head = el("tr", {}, ...columns.map((c) => el("th", { text: String(c) })));
    const body = rows.map((row) => el("tr", {}, ...row.map((v) => el("td", { class: typeof v === "number" ? "num" : "", text: fmt(v) }))));
    return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
  }
  function markdown(text, raw) {
    text = str(text);
    if (raw) return el("div", { class: "raw", text });
    const node = el("div", { class: "markdown" });
    node.innerHTML = md.render(text);  // markdown-it escapes all source text (html: false)
    return node;
  }
  function clamp(body, text) {
    text = str(text);
    if (text.length <= CLAMP_CHARS && text.split("\n").length <= CLAMP_LINES) return [body];
    body.classList.add("clamp", "clamped");
    const more = el("button", { class: "more", type: "button", text: "show more" });
    more.addEventListener("click", () => {
      more.textContent = body.classList.toggle("clamped") ? "show more" : "show less";
    });
    return [body, more];
  }

  function showRun(id) {
    for (const r of runs) {
      r.section.hidden = r.run.id !== id;
      if (r.tab) r.tab.setAttribute("aria-selected", String(r.run.id === id));
    }
  }

  function buildRun(run) {
    const section = el("section", { class: "run", "data-run": run.id });
    const parts = [["Overview", overview(run)], ["Charts", charts(run)], ["Results", results(run)]];
    const samples = run.samples ? new Samples(run) : null;
    if (samples) parts.push(["Samples", samples.root]);
    const nav = el("nav", { class: "sections" });
    const headRow = el("div", { class: "run-head" }, el("h2", { text: run.name || run.id }), el("span", { class: "kind", text: run.kind || "" }), nav);
    section.append(headRow);
    for (const [name, content] of parts) {
      if (!content) continue;
      const heading = el("h2", { text: name });
      const jump = el("button", { type: "button", text: name });
      jump.addEventListener("click", () => heading.scrollIntoView({ block: "start" }));
      nav.append(jump);
      section.append(heading, content);
    }
    main.append(section);
    const entry = { run, section, samples };
    view.runs[run.id] = entry;
    return entry;
  }

  function overview(run) {
    const box = el("div", { class: "overview" });
    for (const t of run.overview || []) box.append(el("h3", { text: t.title }), table(t.columns, t.rows));
    if ((run.notes || []).length) box.append(el("ul", { class: "notes" }, ...run.notes.map((n) => el("li", { text: n }))));
    return box.childNodes.length ? box : null;
  }

  const pending = [];  // charts are drawn once the frame is in the document
  function charts(run) {
    if (!(run.charts || []).length) return null;
    const box = el("div", { class: "charts" });
    for (const chart of run.charts) {
      const canvas = el("canvas", { width: "520", height: "280", "data-chart": chart.id });
      box.append(el("div", { class: "chart" }, el("h3", { text: chart.title }), canvas));
      pending.push([canvas, chart]);
    }
    return box;
  }
  const counted = { id: "distill-drawn", afterRender: (chart) => {
    if (!chart.$distillDrawn) { chart.$distillDrawn = true; view.chartsDrawn += 1; }
  } };
  function draw(canvas, chart) {
    const several = chart.series.length > 1, histogram = chart.type === "bar" && chart.histogram;
    const datasets = chart.series.map((s, i) => ({
      label: s.label, data: s.data, borderColor: COLORS[i % COLORS.length],
      backgroundColor: COLORS[i % COLORS.length] + (chart.type === "line" ? "" : "cc"),
      ...(histogram ? { barPercentage: 1, categoryPercentage: 1, borderWidth: 0 } : {}),
      ...(chart.type === "line" ? { pointRadius: chart.labels.length > 60 ? 0 : 2, spanGaps: true } : {}),
    }));
    const axis = (title, extra) => ({ stacked: !!chart.stacked, title: { display: !!title, text: title }, ...extra });
    new Chart(canvas, {
      type: chart.type, data: { labels: chart.labels, datasets },
      options: {
        animation: false, responsive: false,
        plugins: { legend: { display: several } },
        scales: { x: axis(chart.x, {}), y: axis(chart.y, { beginAtZero: true }) },
      },
      plugins: [counted],
    });
  }

  function results(run) {
    if (!(run.results || []).length && !(run.images || []).length) return null;
    const box = el("div", { class: "results" });
    for (const r of run.results || []) box.append(el("h3", { text: r.title }), markdown(r.markdown, false));
    for (const image of run.images || []) {
      const img = el("img", { alt: image.title });
      img.src = "data:image/png;base64," + image.png;
      box.append(el("figure", {}, img, el("figcaption", { text: image.title })));
    }
    return box;
  }

  // ---- chunks: base64 -> gunzip -> JSON, a few kept ----
  const decoded = new Map();
  async function chunk(id) {
    if (decoded.has(id)) {
      const hit = decoded.get(id);
      decoded.delete(id);
      decoded.set(id, hit);
      return hit;
    }
    const source = document.getElementById(id);
    if (!source) throw new Error(`chunk ${id} is missing from the page`);
    const bytes = base64Bytes(source.textContent.trim());
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const rows = JSON.parse(await new Response(stream).text());
    const entry = { rows, hay: null };
    decoded.set(id, entry);
    if (decoded.size > KEEP_CHUNKS) decoded.delete(decoded.keys().next().value);
    return entry;
  }
  function base64Bytes(text) {
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const binary = atob(text), bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }
  const nextTask = () => (globalThis.scheduler && scheduler.yield ? scheduler.yield() : new Promise((r) => setTimeout(r, 0)));

  // Every string a reader could search for: title, meta, and the text of every block.
  function haystack(sample) {
    const parts = [sample.title];
    for (const [k, v] of sample.meta || []) parts.push(k, v);
    const walk = (blocks) => {
      for (const b of blocks || []) {
        if (b.t === "chat") for (const m of b.messages || []) parts.push(m.role, m.content);
        else if (b.t === "text") parts.push(b.label, b.text);
        else if (b.t === "columns") for (const item of b.items || []) { parts.push(item.label); walk(item.blocks); }
        else if (b.t === "table") { parts.push(...(b.columns || [])); for (const row of b.rows || []) parts.push(...row); }
        else if (b.t === "note") parts.push(b.text);
        else if (b.t === "link") parts.push(b.label);
      }
    };
    walk(sample.blocks);
    return parts.map(str).join("\n").toLowerCase();
  }

  // ---- the sample list of one run ----
  class Samples {
    constructor(run) {
      this.run = run;
      this.set = run.samples;
      this.page = 0;
      this.matches = Array.from({ length: this.set.count }, (_, i) => i);
      this.job = 0;  // a newer filter or search makes older ones stop
      this.root = el("div", { class: "samples" });
      this.buildFilters();
      this.count = el("span", { class: "count" });
      this.progress = el("span", { class: "progress" });
      this.prev = el("button", { type: "button", text: "‹ prev" });
      this.next = el("button", { type: "button", text: "next ›" });
      this.pageInput = el("input", { type: "number", min: "1", value: "1", "aria-label": "page" });
      this.pageOf = el("span");
      const pager = el("span", { class: "pager" }, this.prev, el("span", { text: "page" }), this.pageInput, this.pageOf, this.next);
      this.root.append(el("div", { class: "bar" }, this.filters, el("div", { class: "status" }, this.count, pager, this.progress)));
      this.list = el("div", { class: "list" });
      this.root.append(this.list);
      this.prev.addEventListener("click", () => this.go(this.page - 1));
      this.next.addEventListener("click", () => this.go(this.page + 1));
      this.pageInput.addEventListener("change", () => this.go(Number(this.pageInput.value) - 1));
    }

    buildFilters() {
      const set = this.set;
      this.filters = el("div", { class: "filters" });
      this.facetSelects = (set.facets || []).map((facet) => {
        const counts = new Array(facet.values.length).fill(0);
        for (const code of facet.codes) if (code >= 0) counts[code] += 1;
        const select = el("select", { "data-facet": facet.name },
          el("option", { value: "-1", text: `all (${fmt(set.count)})` }),
          ...facet.values.map((v, i) => el("option", { value: String(i), text: `${v} (${fmt(counts[i])})` })));
        select.addEventListener("change", () => this.refilter());
        this.filters.append(el("label", {}, el("span", { text: facet.label }), select));
        return select;
      });
      this.ranges = (set.numbers || []).map((number) => {
        const min = el("input", { type: "number", step: "any", placeholder: "min", "data-number": number.name, "data-bound": "min" });
        const max = el("input", { type: "number", step: "any", placeholder: "max", "data-number": number.name, "data-bound": "max" });
        for (const input of [min, max]) input.addEventListener("input", () => this.refilter(300));
        this.filters.append(el("label", {}, el("span", { text: number.label }), min, el("span", { text: "–" }), max));
        return [min, max];
      });
      this.search = el("input", { type: "search", placeholder: "search all text", "aria-label": "search" });
      this.search.addEventListener("input", () => this.refilter(300));
      this.raw = el("input", { type: "checkbox" });
      this.raw.addEventListener("change", () => this.go(this.page));
      this.filters.append(this.search, el("label", {}, this.raw, el("span", { text: "raw text" })));
    }

    // Filters change: work starts now (busy), runs after a short pause while the reader types.
    refilter(delay = 0) {
      const job = ++this.job;
      this.cancelWait();
      this.waiting = true;
      setBusy(+1);
      this.timer = setTimeout(() => {
        this.waiting = false;
        this.filter(job).finally(() => setBusy(-1));
      }, delay);
    }

    cancelWait() {
      clearTimeout(this.timer);
      if (this.waiting) setBusy(-1);
      this.waiting = false;
    }

    // The rows the facets and number ranges keep, from the index alone.
    indexed() {
      const set = this.set;
      const facets = this.facetSelects.map((s, i) => [set.facets[i].codes, Number(s.value)]).filter(([, v]) => v >= 0);
      const ranges = this.ranges.map(([min, max], i) => [set.numbers[i].values, min.value === "" ? null : Number(min.value), max.value === "" ? null : Number(max.value)])
        .filter(([, lo, hi]) => (lo !== null && !Number.isNaN(lo)) || (hi !== null && !Number.isNaN(hi)));
      const keep = [];
      rows: for (let row = 0; row < set.count; row++) {
        for (const [codes, want] of facets) if (codes[row] !== want) continue rows;
        for (const [values, lo, hi] of ranges) {
          const v = values[row];
          if (v === null || v === undefined || (lo !== null && v < lo) || (hi !== null && v > hi)) continue rows;
        }
        keep.push(row);
      }
      return keep;
    }

    async filter(job) {
      let rows = this.indexed();
      const query = this.search.value.trim().toLowerCase();
      if (query) {
        rows = await this.searchRows(rows, query, job);
        if (rows === null) return;  // a newer job took over
      } else {
        this.progress.textContent = "";
      }
      if (job !== this.job) return;
      this.matches = rows;
      this.page = 0;
      await this.show();
    }

    // Decompress the chunks holding candidate rows one after another, yielding between them.
    async searchRows(rows, query, job) {
      const size = this.set.chunkSize, found = [];
      let at = 0;
      const total = rows.length ? Math.floor(rows[rows.length - 1] / size) + 1 : 0;
      for (let c = 0; c < total; c++) {
        const inChunk = [];
        while (at < rows.length && Math.floor(rows[at] / size) === c) inChunk.push(rows[at++]);
        if (!inChunk.length) continue;
        this.progress.textContent = `searching… ${Math.round((100 * c) / total)}% (${fmt(found.length)} found)`;
        let entry;
        try {
          entry = await chunk(this.set.chunks[c]);
        } catch (err) {
          this.chunkFailed(this.set.chunks[c], err);
          return null;
        }
        if (job !== this.job) return null;
        entry.hay ??= entry.rows.map(haystack);
        for (const row of inChunk) if (entry.hay[row - c * size].includes(query)) found.push(row);
        await nextTask();
        if (job !== this.job) return null;
      }
      this.progress.textContent = "";
      return found;
    }

    chunkFailed(id, err) {
      console.error(`distill view: cannot decode ${id}:`, err);
      this.progress.textContent = "";
      this.list.replaceChildren(el("div", { class: "error", text: `Could not decode the samples in ${id}: ${err && err.message ? err.message : err}` }));
    }

    go(page) {
      const pages = this.pages();
      if (!Number.isFinite(page)) page = this.page;
      this.page = Math.min(Math.max(0, Math.trunc(page)), pages - 1);
      setBusy(+1);
      return this.show().finally(() => setBusy(-1));
    }

    pages() { return Math.max(1, Math.ceil(this.matches.length / PAGE)); }

    // Render the current page (and the count and pager).
    async show() {
      const job = this.job, set = this.set, matches = this.matches;
      const pages = this.pages();
      const filtered = matches.length !== set.count;
      this.count.textContent = filtered ? `${fmt(matches.length)} of ${fmt(set.count)} rows` : `${fmt(set.count)} rows`;
      this.pageInput.value = String(this.page + 1);
      this.pageInput.max = String(pages);
      this.pageOf.textContent = `of ${fmt(pages)}`;
      this.prev.disabled = this.page === 0;
      this.next.disabled = this.page >= pages - 1;
      const rows = matches.slice(this.page * PAGE, (this.page + 1) * PAGE);
      const cards = [];
      const shownPage = this.page;
      for (const row of rows) {
        const id = set.chunks[Math.floor(row / set.chunkSize)];
        let entry;
        try {
          entry = await chunk(id);
        } catch (err) {
          this.chunkFailed(id, err);
          return;
        }
        if (job !== this.job || shownPage !== this.page) return;
        try {
          cards.push(this.card(entry.rows[row % set.chunkSize], row));
        } catch (err) {  // a row not shaped as the page expects: say so, show the others
          console.error(`distill view: cannot show row ${row + 1}:`, err);
          cards.push(el("div", { class: "error", text: `Could not show row ${row + 1}: ${err.message}` }));
        }
      }
      this.list.replaceChildren(...(cards.length ? cards : [el("p", { class: "empty", text: set.count ? "No rows match." : "No samples." })]));
    }

    card(sample, row) {
      const raw = this.raw.checked;
      const head = el("header", {}, el("span", { class: "row-no", text: `#${row + 1}` }), el("span", { class: "title", text: sample.title || "" }));
      const chips = el("div", { class: "chips" }, ...(sample.meta || []).map(([k, v]) => el("span", { class: "chip" }, el("b", { text: str(k) }), ` ${str(v)}`)));
      const node = el("article", { class: "sample", "data-row": String(row) }, head);
      if ((sample.meta || []).length) node.append(chips);
      for (const b of sample.blocks || []) node.append(block(b, raw));
      return node;
    }

    // Show one row: clear every filter, turn to its page, scroll to it.
    async reveal(row) {
      if (!(row >= 0 && row < this.set.count)) return;
      this.job++;
      this.cancelWait();
      for (const s of this.facetSelects) s.value = "-1";
      for (const [min, max] of this.ranges) min.value = max.value = "";
      this.search.value = "";
      this.progress.textContent = "";
      this.matches = Array.from({ length: this.set.count }, (_, i) => i);
      this.page = Math.floor(row / PAGE);
      await this.show();
      const card = this.list.querySelector(`[data-row="${row}"]`);
      if (card) {
        for (const old of this.list.querySelectorAll(".target")) old.classList.remove("target");
        card.classList.add("target");
        card.scrollIntoView({ block: "start" });
      }
    }
  }

  function block(b, raw) {
    const box = el("div", { class: `block ${b.t}` });
    if (b.t === "chat") {
      box.classList.add("chat");
      for (const m of b.messages || []) {
        const role = String(m.role ?? "");
        const body = markdown(m.content, raw);
        box.append(el("div", { class: `msg ${["user", "assistant", "system"].includes(role) ? role : "other"}` },
          el("div", { class: "role", text: role }), ...clamp(body, m.content)));
      }
    } else if (b.t === "text") {
      if (b.label) box.append(el("div", { class: "block-label", text: b.label }));
      box.append(...clamp(markdown(b.text, raw), b.text));
    } else if (b.t === "columns") {
      box.classList.add("columns");
      for (const item of b.items || []) {
        box.append(el("div", { class: "column" }, el("div", { class: "block-label", text: item.label || "" }), ...(item.blocks || []).map((x) => block(x, raw))));
      }
    } else if (b.t === "table") {
      box.append(table(b.columns || [], b.rows || []));
    } else if (b.t === "note") {
      box.className = `block note ${["info", "warn", "error"].includes(b.tone) ? b.tone : "info"}`;
      box.textContent = String(b.text ?? "");
    } else if (b.t === "link") {
      const target = `#${encodeURIComponent(b.run)}/${Number(b.row) + 1}`;
      const a = el("a", { class: "jump", href: target, text: b.label || target });
      a.addEventListener("click", (event) => {
        event.preventDefault();
        if (location.hash === target) openHash();
        else location.hash = target;  // hashchange opens it
      });
      box.append(a);
    } else {
      box.append(el("div", { class: "raw", text: JSON.stringify(b) }));
    }
    return box;
  }

  // #RUNID/ROW (ROW as shown on the card, from 1) opens that row; #RUNID opens the run.
  async function openHash() {
    const match = /^#([^/]+)(?:\/(\d+))?$/.exec(location.hash);
    const entry = match && view.runs[decodeURIComponent(match[1])];
    if (!entry) return false;
    showRun(entry.run.id);
    if (match[2] && entry.samples) {
      setBusy(+1);
      try {
        await entry.samples.reveal(Number(match[2]) - 1);
      } finally {
        setBusy(-1);
      }
    }
    return true;
  }
  window.addEventListener("hashchange", () => openHash());

  // ---- the frame: tabs, one section per run ----
  const tabs = document.getElementById("distill-tabs");
  const main = document.getElementById("distill-runs");
  main.replaceChildren();
  const runs = report.runs.map((run) => buildRun(run));
  if (runs.length > 1) {
    tabs.setAttribute("role", "tablist");
    for (const r of runs) {
      const tab = el("button", { type: "button", role: "tab", text: r.run.name || r.run.id });
      tab.addEventListener("click", () => showRun(r.run.id));
      r.tab = tab;
      tabs.append(tab);
    }
  }
  if (!runs.length) main.append(el("p", { class: "empty", text: "Nothing to show: the report has no runs." }));

  async function start() {
    if (runs.length) showRun(runs[0].run.id);
    for (const [canvas, chart] of pending) draw(canvas, chart);
    for (const r of runs) {
      if (!r.samples) continue;
      await r.samples.show();
    }
    await openHash();
    setBusy(0);
    document.body.dataset.ready = "1";
  }
  start().catch((err) => {
    console.error("distill view:", err);
    main.prepend(el("p", { class: "list" }, el("span", { class: "error", text: `The page failed to render: ${err.message}` })));
  });
})();
