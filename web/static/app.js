// VisionNet's page: plain JavaScript on the JSON API, no build step, works offline.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "visionnet-token";
const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// --- API access -----------------------------------------------------------
function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, init = {}) {
  init.headers = { ...(init.headers || {}), ...authHeaders() };
  const r = await fetch(API + path, init);
  const body = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) {
    if (r.status === 401) askToken();
    const msg = body && body.message ? body.message : `HTTP ${r.status}`;
    throw new Error(msg);
  }
  return body;
}

const postJson = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

function showError(err) {
  const box = $("#alert");
  box.textContent = err instanceof Error ? err.message : String(err);
  box.hidden = false;
}
function clearError() { $("#alert").hidden = true; }

async function waitJob(id, onUpdate) {
  let delay = 150;
  for (;;) {
    const job = await api(`/jobs/${id}`);
    if (onUpdate) onUpdate(job);
    if (FINAL.has(job.state)) return job;
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 1.5, 1000);
  }
}

// A thumbnail of an indexed image: by id only (the API never serves a path).
function thumb(id, alt) {
  const img = el("img", { alt, loading: "lazy", width: 256, height: 256 });
  const url = `${API}/images/${id}/thumbnail?size=256`;
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    img.src = url;
  } else {  // an <img> cannot send the token: fetch it, show the blob
    fetch(url, { headers: authHeaders() })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(r.statusText))))
      .then((b) => { img.src = URL.createObjectURL(b); })
      .catch(() => { img.alt = alt + " (no thumbnail)"; });
  }
  return img;
}

// --- classify and similar images --------------------------------------------
function labelList(predictions) {
  return el("ul", { class: "labels" }, predictions.map((p) =>
    el("li", {},
      el("span", {}, p.label),
      el("span", { class: "bar", role: "img", "aria-label": `${(p.score * 100).toFixed(1)}%` },
        el("span", { style: `width:${(p.score * 100).toFixed(1)}%` })),
      el("span", {}, `${(p.score * 100).toFixed(1)}%`))));
}

function hitGrid(hits) {
  if (!hits.length) return el("p", { class: "muted" }, "No similar images in this collection.");
  return el("ul", { class: "grid", "aria-label": "Similar images" }, hits.map((h) =>
    el("li", {},
      el("button", { class: "hit", type: "button", title: `Search with ${h.path}`,
                     onclick: () => searchById(h.id, h.path) },
        thumb(h.id, h.path),
        el("div", { class: "cap" },
          el("span", { class: "score" }, h.score.toFixed(3)), " ",
          el("span", { class: "path" }, h.path),
          h.label ? el("div", { class: "muted" }, h.label) : null)))));
}

async function classifyFiles(files) {
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  form.append("top_k", "5");
  const { job_id } = await api("/classify", { method: "POST", body: form });
  const job = await waitJob(job_id);
  if (job.state !== "succeeded") throw new Error(job.error || `classify ${job.state}`);
  return job.result.images;
}

async function searchUpload(file) {
  const collection = $("#lookup-collection").value;
  if (!collection) return null;
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("k", $("#lookup-k").value);
  form.append("collection", collection);
  const { job_id } = await api("/search", { method: "POST", body: form });
  const job = await waitJob(job_id);
  if (job.state !== "succeeded") throw new Error(job.error || `search ${job.state}`);
  return job.result.hits;
}

async function lookup(files) {
  clearError();
  const out = $("#lookup-result");
  out.replaceChildren(el("p", { class: "muted" }, `Working on ${files.length} image(s)…`));
  try {
    if (files.length === 1) {
      const [file] = files;
      const [images, hits] = await Promise.all([classifyFiles(files), searchUpload(file)]);
      const image = images[0];
      out.replaceChildren(el("div", { class: "query" },
        el("img", { class: "preview", src: URL.createObjectURL(file), alt: file.name }),
        el("div", {}, el("h3", {}, file.name),
          image.error ? el("p", { class: "error" }, `${image.name}: ${image.error}`) : labelList(image.predictions))),
        hits === null ? el("p", { class: "muted" }, "Index a collection to see similar images.")
                      : hitGrid(hits));
    } else {
      const images = await classifyFiles(files);
      out.replaceChildren(el("ul", { class: "grid gallery", "aria-label": "Classified images" },
        images.map((image, i) => el("li", {},
          el("img", { src: URL.createObjectURL(files[i]), alt: image.name }),
          el("div", { class: "cap" }, el("strong", {}, image.name),
            image.error ? el("p", { class: "error" }, image.error) : labelList(image.predictions.slice(0, 3)))))));
    }
  } catch (err) {
    out.replaceChildren();
    showError(err);
  }
}

// Text to image: offered only when the workers' embedder embeds text (CLIP).
async function setupTextSearch() {
  try {
    const models = await api("/models");
    $("#text-form").hidden = !models.text_search;
  } catch (err) { /* no models loaded yet: leave it hidden */ }
}

// A search by JSON query ({image_id} or {text}): the query's header, then the grid.
async function searchJson(query, header) {
  clearError();
  const out = $("#lookup-result");
  try {
    const body = { ...query, k: Number($("#lookup-k").value), collection: $("#lookup-collection").value };
    const job = await waitJob((await postJson("/search", body)).job_id);
    if (job.state !== "succeeded") throw new Error(job.error || `search ${job.state}`);
    out.replaceChildren(el("div", { class: "query" }, ...header), hitGrid(job.result.hits));
    out.scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (err) { showError(err); }
}

const searchByText = (text) =>
  searchJson({ text }, [el("div", {}, el("h3", {}, "Images matching"), el("p", {}, `“${text}”`))]);

const searchById = (id, path) =>
  searchJson({ image_id: id }, [thumb(id, path), el("div", {}, el("h3", {}, "Similar to"), el("p", {}, path))]);

function setupDrop() {
  const drop = $("#drop"), input = $("#files");
  const take = (list) => { const files = [...list].filter((f) => f.size >= 0); if (files.length) lookup(files); };
  input.addEventListener("change", () => take(input.files));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); });
}

// --- index jobs -------------------------------------------------------------
const fmtRate = (p) => (p.files_per_s ? `${Math.round(p.files_per_s)} img/s` : "");
const fmtEta = (p) => (p.eta_s !== null && p.eta_s !== undefined ? `ETA ${Math.round(p.eta_s)} s` : "");

function jobCard(id) {
  const card = el("article", { class: "job", "data-job": id, "aria-live": "polite" });
  $("#job-cards").prepend(card);
  const render = (job) => {
    const p = job.progress;
    const active = !FINAL.has(job.state);
    const errors = (job.result && job.result.errors) || [];
    card.replaceChildren(...[
      el("div", { class: "row" },
        el("strong", {}, `${job.type} `), el("span", { class: `state state-${job.state}` }, job.state),
        el("span", { class: "muted" }, id)),
      el("progress", { max: Math.max(p.total, 1), value: p.done, "aria-label": `${p.done} of ${p.total}` }),
      el("div", { class: "row" },
        el("span", { class: "counts" }, `${p.done} / ${p.total} done`),
        p.indexed !== undefined ? el("span", {}, `${p.indexed} new, ${p.skipped} already stored`) : null,
        p.failed ? el("span", { class: "state-failed" }, `${p.failed} failed`) : null,
        el("span", {}, fmtRate(p)), el("span", {}, active ? fmtEta(p) : ""),
        active ? el("button", { class: "danger", type: "button", onclick: () => cancel(id) }, "Cancel") : null,
        !active && job.type === "index" && p.failed
          ? el("button", { class: "secondary", type: "button", onclick: () => retry(id) }, "Retry failed") : null),
      job.error ? el("p", { class: "state-failed" }, job.error) : null,
      errors.length ? el("ul", { class: "failures", "aria-label": "Failed files" },
        errors.map((e) => el("li", {}, `${e.path}: ${e.error}`))) : null,
    ].filter(Boolean));  // replaceChildren would print a null as "null"
  };
  waitJob(id, render).then(() => { refreshJobs(); refreshCollections(); }).catch(showError);
}

async function cancel(id) {
  try { await api(`/jobs/${id}/cancel`, { method: "POST" }); } catch (err) { showError(err); }
}
async function retry(id) {
  try { jobCard((await api(`/jobs/${id}/retry`, { method: "POST" })).job_id); } catch (err) { showError(err); }
}

function setupIndexForm() {
  $("#index-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    clearError();
    const f = new FormData(e.target);
    const archive = f.get("archive");
    const classify = f.get("classify") === "on";
    try {
      let accepted;
      if (archive && archive.size) {
        const form = new FormData();
        form.append("archive", archive, archive.name);
        form.append("collection", f.get("collection"));
        form.append("classify", classify ? "true" : "false");
        accepted = await api("/index", { method: "POST", body: form });
      } else if (f.get("path")) {
        accepted = await postJson("/index", { source: { path: f.get("path") }, collection: f.get("collection"), classify });
      } else {
        throw new Error("Give a folder on the server or choose an archive to upload.");
      }
      jobCard(accepted.job_id);
      refreshJobs();
    } catch (err) { showError(err); }
  });
}

// --- lists ------------------------------------------------------------------
let cursors = [null];
function age(created) {
  const s = Math.max(0, Date.now() / 1000 - Date.parse(created) / 1000);
  return s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}
async function refreshJobs(cursor = cursors[cursors.length - 1]) {
  try {
    const page = await api(`/jobs?limit=10${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
    $("#jobs tbody").replaceChildren(...page.jobs.map((j) => el("tr", {},
      el("td", {}, j.type), el("td", { class: `state-${j.state}` }, j.state),
      el("td", {}, `${j.progress.done}/${j.progress.total}${j.progress.failed ? ` (${j.progress.failed} failed)` : ""}`),
      el("td", {}, age(j.created_at)),
      el("td", { class: "id" }, el("button", { class: "secondary", type: "button", onclick: () => jobCard(j.id) }, j.id.slice(0, 8))))));
    $("#jobs-more").disabled = !page.next_cursor;
    $("#jobs-more").onclick = () => { cursors.push(page.next_cursor); refreshJobs(page.next_cursor); };
  } catch (err) { showError(err); }
}

async function refreshCollections() {
  try {
    const { collections } = await api("/collections");
    for (const select of [$("#lookup-collection"), $("#dups-collection")]) {
      const chosen = select.value;
      select.replaceChildren(...collections.map((c) => el("option", { value: c.name }, `${c.name} (${c.count})`)));
      if (chosen && collections.some((c) => c.name === chosen)) select.value = chosen;
    }
    $("#collections tbody").replaceChildren(...collections.map((c) => el("tr", {},
      el("td", {}, c.name), el("td", {}, String(c.count)), el("td", {}, c.model), el("td", {}, String(c.dim)),
      el("td", {}, el("button", { class: "danger", type: "button", onclick: () => dropCollection(c.name) }, "Delete")))));
  } catch (err) { showError(err); }
}

async function dropCollection(name) {
  if (!confirm(`Delete collection "${name}" and all its vectors? This cannot be undone.`)) return;
  try { await api(`/collections/${name}`, { method: "DELETE" }); refreshCollections(); } catch (err) { showError(err); }
}

// --- duplicates ---------------------------------------------------------------
// A duplicates job groups near-identical images; the user picks one to keep per
// group (the server suggests the most pixels, then the largest file) and the rest go
// through the ordinary delete job. Paths are users' text: only ever textContent.
const DUP_PER_PAGE = 20;
const dups = { job: null, collection: null, page: 1, total: 0, groups: [], keep: new Map(), deleted: new Set() };

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024, i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

// A group's key: its suggested keeper (groups are disjoint, so it is unique).
const groupKey = (g) => g.keep;
// The member kept in a group: the user's choice, else the suggestion; "" keeps all.
const keptIn = (g) => (dups.keep.has(groupKey(g)) ? dups.keep.get(groupKey(g)) : g.keep);

function toDelete() {
  const ids = [];
  for (const g of dups.groups) {
    const kept = keptIn(g);
    if (kept === "") continue;
    for (const m of g.members) if (m.id !== kept && !dups.deleted.has(m.id)) ids.push(m);
  }
  return ids;
}

function memberCard(g, m, gi) {
  const gone = dups.deleted.has(m.id);
  const kept = keptIn(g) === m.id;
  const radio = el("input", { type: "radio", name: `keep-${gi}`, value: m.id, checked: kept, disabled: gone,
                              onchange: () => { dups.keep.set(groupKey(g), m.id); markGroup(gi); } });
  return el("li", { class: "member", "data-id": m.id },
    thumb(m.id, m.path),
    el("div", { class: "cap" },
      el("label", { class: "choice" }, radio, gone ? " deleted" : " keep",
        m.id === g.keep ? el("span", { class: "suggested", title: "Most pixels, then the largest file" }, "suggested") : null),
      el("div", {}, el("span", { class: "size" }, fmtBytes(m.size)), " · ",
        el("span", { class: "dims" }, m.width && m.height ? `${m.width}×${m.height}` : "size unknown"), " · ",
        "score ", el("span", { class: "score", title: "Cosine similarity to the suggested keeper" }, m.score.toFixed(3))),
      el("div", { class: "path" }, m.path)));
}

function markGroup(gi) {
  const g = dups.groups[gi];
  const node = $(`#dups-groups .dup-group[data-group="${gi}"]`);
  const kept = keptIn(g);
  for (const li of node.querySelectorAll("li.member")) {
    const id = li.dataset.id;
    li.classList.toggle("kept", id === kept);
    li.classList.toggle("discard", kept !== "" && id !== kept && !dups.deleted.has(id));
    li.classList.toggle("deleted", dups.deleted.has(id));
  }
  updateDeleteButton();
}

function updateDeleteButton() {
  const n = toDelete().length;
  const button = $("#dups-delete");
  button.textContent = n ? `Delete the others (${n} on this page)` : "Delete the others";
  button.disabled = n === 0;
}

function renderGroups() {
  const pages = Math.max(1, Math.ceil(dups.total / DUP_PER_PAGE));
  $("#dups-page").textContent = `Page ${dups.page} of ${pages}`;
  $("#dups-prev").disabled = dups.page <= 1;
  $("#dups-next").disabled = dups.page >= pages;
  if (!dups.groups.length) {
    $("#dups-groups").replaceChildren(el("p", { class: "muted" }, "No near-duplicates at this threshold."));
    updateDeleteButton();
    return;
  }
  $("#dups-groups").replaceChildren(...dups.groups.map((g, gi) => {
    const first = (dups.page - 1) * DUP_PER_PAGE + gi + 1;
    const keepAll = el("input", { type: "radio", name: `keep-${gi}`, value: "", checked: keptIn(g) === "",
                                  onchange: () => { dups.keep.set(groupKey(g), ""); markGroup(gi); } });
    return el("article", { class: "dup-group", "data-group": String(gi), "aria-label": `Group ${first}` },
      el("div", { class: "row" }, el("strong", {}, `Group ${first}: ${g.size} images`),
        el("label", { class: "muted" }, keepAll, " keep all (not duplicates)")),
      el("ul", { class: "members" }, g.members.map((m) => memberCard(g, m, gi))));
  }));
  dups.groups.forEach((_, gi) => markGroup(gi));
}

async function loadGroups(page) {
  try {
    const body = await api(`/jobs/${dups.job}/groups?page=${page}&per_page=${DUP_PER_PAGE}`);
    Object.assign(dups, { page: body.page, total: body.total, groups: body.groups });
    renderGroups();
  } catch (err) { showError(err); }
}

function renderDupJob(job) {
  const p = job.progress;
  const active = !FINAL.has(job.state);
  $("#dups-job").replaceChildren(...[
    el("div", { class: "row" }, el("strong", {}, "duplicates "),
      el("span", { class: `state state-${job.state}` }, job.state), el("span", { class: "muted" }, job.id)),
    active ? el("progress", { max: Math.max(p.total, 1), value: p.done, "aria-label": `${p.done} of ${p.total} images` }) : null,
    active ? el("div", { class: "row" }, el("span", { class: "counts" }, `${p.done} / ${p.total} images compared`),
      el("span", {}, fmtEta(p)),
      el("button", { class: "danger", type: "button", onclick: () => cancel(job.id) }, "Cancel")) : null,
    job.error ? el("p", { class: "state-failed" }, job.error) : null,
  ].filter(Boolean));
}

async function findDuplicates(e) {
  e.preventDefault();
  clearError();
  const body = { collection: $("#dups-collection").value };
  const threshold = $("#dups-threshold").value;
  if (threshold !== "") body.threshold = Number(threshold);
  const prefix = $("#dups-prefix").value.trim();
  if (prefix) body.path_prefix = prefix;
  const button = $("#dups-form button");
  button.disabled = true;
  $("#dups-result").hidden = true;
  $("#dups-outcome").replaceChildren();
  try {
    const { job_id } = await postJson("/duplicates", body);
    Object.assign(dups, { job: job_id, collection: body.collection, keep: new Map(), deleted: new Set() });
    const job = await waitJob(job_id, renderDupJob);
    refreshJobs();
    if (job.state !== "succeeded") return;
    const r = job.result;
    $("#dups-summary").textContent =
      `${r.groups} group(s), ${r.images_in_groups} images in them, in ${r.collection} at threshold ${r.threshold}.`;
    $("#dups-result").hidden = false;
    await loadGroups(1);
  } catch (err) { showError(err); } finally { button.disabled = false; }
}

// The confirmation: a modal listing what goes; resolves true only on "Delete".
function confirmDelete(members) {
  const dialog = $("#dups-confirm");
  $("#dups-confirm-text").textContent =
    `${members.length} image(s) will be deleted from collection ${dups.collection}; the one chosen in each group stays.`;
  const shown = members.slice(0, 12);
  $("#dups-confirm-list").replaceChildren(...shown.map((m) => el("li", { class: "path" }, m.path)),
    members.length > shown.length ? el("li", { class: "muted" }, `and ${members.length - shown.length} more`) : null);
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "delete"), { once: true });
  });
}

async function deleteOthers() {
  clearError();
  const members = toDelete();
  if (!members.length || !(await confirmDelete(members))) return;
  const out = $("#dups-outcome");
  out.replaceChildren(el("p", { class: "muted" }, `Deleting ${members.length} image(s)…`));
  $("#dups-delete").disabled = true;
  try {
    const { job_id } = await postJson("/delete", { collection: dups.collection, ids: members.map((m) => m.id) });
    const job = await waitJob(job_id);
    if (job.state !== "succeeded") throw new Error(job.error || `delete ${job.state}`);
    for (const m of members) dups.deleted.add(m.id);
    const r = job.result;
    out.replaceChildren(el("p", { class: "state-succeeded", "data-job": job_id },
      `Deleted ${r.deleted} image(s)` + (r.not_found ? `; ${r.not_found} were already gone.` : ".")));
    renderGroups();
    refreshJobs(); refreshCollections();
  } catch (err) {
    out.replaceChildren();
    showError(err);
    updateDeleteButton();
  }
}

function setupDuplicates() {
  $("#dups-form").addEventListener("submit", findDuplicates);
  $("#dups-prev").addEventListener("click", () => loadGroups(dups.page - 1));
  $("#dups-next").addEventListener("click", () => loadGroups(dups.page + 1));
  $("#dups-delete").addEventListener("click", deleteOthers);
}

// --- start ------------------------------------------------------------------
function askToken() {
  const form = $("#token-form");
  form.hidden = false;
  $("#token").focus();
}

function start() {
  setupDrop();
  setupIndexForm();
  setupDuplicates();
  $("#jobs-first").addEventListener("click", () => { cursors = [null]; refreshJobs(null); });
  $("#text-form").addEventListener("submit", (e) => { e.preventDefault(); searchByText($("#text-query").value); });
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value);
    $("#token-form").hidden = true;
    clearError();
    refreshJobs(); refreshCollections(); setupTextSearch();
  });
  if (document.body.dataset.tokenRequired === "true" && !sessionStorage.getItem(TOKEN_KEY)) {
    askToken();
    return;
  }
  refreshJobs();
  refreshCollections();
  setupTextSearch();
}

document.addEventListener("DOMContentLoaded", start);
