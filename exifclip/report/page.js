"use strict";
// The report's script: builds the table and the detail view from the JSON block. Every value that came from
// an input (file names, EXIF, messages) is written with textContent, never as HTML.
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const items = data.items;
  const $ = (id) => document.getElementById(id);
  const state = { key: "score", dir: -1, text: "", min: null, show: "all", overlay: false, open: -1 };
  let visible = [];
  let cursor = -1;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(x, digits) { return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "\u2013"; }
  function safeLink(href) { return typeof href === "string" && /^\.\.?\//.test(href) ? href : null; }
  function statusClass(s) { return s === "ok" ? "st-ok" : s === "failed" ? "st-failed" : "st-other"; }

  function thumbSource(item) {
    return state.overlay && item.thumb_overlay ? item.thumb_overlay : item.thumb;
  }

  function buildRow(item) {
    const tr = el("tr");
    tr.tabIndex = -1;
    tr.dataset.id = String(item.id);
    const cell = el("td", "thumb");
    if (item.thumb) {
      const img = el("img");
      img.alt = "thumbnail";
      if (item.thumb_size) { img.width = item.thumb_size[0]; img.height = item.thumb_size[1]; }
      img.src = thumbSource(item);
      item.img = img;
      cell.append(img);
    } else {
      cell.append(el("span", "nothumb", item.available ? "no picture" : "input not found"));
    }
    const name = el("td", "name", item.name);
    name.title = item.file;
    const status = el("td");
    status.append(el("span", "badge " + statusClass(item.status), item.status));
    const flags = el("td", "num" + (item.flags ? " flag" : ""), item.flags);
    tr.append(cell, name, el("td", "num", num(item.score, 3)),
      el("td", "num", typeof item.spliced_fraction === "number" ? (100 * item.spliced_fraction).toFixed(1) + " %" : "\u2013"),
      flags, el("td", "num", num(fit(item), 2)), status, el("td", "verdict", item.status === "ok" ? item.verdict : item.error || ""));
    tr.addEventListener("click", () => openDetail(item));
    item.row = tr;
  }

  function fit(item) { return item.exif_consistency ? item.exif_consistency.all : null; }

  function matches(item) {
    if (state.text && !item.file.toLowerCase().includes(state.text)) return false;
    if (state.min !== null && !(typeof item.score === "number" && item.score >= state.min)) return false;
    if (state.show === "failed") return item.status !== "ok";
    if (state.show === "flagged") return item.flagged === true;
    if (state.show === "metadata") return item.flags > 0;
    return true;
  }

  function sortValue(item) {
    switch (state.key) {
      case "name": return item.name.toLowerCase();
      case "fraction": return item.spliced_fraction;
      case "flags": return item.flags;
      case "fit": return fit(item);
      case "status": return item.status;
      default: return item.score;
    }
  }

  function compare(a, b) {
    const x = sortValue(a), y = sortValue(b);
    const xMissing = x === undefined || x === null, yMissing = y === undefined || y === null;
    if (xMissing || yMissing) return xMissing === yMissing ? a.id - b.id : xMissing ? 1 : -1;
    if (x < y) return -state.dir;
    if (x > y) return state.dir;
    return a.id - b.id;
  }

  function render() {
    visible = items.filter(matches).sort(compare);
    $("rows").replaceChildren(...visible.map((item) => item.row));
    $("shown").textContent = "showing " + visible.length + " of " + items.length;
    document.querySelectorAll("th button[data-sort]").forEach((b) => {
      const th = b.parentElement;
      if (b.dataset.sort === state.key) th.setAttribute("aria-sort", state.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
    cursor = -1;
  }

  function setOverlay(on) {
    state.overlay = on;
    $("overlay").checked = on;
    items.forEach((item) => { if (item.img) item.img.src = thumbSource(item); });
    if (state.open >= 0) openDetail(items[state.open]);
  }

  function moveCursor(step) {
    if (!visible.length) return;
    cursor = Math.max(0, Math.min(visible.length - 1, cursor + step));
    const row = visible[cursor].row;
    document.querySelectorAll("tr.current").forEach((r) => r.classList.remove("current"));
    row.classList.add("current");
    row.focus();
    row.scrollIntoView({ block: "nearest" });
  }

  function dl(pairs) {
    const list = el("dl");
    pairs.forEach(([k, v]) => {
      if (v === undefined || v === null || v === "") return;
      list.append(el("dt", null, k), el("dd", null, typeof v === "object" ? JSON.stringify(v) : v));
    });
    return list;
  }

  function figure(item) {
    const fig = el("figure");
    const src = state.overlay ? item.preview_overlay || item.thumb_overlay : item.preview || item.thumb;
    if (src) {
      const img = el("img", "preview");
      img.alt = state.overlay ? "photo with heatmap overlay" : "photo";
      img.src = src;
      fig.append(img);
    } else {
      fig.append(el("p", "nothumb", "no picture of this input"));
    }
    const toggle = el("button", null, state.overlay ? "show the photo" : "show the heatmap overlay (h)");
    toggle.type = "button";
    toggle.addEventListener("click", () => setOverlay(!state.overlay));
    fig.append(toggle);
    const scale = el("div", "scale");
    const bar = el("img");
    bar.alt = "heatmap colour scale";
    bar.src = data.scale_bar;
    const range = item.heatmap_scale || data.summary.scale;
    scale.append(el("span", null, num(range[0], 2)), bar, el("span", null, num(range[1], 2)));
    fig.append(scale, el("p", "legend", "Heatmap: how far each region's camera traces are from the photo's " +
      "majority (dark: like the rest, bright: different). Cyan outline: the mask. Shown upright (EXIF " +
      "orientation " + (item.orientation || 1) + "); the analysis used the pixels as stored."));
    return fig;
  }

  function checksList(item) {
    const list = el("ul", "checks");
    (item.checks || []).forEach((c) => {
      const li = el("li");
      li.append(el("span", c.status, c.status + " "), el("strong", null, c.name + ": "), el("span", null, c.detail));
      list.append(li);
    });
    if (!list.children.length) list.append(el("li", "unknown", "not checked (the input could not be read)"));
    return list;
  }

  function consistencyList(item) {
    if (!item.exif_consistency) {
      return el("p", "unknown", item.exif_tags && Object.keys(item.exif_tags).length ?
        "not computed (build the report with --exif-consistency)" : "no EXIF to compare");
    }
    const list = dl(Object.entries(item.exif_consistency).map(([group, v]) =>
      [group, v === null ? "no such tags" : (100 * v).toFixed(0) + " % of other cameras' EXIF fit less well"]));
    const note = el("p", "legend", "The share of a reference pool of other cameras' EXIF that fits these pixels " +
      "less well than the EXIF the file claims. Low: the pixels look more like other EXIF. Measured on unseen " +
      "cameras it separates other camera models only weakly and other settings not at all: see the docs.");
    const box = el("div");
    box.append(list, note);
    return box;
  }

  function custody(item) {
    const same = item.sha256 && item.sha256_now ? (item.sha256 === item.sha256_now ? "the same file" :
      "CHANGED since the analysis") : item.sha256_now ? "no hash recorded at analysis" : "input not found now";
    return dl([["file", item.file], ["SHA-256 at analysis", item.sha256 || "not recorded"],
      ["SHA-256 now", item.sha256_now || "\u2013"], ["input now", same], ["model", item.model],
      ["exifclip", item.exifclip_version], ["settings", item.settings], ["grid", item.grid],
      ["timings (s)", item.timings]]);
  }

  function openDetail(item) {
    state.open = item.id;
    const body = $("detail-body");
    $("detail-title").textContent = item.name;
    const grid = el("div", "detail-grid");
    const side = el("div");
    side.append(el("h3", null, "Detection"), dl([["status", item.status], ["score", num(item.score, 4)],
      ["score method", item.score_method], ["false-alarm rate", num(item.false_alarm_rate, 3)],
      ["flagged", item.flagged === null || item.flagged === undefined ? "no calibration" : String(item.flagged)],
      ["verdict", item.verdict], ["masked", typeof item.spliced_fraction === "number" ?
        (100 * item.spliced_fraction).toFixed(1) + " %" : null], ["heatmap max", num(item.heatmap_max, 3)],
      ...Object.entries(item.scores || {}).filter(([k]) => k !== item.score_method)
        .map(([k, v]) => ["score: " + k, num(v, 4)]),
      ["error", item.error], ["problem", item.problem],
      ["warnings", item.warnings && item.warnings.length ? item.warnings.join("; ") : null]]));
    side.append(el("h3", null, "Metadata red flags"), checksList(item));
    side.append(el("h3", null, "Do the pixels match the EXIF? (learned)"), consistencyList(item));
    side.append(el("h3", null, "EXIF as the model reads it"), el("pre", null, item.exif_text || "(no EXIF)"));
    if (item.exif_tags && Object.keys(item.exif_tags).length) {
      const all = el("details");
      all.append(el("summary", null, "all " + Object.keys(item.exif_tags).length + " EXIF tags"),
        dl(Object.entries(item.exif_tags)));
      side.append(all);
    }
    grid.append(figure(item), side);
    const links = el("p", "links");
    (item.links || []).forEach(([label, href]) => {
      const safe = safeLink(href);
      if (!safe) return;
      const a = el("a", null, label + " (full size)");
      a.href = safe;
      a.rel = "noopener noreferrer";
      links.append(a);
    });
    body.replaceChildren(grid, el("h3", null, "Files"), links, el("h3", null, "Chain of custody"), custody(item),
      el("h3", null, "Reproduce"), el("pre", "command", item.command));
    $("detail").hidden = false;
    $("close").focus();
  }

  function step(delta) {
    const at = visible.findIndex((item) => item.id === state.open);
    if (at < 0 || !visible.length) return;
    const next = visible[(at + delta + visible.length) % visible.length];
    cursor = visible.indexOf(next);
    openDetail(next);
  }

  function closeDetail() {
    const item = items[state.open];
    state.open = -1;
    $("detail").hidden = true;
    const at = item ? visible.indexOf(item) : -1;
    if (at >= 0) { cursor = at - 1; moveCursor(1); }  // the keyboard goes on from the image last shown
  }

  const themes = ["auto", "light", "dark"];
  function cycleTheme() {
    const now = document.documentElement.dataset.theme || "auto";
    const next = themes[(themes.indexOf(now) + 1) % themes.length];
    if (next === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = next;
    $("theme").textContent = "theme: " + next;
  }

  function onKey(event) {
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName);
    if (event.key === "Escape") {
      if (state.open >= 0) closeDetail();
      else if (typing) event.target.blur();
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const open = state.open >= 0;
    const actions = {
      "/": () => $("search").focus(), h: () => setOverlay(!state.overlay), t: cycleTheme,
      j: () => moveCursor(1), k: () => moveCursor(-1), ArrowDown: () => moveCursor(1), ArrowUp: () => moveCursor(-1),
      ArrowRight: () => step(1), ArrowLeft: () => step(-1),
      Enter: () => { if (cursor >= 0 && visible[cursor]) openDetail(visible[cursor]); },
    };
    if (open && /^(j|k|ArrowDown|ArrowUp|Enter)$/.test(event.key)) return;
    if (!open && /^Arrow(Left|Right)$/.test(event.key)) return;
    const action = actions[event.key];
    if (action) { event.preventDefault(); action(); }
  }

  items.forEach(buildRow);
  $("search").addEventListener("input", (e) => { state.text = e.target.value.trim().toLowerCase(); render(); });
  $("min-score").addEventListener("input", (e) => {
    const v = parseFloat(e.target.value);
    state.min = isFinite(v) ? v : null;
    render();
  });
  $("show").addEventListener("change", (e) => { state.show = e.target.value; render(); });
  $("overlay").addEventListener("change", (e) => setOverlay(e.target.checked));
  document.querySelectorAll("th button[data-sort]").forEach((b) => b.addEventListener("click", () => {
    if (state.key === b.dataset.sort) state.dir = -state.dir;
    else { state.key = b.dataset.sort; state.dir = b.dataset.sort === "name" ? 1 : -1; }
    render();
  }));
  $("close").addEventListener("click", closeDetail);
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("detail").addEventListener("click", (e) => { if (e.target === $("detail")) closeDetail(); });
  $("theme").addEventListener("click", cycleTheme);
  document.addEventListener("keydown", onKey);
  render();
  document.documentElement.dataset.ready = "1";
})();
