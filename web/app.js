"use strict";
/*
 * The libernet node's dashboard: one page, plain DOM, no dependencies, no build step.
 *
 * Live figures come from polling the node's JSON routes, not from server-sent events:
 * every view is a small snapshot, a poll holds no long-lived connection per open tab
 * against the node's connection limit, it goes through proxies and survives a node
 * restart without reconnection logic, and a hidden tab simply stops asking.
 *
 * Layout of this file: helpers (DOM, formatting, HTTP, storage), the poller, then one
 * part per section (overview, peers, popular blocks, mesh, content), then init().
 */

const SHORT_ID = 16;
const TOP_BLOCKS = 20;
const RECENT_MAX = 20;
const TOKEN_KEY = "libernet.token";
const RECENT_KEY = "libernet.recent";
const CHARTS = ["requests", "hits", "misses", "lookups"];
const CHART_WIDTH = 180; // viewBox units; the SVG stretches to its box
const CHART_HEIGHT = 40;
const HISTORY_WINDOW_SECS = 900; // the node keeps 15 minutes of history
const BUNDLE_EPOCH = 978307200; // bundle times count seconds from 2001-01-01T00:00:00Z
const FEEDBACK_MS = 3000;
// /sha256/<id>/aes256/<key> and the path after it, wherever they sit in a URL's path.
const LOCATOR = /\/sha256\/([0-9a-f]{64})\/aes256\/([0-9a-f]{64})(\/.*)?$/i;

const $ = (id) => document.getElementById(id);

const state = {
  token: storageGet(TOKEN_KEY) ?? "",
  tokenRefused: false, // the node answered 401 to this token: stop asking until it changes
  browseSeq: 0, // a newer browse supersedes one still in flight
  uploading: false,
};

/* ---------- DOM helpers ---------- */

/** Builds an element: props are attributes (`text` sets the text), children are appended. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

/** Sets text only when it changed, so live regions and selections are not disturbed. */
function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/**
 * Makes `tbody` hold one row per item, in order, reusing rows by `item.id` (kept in the
 * row's `attribute`) so that a focused link or button survives a refresh.
 * `fill(row, item)` builds the row's cells when it has none, and updates them.
 */
function syncRows(tbody, items, attribute, fill) {
  const old = new Map([...tbody.rows].map((row) => [row.getAttribute(attribute), row]));
  items.forEach((item, index) => {
    const row = old.get(item.id) ?? el("tr", { [attribute]: item.id });
    old.delete(item.id);
    fill(row, item);
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] ?? null);
  });
  for (const row of old.values()) row.remove();
}

/** Sets a status line; a problem is shown as one (in red). */
function setStatus(node, text, problem = false) {
  setText(node, text);
  node.classList.toggle("problem", problem);
}

/** Shows an id's short form, the full one in the title. */
function setShortId(node, id) {
  setText(node, shortId(id));
  node.title = id;
}

function setLinkCell(cell, url) {
  cell.firstChild.href = url;
  setText(cell.firstChild, url);
}

const idCell = () => el("th", { scope: "row" }, el("code"));
const linkCell = () => el("td", {}, el("a"));

/** Shows a short message in a status element, cleared after a while. */
function flash(node, text) {
  clearTimeout(Number(node.dataset.timer));
  node.textContent = text;
  node.dataset.timer = setTimeout(() => { node.textContent = ""; }, FEEDBACK_MS);
}

/**
 * Copies text to the clipboard. Without clipboard access (plain http from another host,
 * or permission refused) the text is shown selected in `feedback` for Ctrl+C instead.
 */
async function copyText(text, feedback) {
  if (!text) return;
  try {
    await navigator.clipboard.writeText(text);
    flash(feedback, "copied");
  } catch {
    const code = el("code", { class: "selectable", text });
    clearTimeout(Number(feedback.dataset.timer));
    feedback.replaceChildren(code, " press Ctrl+C to copy");
    getSelection().selectAllChildren(code);
  }
}

/* ---------- formatting ---------- */

const integer = new Intl.NumberFormat("en");
const oneDecimal = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

const shortId = (id) => id.slice(0, SHORT_ID);
const formatCount = (n) => integer.format(n);

/** "512 B", "3.4 MiB", "340 MiB", "10 GiB": binary units, one decimal below 100. */
function formatBytes(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  const unit = bytes > 0 ? Math.min(units.length - 1, Math.floor(Math.log2(bytes) / 10)) : 0;
  const value = bytes / 1024 ** unit;
  return `${unit === 0 || value >= 100 ? Math.round(value) : oneDecimal.format(value)} ${units[unit]}`;
}

/** "45 s", "3 min 5 s", "3 h 5 min", "2 d 4 h": the largest unit, and the next unless `units` is 1. */
function formatDuration(seconds, units = 2) {
  const sizes = [[86400, "d"], [3600, "h"], [60, "min"], [1, "s"]];
  const total = Math.max(0, Math.floor(seconds));
  const first = sizes.findIndex(([size]) => total >= size);
  if (first === -1) return "0 s";
  const [size, name] = sizes[first];
  const major = `${Math.floor(total / size)} ${name}`;
  const next = units > 1 ? sizes[first + 1] : undefined;
  const minor = next ? Math.floor((total % size) / next[0]) : 0;
  return minor ? `${major} ${minor} ${next[1]}` : major;
}

/** "12 s ago", "3 min ago": one unit, so that the text changes no more often than it means. */
function formatAgo(unixSecs) {
  if (!unixSecs) return "never";
  const seconds = Date.now() / 1000 - unixSecs;
  return seconds < 1 ? "just now" : `${formatDuration(seconds, 1)} ago`;
}

function formatRate(perSecond) {
  return perSecond > 0 && perSecond < 0.1 ? "<0.1/s" : `${oneDecimal.format(perSecond)}/s`;
}

const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;

function decodeSegment(segment) {
  try { return decodeURIComponent(segment); } catch { return segment; } // malformed: shown as it is
}

/* ---------- HTTP and storage ---------- */

/** A non-2xx answer of the node, with the message of its JSON error body. */
class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function httpError(response) {
  const body = await response.json().catch(() => null); // not JSON: the status line has to do
  return new HttpError(response.status, body?.message ?? `${response.status} ${response.statusText}`.trim());
}

/** Fetches JSON; throws HttpError for an error answer, TypeError when the node is unreachable. */
async function getJSON(path, options = {}) {
  const response = await fetch(path, { cache: "no-store", ...options });
  if (!response.ok) throw await httpError(response);
  return response.json();
}

const adminHeaders = (token) => ({ Authorization: `Bearer ${token}` });

// localStorage throws when storage is disabled: the dashboard then just forgets.
function storageGet(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

function storageSet(key, value) {
  try {
    if (value === null) localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch { /* the value lives for this page only */ }
}

/* ---------- poller ---------- */

const polls = [
  { name: "node", every: 2000, run: pollNode, fail: () => setOnline(false) },
  { name: "peers", every: 2000, run: pollPeers },
  { name: "history", every: 5000, run: pollHistory },
  { name: "mesh", every: 5000, run: pollMesh, fail: showMeshError },
  { name: "stats", every: 5000, run: pollStats, fail: (error) => showAdminError(error, showPopularNote),
    enabled: () => state.token !== "" && !state.tokenRefused },
].map((poll) => ({ ...poll, due: 0, busy: false }));
let pollTimer = 0;

/** Starts every poll that is due and not running, and sleeps until the next one is due. */
function schedule() {
  clearTimeout(pollTimer);
  if (document.hidden) return;
  const now = Date.now();
  let next = Infinity;
  for (const poll of polls) {
    if (poll.busy) continue;
    if (poll.due <= now) runPoll(poll);
    else next = Math.min(next, poll.due);
  }
  if (next < Infinity) pollTimer = setTimeout(schedule, next - now);
}

async function runPoll(poll) {
  poll.busy = true;
  try {
    if (!poll.enabled || poll.enabled()) await poll.run();
  } catch (error) {
    // A TypeError is the node being unreachable: the /node poll alone reports it, in the banner.
    const unreachable = error instanceof TypeError;
    if (error instanceof HttpError || (unreachable && poll.name === "node")) poll.fail?.(error);
    else if (!unreachable) console.error(error); // a bug, not the node
  } finally {
    poll.busy = false;
    poll.due = Date.now() + poll.every;
    schedule();
  }
}

/** Asks for one view again as soon as possible (after a change made from this page). */
function refresh(name) {
  const poll = polls.find((p) => p.name === name);
  poll.due = 0;
  if (!poll.busy) schedule();
}

function onVisibilityChange() {
  if (document.hidden) return clearTimeout(pollTimer);
  for (const poll of polls) poll.due = 0;
  schedule();
}

function setOnline(online) {
  $("banner").hidden = online;
  setText($("live"), online ? "live" : "unreachable");
  $("live").classList.toggle("down", !online);
}

/* ---------- overview ---------- */

async function pollNode() {
  renderNode(await getJSON("/node"));
  setOnline(true);
}

function renderNode(node) {
  setShortId($("node-id"), node.id);
  $("node-id").dataset.id = node.id;
  setText($("node-version"), node.version);
  setText($("footer-version"), node.version);
  setText($("node-uptime"), formatDuration(node.uptime_secs));
  setText($("node-url"), node.url);
  renderStore(node.store);
  document.title = `libernet · ${shortId(node.id)}`;
  document.body.dataset.ready = "true";
}

function renderStore({ blocks, bytes, quota }) {
  const store = $("store");
  store.dataset.blocks = blocks;
  store.dataset.bytes = bytes;
  store.dataset.quota = quota;
  const used = quota > 0 ? Math.min(1, bytes / quota) : 0;
  $("store-bar").value = used;
  const percent = used > 0 && used < 0.001 ? "<0.1" : oneDecimal.format(used * 100);
  setText($("store-text"), `${formatBytes(bytes)} of ${formatBytes(quota)} used (${percent}%)`);
  setText($("store-blocks"), plural(blocks, "block"));
}

async function pollHistory() {
  const history = await getJSON("/history");
  const step = history.step_secs || 5;
  const points = history.points ?? [];
  for (const key of CHARTS) drawChart(key, points, step);
  renderTraffic("bytes-in", "bytes_in", points, step);
  renderTraffic("bytes-out", "bytes_out", points, step);
}

/** Draws one sparkline of a counter's rate per second, newest step at the right edge. */
function drawChart(key, points, step) {
  const svg = $(`chart-${key}`);
  const name = key[0].toUpperCase() + key.slice(1);
  const rates = points.map((p) => ({ at: p.at, rate: (p[key] ?? 0) / step }));
  const current = rates.at(-1)?.rate ?? 0;
  const peak = Math.max(0, ...rates.map((r) => r.rate));
  setText(document.querySelector(`[data-rate-for="${key}"]`), rates.length ? formatRate(current) : "–");
  setText(document.querySelector(`[data-peak-for="${key}"]`), `peak ${formatRate(peak)}`);
  svg.setAttribute("aria-label", rates.length
    ? `${name}: ${formatRate(current)} now, peak ${formatRate(peak)} over the last 15 minutes`
    : `${name}: no data yet`);
  svg.replaceChildren(...sparkline(rates, peak, HISTORY_WINDOW_SECS / step));
}

/**
 * The node keeps one point per step, oldest first, so point i of n is drawn n - 1 - i
 * steps left of the right edge, and the chart is `slots` steps wide.
 */
function sparkline(rates, peak, slots) {
  if (rates.length === 0) return [];
  const x = (i) => CHART_WIDTH - ((rates.length - 1 - i) / Math.max(1, slots - 1)) * CHART_WIDTH;
  // Leave a pixel at the top; a flat zero line sits just above the bottom edge.
  const y = (rate) => CHART_HEIGHT - 1 - (peak > 0 ? (rate / peak) * (CHART_HEIGHT - 3) : 0);
  const coords = rates.map((r, i) => [x(i), y(r.rate)]);
  if (coords.length === 1) coords.unshift([coords[0][0] - CHART_WIDTH / 180, coords[0][1]]);
  const line = coords.map(([cx, cy], i) => `${i ? "L" : "M"}${cx.toFixed(2)} ${cy.toFixed(2)}`).join("");
  const [left, right] = [coords[0][0].toFixed(2), coords.at(-1)[0].toFixed(2)];
  const area = `${line}L${right} ${CHART_HEIGHT}L${left} ${CHART_HEIGHT}Z`;
  return [svgPath("area", area), svgPath("line", line)];
}

function svgPath(className, d) {
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("class", className);
  path.setAttribute("d", d);
  path.setAttribute("vector-effect", "non-scaling-stroke");
  return path;
}

function renderTraffic(id, key, points, step) {
  const total = points.reduce((sum, p) => sum + (p[key] ?? 0), 0);
  const rate = (points.at(-1)?.[key] ?? 0) / step;
  const node = $(id);
  node.dataset.value = total;
  setText(node, `${formatBytes(total)} in 15 min · ${formatBytes(rate)}/s now`);
}

/* ---------- peers ---------- */

async function pollPeers() {
  const peers = (await getJSON("/peers")).peers ?? [];
  $("peers-empty").hidden = peers.length > 0;
  $("peers-wrap").hidden = peers.length === 0;
  syncRows($("peers-table").tBodies[0], peers, "data-peer-id", fillPeerRow);
}

function fillPeerRow(row, peer) {
  if (!row.cells.length) {
    row.append(idCell(), linkCell(), el("td", {}, el("span", { class: "badge" })),
      el("td", { class: "num" }), el("td"), el("td", { class: "num" }), el("td", { class: "num" }));
  }
  const [id, url, health, latency, seen, bytesIn, bytesOut] = row.cells;
  row.dataset.health = peer.health;
  setShortId(id.firstChild, peer.id);
  setLinkCell(url, peer.url);
  const badge = health.firstChild;
  badge.className = `badge health-${peer.health}`;
  badge.title = `${peer.failures} failed requests in a row`;
  setText(badge, peer.health);
  setText(latency, peer.latency_ms == null ? "–" : `${oneDecimal.format(peer.latency_ms)} ms`);
  setText(seen, formatAgo(peer.last_seen));
  seen.title = peer.last_seen ? dateTime.format(new Date(peer.last_seen * 1000)) : "";
  setText(bytesIn, formatBytes(peer.bytes_in));
  setText(bytesOut, formatBytes(peer.bytes_out));
}

/* ---------- popular blocks and the admin token ---------- */

async function pollStats() {
  const token = state.token;
  // An answer to a token changed meanwhile, even a 401, says nothing about the new one.
  const data = await getJSON(`/stats?top=${TOP_BLOCKS}`, { headers: adminHeaders(token) })
    .catch((error) => { if (token === state.token) throw error; });
  if (token !== state.token) return;
  const blocks = data.blocks ?? [];
  $("popular-wrap").hidden = blocks.length === 0;
  showPopularNote(blocks.length ? "" : "No block has been requested since the node started.");
  syncRows($("popular-table").tBodies[0], blocks, "data-block-id", fillBlockRow);
}

function fillBlockRow(row, block) {
  if (!row.cells.length) {
    row.append(idCell(), el("td", { class: "num" }), el("td", { class: "num" }), el("td"), el("td"),
      el("td", {}, el("button", { type: "button", class: "pin-toggle small", text: "Pin" })));
  }
  const [id, requests, replicas, last, local, pin] = row.cells;
  row.dataset.pinned = String(block.pinned);
  setShortId(id.firstChild, block.id);
  setText(requests, formatCount(block.requests));
  setText(replicas, block.replicas == null ? "–" : formatCount(block.replicas));
  setText(last, formatAgo(block.last_request));
  setText(local, block.local ? "yes" : "no");
  setPinButton(pin.firstChild, block.pinned);
}

// The label stays "Pin" and aria-pressed carries the state, as a toggle button should.
function setPinButton(button, pinned) {
  button.setAttribute("aria-pressed", String(pinned));
  button.title = pinned ? "Pinned on this node: press to unpin" : "Press to pin it on this node";
}

async function togglePin(button) {
  const row = button.closest("tr");
  if (button.getAttribute("aria-busy") === "true") return;
  const pin = row.dataset.pinned !== "true";
  const status = $("pin-status");
  setStatus(status, "");
  button.setAttribute("aria-busy", "true");
  try {
    const method = pin ? "PUT" : "DELETE";
    const headers = adminHeaders(state.token);
    const answer = await getJSON(`/pins/${row.dataset.blockId}`, { method, headers });
    const pinned = answer?.pinned ?? pin;
    row.dataset.pinned = String(pinned);
    setPinButton(button, pinned);
    // DELETE lets go of the admin's pin only: a backup set or an upload may still hold the block.
    if (!pin && pinned) setStatus(status, "It stays pinned: another holder (a backup set or an upload) pins it too.");
    refresh("stats");
  } catch (error) {
    showAdminError(error, (text) => setStatus(status, `Pin failed: ${text}`, true));
  } finally {
    button.removeAttribute("aria-busy");
  }
}

/** A 401 refuses the token everywhere; any other error is shown where it happened. */
function showAdminError(error, show) {
  if (error instanceof HttpError && error.status === 401) refuseToken();
  else show(error instanceof HttpError ? error.message : "The node did not answer.");
}

function refuseToken() {
  state.tokenRefused = true;
  renderTokenState();
}

function showPopularNote(text) {
  const note = $("popular-note");
  setText(note, text);
  note.hidden = text === "";
}

function saveToken(event) {
  event.preventDefault();
  const input = $("token");
  const token = input.value.trim();
  if (!token) return setText($("token-status"), "Paste the token first.");
  input.value = "";
  setToken(token);
}

function setToken(token) {
  state.token = token;
  state.tokenRefused = false;
  storageSet(TOKEN_KEY, token || null);
  $("popular-table").tBodies[0].replaceChildren();
  renderTokenState();
  refresh("stats");
}

/** Tells, in the token form, the popular section and the upload area, what the token allows. */
function renderTokenState() {
  const ok = state.token !== "" && !state.tokenRefused;
  let status = "Token saved in this browser.";
  if (!state.token) status = "No token saved.";
  else if (state.tokenRefused) status = "Token refused by the node: check admin.token and save it again.";
  setText($("token-status"), status);
  $("token").placeholder = state.token ? "saved: paste another to replace it" : "";
  if (!ok) $("popular-wrap").hidden = true;
  showPopularNote(ok ? "" : "Save the admin token above to see the most requested blocks and pin them.");
  const uploadNote = $("upload-note");
  uploadNote.hidden = ok;
  uploadNote.replaceChildren("Uploading needs ", el("a", { href: "#token-form", text: "the admin token" }),
    state.tokenRefused ? " (the saved one was refused)." : ".");
}

/* ---------- mesh ---------- */

async function pollMesh() {
  const mesh = await getJSON("/mesh");
  const nodes = mesh.nodes ?? [];
  const totals = mesh.totals ?? {};
  const reachable = nodes.filter((n) => n.reachable).length;
  setTotal("mesh-nodes", totals.nodes, `${reachable} of ${nodes.length}`);
  setTotal("mesh-blocks", totals.blocks, formatCount(totals.blocks ?? 0));
  setTotal("mesh-bytes", totals.bytes, formatBytes(totals.bytes ?? 0));
  setTotal("mesh-quota", totals.quota, formatBytes(totals.quota ?? 0));
  $("mesh-note").hidden = true;
  $("mesh-wrap").hidden = false;
  syncRows($("mesh-table").tBodies[0], nodes, "data-node-id", fillMeshRow);
}

function setTotal(id, value, text) {
  const node = $(id);
  node.dataset.value = value ?? "";
  setText(node, text);
}

function showMeshError(error) {
  const note = $("mesh-note");
  setText(note, error.status === 404 ? "This node has no mesh view." : `Mesh view failed: ${error.message}`);
  note.hidden = false;
  $("mesh-wrap").hidden = true;
}

function fillMeshRow(row, node) {
  const reachable = String(Boolean(node.reachable));
  if (row.dataset.reachable !== reachable) {
    // A node going up or down changes the row's shape: rebuild it.
    row.dataset.reachable = reachable;
    row.replaceChildren(idCell(), linkCell(),
      ...(node.reachable ? meshFigureCells() : [el("td", { colspan: 8, class: "error-cell" })]));
  }
  const [id, url, ...rest] = row.cells;
  setShortId(id.firstChild, node.id);
  if (node.self && !id.querySelector(".tag")) id.append(" ", el("span", { class: "tag", text: "this node" }));
  row.classList.toggle("self", Boolean(node.self));
  setLinkCell(url, node.url);
  if (!node.reachable) return setText(rest[0], `unreachable: ${node.error ?? "no answer"}`);
  const unhealthy = node.peers - node.peers_healthy;
  const texts = [node.version, formatCount(node.store.blocks),
    `${formatBytes(node.store.bytes)} / ${formatBytes(node.store.quota)}`,
    formatCount(node.requests), formatCount(node.hits), formatCount(node.misses),
    unhealthy > 0 ? `${node.peers} (${unhealthy} unhealthy)` : String(node.peers),
    formatDuration(node.uptime_secs)];
  texts.forEach((text, i) => setText(rest[i], text));
}

function meshFigureCells() {
  const numeric = [false, true, false, true, true, true, true, false];
  return numeric.map((num) => el("td", { class: num ? "num" : null }));
}

/* ---------- content: browse ---------- */

/** Finds /sha256/<id>/aes256/<key>[/path] in an absolute URL or a path; null if absent. */
function parseLocator(text) {
  let path = "";
  try { path = new URL(text.trim(), location.origin).pathname; } catch { return null; }
  const match = LOCATOR.exec(path);
  return match ? { root: `/sha256/${match[1]}/aes256/${match[2]}`, path: match[3] ?? "" } : null;
}

function onBrowseSubmit(event) {
  event.preventDefault();
  const locator = parseLocator($("browse-url").value);
  if (locator) browse(locator, true);
  else setStatus($("browse-status"), "That is not a /sha256/<id>/aes256/<key> URL.", true);
}

/**
 * Opens a locator: a HEAD (following redirects) tells a directory, whose final URL ends
 * with "/", from a file; a directory is then listed as JSON.
 */
async function browse(locator, remember) {
  const seq = ++state.browseSeq;
  const status = $("browse-status");
  setStatus(status, "Opening… blocks missing here are looked for in the mesh.");
  try {
    const url = locator.root + locator.path;
    const head = await fetch(url, { method: "HEAD" });
    // A HEAD answer has no body: ask again with GET to read the node's message.
    if (!head.ok) throw await httpError(await fetch(url, { headers: { Accept: "application/json" } }));
    const finalPath = new URL(head.url).pathname;
    const isDir = finalPath.endsWith("/");
    const view = isDir ? await directoryView(locator.root, finalPath) : fileView(finalPath, head);
    if (seq !== state.browseSeq) return;
    $("listing").replaceChildren(...view);
    $("browse-url").value = location.origin + finalPath;
    setStatus(status, `Opened ${labelFor(locator.root, finalPath)}.`);
    if (remember) addRecent(finalPath, labelFor(locator.root, finalPath));
  } catch (error) {
    if (seq !== state.browseSeq) return;
    $("listing").replaceChildren();
    const reason = error instanceof HttpError ? `${error.message} (${error.status})` : "the node did not answer";
    setStatus(status, `Could not open it: ${reason}.`, true);
  }
}

async function directoryView(root, dirPath) {
  // `?listing`: the listing even when the directory has an index.html.
  const response = await fetch(`${dirPath}?listing`, { headers: { Accept: "application/json" } });
  if (!response.ok) throw await httpError(response);
  const entries = (await response.json()).entries ?? [];
  const website = entries.some((e) => e.name === "index.html" && e.type === "file");
  const head = el("div", { class: "listing-head" }, breadcrumb(root, dirPath),
    newTabLink(dirPath, website ? "Open as website" : "Open listing", "button small"));
  if (entries.length === 0) return [head, el("p", { class: "empty", text: "This directory is empty." })];
  const sorted = [...entries].sort((a, b) =>
    (a.type === "dir" ? 0 : 1) - (b.type === "dir" ? 0 : 1) || a.name.localeCompare(b.name));
  return [head, el("ul", { class: "entries" }, ...sorted.map((e) => entryItem(dirPath, e)))];
}

function breadcrumb(root, dirPath) {
  const nav = el("nav", { class: "breadcrumb", "aria-label": "Directory" });
  const segments = dirPath.slice(root.length).split("/").filter(Boolean);
  let href = `${root}/`;
  [null, ...segments].forEach((segment, i) => {
    if (segment !== null) href += `${segment}/`;
    const label = segment === null ? "bundle" : decodeSegment(segment);
    const last = i === segments.length;
    nav.append(last
      ? el("span", { "aria-current": "location", text: label })
      : el("a", { href, "data-browse": true, text: label }));
  });
  return nav;
}

function entryItem(dirPath, entry) {
  const isDir = entry.type === "dir";
  const href = dirPath + encodeURIComponent(entry.name) + (isDir ? "/" : "");
  const link = isDir
    ? el("a", { href, "data-browse": true, text: `${entry.name}/` })
    : newTabLink(href, entry.name);
  const details = [];
  if (entry.type === "link") details.push(`→ ${entry.link}`);
  if (entry.size != null) details.push(formatBytes(entry.size));
  if (entry.modified != null) details.push(dateTime.format(new Date((entry.modified + BUNDLE_EPOCH) * 1000)));
  return el("li", { "data-name": entry.name, "data-type": entry.type, class: `entry entry-${entry.type}` },
    link, el("span", { class: "meta", text: details.join(" · ") }));
}

const newTabLink = (href, text, className = null) =>
  el("a", { href, target: "_blank", rel: "noopener", class: className, text });

function fileView(path, head) {
  const name = decodeSegment(path.split("/").at(-1));
  const size = head.headers.get("Content-Length");
  const type = head.headers.get("Content-Type") ?? "unknown type";
  return [
    el("p", { class: "file-title" }, el("strong", { text: "A single file" }),
      LOCATOR.exec(path)?.[3] ? `: ${name}` : ""),
    el("p", { class: "meta", text: `${size === null ? "unknown size" : formatBytes(Number(size))}, ${type}` }),
    newTabLink(path, "Open", "button small"),
  ];
}

/** Directory links inside the listing browse in place; modified clicks open a tab as usual. */
function onListingClick(event) {
  const link = event.target.closest("a[data-browse]");
  if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  const locator = parseLocator(link.href);
  if (locator) browse(locator, false);
}

function labelFor(root, path) {
  const rest = path.slice(root.length).split("/").filter(Boolean).map(decodeSegment);
  return rest.length ? rest.join("/") : `bundle ${shortId(root.slice(8))}`;
}

/* ---------- content: recent URLs ---------- */

function loadRecent() {
  let list = [];
  try { list = JSON.parse(storageGet(RECENT_KEY) ?? "[]"); } catch { /* unreadable: start afresh */ }
  return Array.isArray(list) ? list.filter((r) => typeof r?.url === "string") : [];
}

function addRecent(path, label) {
  const url = location.origin + path;
  const list = [{ url, label, at: Date.now() }, ...loadRecent().filter((r) => r.url !== url)];
  storageSet(RECENT_KEY, JSON.stringify(list.slice(0, RECENT_MAX)));
  renderRecent();
}

function renderRecent() {
  const list = loadRecent();
  $("recent-empty").hidden = list.length > 0;
  $("recent-clear").disabled = list.length === 0;
  $("recent").replaceChildren(...list.map((item) => el("li", {},
    el("button", { type: "button", class: "link-like", "data-url": item.url, title: item.url,
      text: item.label || item.url }),
    el("span", { class: "meta", text: item.at ? dateTime.format(new Date(item.at)) : "" }))));
}

function onRecentClick(event) {
  const button = event.target.closest("button[data-url]");
  const locator = button && parseLocator(button.dataset.url);
  if (!locator) return;
  $("browse-url").value = button.dataset.url;
  browse(locator, true);
}

function clearRecent() {
  storageSet(RECENT_KEY, null);
  renderRecent();
}

/* ---------- content: upload ---------- */

const entryFile = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));

/** A directory reader gives its entries in batches: read until an empty batch. */
async function readAllEntries(reader) {
  const all = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) return all;
    all.push(...batch);
  }
}

async function walkEntry(entry, prefix) {
  if (entry.isFile) return [{ file: await entryFile(entry), path: prefix + entry.name }];
  if (entry.isDirectory) return walkDirectory(entry, `${prefix}${entry.name}/`);
  return [];
}

async function walkDirectory(directory, prefix) {
  const children = await readAllEntries(directory.createReader());
  return (await Promise.all(children.map((child) => walkEntry(child, prefix)))).flat();
}

/** One folder dropped: its contents are the bundle's root; else the names as dropped. */
async function filesFromEntries(entries) {
  if (entries.length === 1 && entries[0].isDirectory) return walkDirectory(entries[0], "");
  return (await Promise.all(entries.map((entry) => walkEntry(entry, "")))).flat();
}

function onDrop(event) {
  event.preventDefault();
  $("dropzone").classList.remove("dragging");
  const transfer = event.dataTransfer;
  // Entries and files must be taken now: the transfer is emptied once the handler returns.
  const entries = [...transfer.items].filter((i) => i.kind === "file").map((i) => i.webkitGetAsEntry?.());
  const files = [...transfer.files].map((file) => ({ file, path: file.name }));
  const usable = entries.length > 0 && entries.every(Boolean);
  const walk = usable ? filesFromEntries(entries) : Promise.resolve(files);
  walk.then(upload, () => setStatus($("upload-status"), "The dropped files could not be read.", true));
}

function onDragOver(event) {
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
  $("dropzone").classList.add("dragging");
}

function onDragLeave(event) {
  if (!event.currentTarget.contains(event.relatedTarget)) event.currentTarget.classList.remove("dragging");
}

function onFilesChosen(event) {
  const input = event.target;
  const items = [...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));
  input.value = "";
  // A chosen folder's paths start with its name: strip it so its contents are the root.
  const folder = input.id === "upload-folder";
  upload(folder ? items.map(({ file, path }) => ({ file, path: path.slice(path.indexOf("/") + 1) })) : items);
}

function onDropzoneKey(event) {
  if (event.key !== "Enter" && event.key !== " ") return;
  event.preventDefault();
  $("upload-files").click();
}

async function upload(items) {
  const status = $("upload-status");
  if (state.uploading) return setStatus(status, "An upload is already running.", true);
  if (!state.token || state.tokenRefused) return setStatus(status, "Uploading needs the admin token.", true);
  if (items.length === 0) return setStatus(status, "Nothing to upload: no files were given.", true);
  const form = new FormData();
  for (const { file, path } of items) {
    form.append("modified", String(file.lastModified));
    form.append("file", file, encodeURIComponent(path));
  }
  const bytes = items.reduce((sum, { file }) => sum + file.size, 0);
  const count = `${plural(items.length, "file")}, ${formatBytes(bytes)}`;
  setUploading(true);
  $("upload-result").hidden = true;
  setStatus(status, `Uploading ${count}…`);
  try {
    const { status: code, body } = await postUpload(form, (fraction) => {
      $("upload-progress").value = fraction;
      if (fraction >= 1) setText(status, `Encrypting and storing ${count}…`);
    });
    if (code !== 201) throw new HttpError(code, body?.message ?? `upload failed (${code})`);
    showUploadResult(body);
  } catch (error) {
    setStatus(status, uploadErrorText(error), true);
  } finally {
    setUploading(false);
  }
}

function uploadErrorText(error) {
  if (!(error instanceof HttpError)) return "The node did not answer: nothing was stored.";
  if (error.status === 401) {
    refuseToken();
    return "The node refused the token: nothing was stored.";
  }
  return `Upload refused: ${error.message}`;
}

function setUploading(on) {
  state.uploading = on;
  const progress = $("upload-progress");
  progress.hidden = !on;
  progress.value = 0;
  $("dropzone").setAttribute("aria-disabled", String(on));
  $("upload-files").disabled = on;
  $("upload-folder").disabled = on;
}

/** POSTs the form with XMLHttpRequest, the only API that reports upload progress. */
function postUpload(form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/upload");
    xhr.responseType = "json";
    xhr.setRequestHeader("Authorization", `Bearer ${state.token}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => e.lengthComputable && onProgress(e.loaded / e.total));
    xhr.addEventListener("load", () => resolve({ status: xhr.status, body: xhr.response }));
    xhr.addEventListener("error", () => reject(new TypeError("upload failed")));
    xhr.send(form);
  });
}

function showUploadResult(answer) {
  const url = location.origin + answer.url;
  const link = $("upload-url");
  link.href = url;
  setText(link, url);
  const site = $("upload-site");
  site.href = url;
  site.hidden = !answer.index;
  $("upload-result").hidden = false;
  const summary = `${plural(answer.files, "file")}, ${formatBytes(answer.bytes)}`;
  setStatus($("upload-status"), `Stored ${summary} in ${plural(answer.blocks, "block")}.`);
  addRecent(answer.url, `upload: ${summary}`);
  $("browse-url").value = url;
  const locator = parseLocator(answer.url);
  if (locator) browse(locator, false);
}

/* ---------- start ---------- */

function bindContent() {
  $("browse-form").addEventListener("submit", onBrowseSubmit);
  $("listing").addEventListener("click", onListingClick);
  $("recent").addEventListener("click", onRecentClick);
  $("recent-clear").addEventListener("click", clearRecent);
  const zone = $("dropzone");
  zone.addEventListener("dragover", onDragOver);
  zone.addEventListener("dragleave", onDragLeave);
  zone.addEventListener("drop", onDrop);
  zone.addEventListener("keydown", onDropzoneKey);
  zone.addEventListener("click", () => $("upload-files").click());
  $("upload-files").addEventListener("change", onFilesChosen);
  $("upload-folder").addEventListener("change", onFilesChosen);
  // A file dropped beside the zone would make the browser leave the dashboard to show it.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  $("copy-upload").addEventListener("click", () => copyText($("upload-url").href, $("copy-upload-status")));
}

function init() {
  $("copy-id").addEventListener("click", () => copyText($("node-id").dataset.id, $("copy-id-status")));
  $("token-form").addEventListener("submit", saveToken);
  $("token-forget").addEventListener("click", () => setToken(""));
  $("popular-table").addEventListener("click", (event) => {
    const button = event.target.closest(".pin-toggle");
    if (button) togglePin(button);
  });
  bindContent();
  renderTokenState();
  renderRecent();
  document.addEventListener("visibilitychange", onVisibilityChange);
  schedule();
}

init();
