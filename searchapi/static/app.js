// Search page for the image similarity API (POST /search, GET /images/<id>/similar).
// Every string from the API goes into the page through textContent or a checked URL, never as HTML.
"use strict";

(() => {
  const MAX_FROM = 900; // the API's upper bound for `from`
  const $ = (id) => document.getElementById(id);

  const state = {
    query: null, // {request(from, size) -> {url, init}} of the current search
    nextFrom: 0,
    shown: 0,
    generation: 0, // answers of superseded requests are dropped
    controller: null,
    previewObjectUrl: null,
  };

  // ---- inputs -------------------------------------------------------------------------------

  function pageSize() {
    const value = parseInt($("size").value, 10);
    const size = Number.isFinite(value) ? Math.max(1, Math.min(100, value)) : 12;
    $("size").value = String(size);
    return size;
  }

  function withParams(path, from, size) {
    const params = new URLSearchParams({ size: String(size), from: String(from) });
    const minScore = $("min-score").value.trim();
    if (minScore !== "") params.set("min_score", minScore);
    return `${path}?${params}`;
  }

  /** An http(s) (or our own blob:) URL, absolute; anything else (javascript:, garbage) -> null. */
  function safeImageUrl(value) {
    if (typeof value !== "string" || value === "") return null;
    try {
      const url = new URL(value, window.location.href);
      return ["http:", "https:", "blob:"].includes(url.protocol) ? url.href : null;
    } catch {
      return null;
    }
  }

  function isHttpUrl(value) {
    const url = safeImageUrl(value);
    return url !== null && !url.startsWith("blob:") && /^https?:\/\//i.test(value);
  }

  // ---- queries --------------------------------------------------------------------------------

  function fileQuery(file) {
    return {
      request: (from, size) => {
        const form = new FormData();
        form.append("image", file, file.name || "image");
        return { url: withParams("/search", from, size), init: { method: "POST", body: form } };
      },
    };
  }

  function urlQuery(imageUrl) {
    return {
      request: (from, size) => ({
        url: withParams("/search", from, size),
        init: {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ image_url: imageUrl }),
        },
      }),
    };
  }

  function similarQuery(imageId) {
    const path = `/images/${encodeURIComponent(imageId)}/similar`;
    return { request: (from, size) => ({ url: withParams(path, from, size), init: {} }) };
  }

  function searchFile(file, origin) {
    if (!file) return;
    if (state.previewObjectUrl) URL.revokeObjectURL(state.previewObjectUrl);
    state.previewObjectUrl = URL.createObjectURL(file);
    setLocationImage(null);
    start(fileQuery(file), state.previewObjectUrl, `${origin}: ${file.name || "image"}`);
  }

  function searchUrl(imageUrl) {
    const url = imageUrl.trim();
    if (!url) return;
    setLocationImage(null);
    start(urlQuery(url), url, `Image URL: ${url}`);
  }

  function searchSimilar(imageId, thumbnailUrl, relationId) {
    const product = relationId ? `, product ${relationId}` : "";
    setLocationImage(imageId);
    start(similarQuery(imageId), thumbnailUrl, `More like image ${imageId}${product}`);
  }

  function setLocationImage(imageId) {
    const url = new URL(window.location.href);
    if (imageId === null) url.searchParams.delete("image");
    else url.searchParams.set("image", imageId);
    window.history.replaceState(null, "", url);
  }

  // ---- requests -------------------------------------------------------------------------------

  function start(query, previewUrl, caption) {
    $("start").hidden = true;
    state.query = query;
    state.nextFrom = 0;
    state.shown = 0;
    showPreview(previewUrl, caption);
    loadPage(false);
  }

  async function readJson(response) {
    const text = await response.text();
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  function describeFailure(response, body) {
    const error = body && typeof body === "object" ? body.error : null;
    if (error && typeof error === "object" && error.message) {
      const code = error.code ? ` ${error.code}` : "";
      return `${error.message} (HTTP ${response.status}${code})`;
    }
    const reason = response.statusText ? ` ${response.statusText}` : "";
    return `HTTP ${response.status}${reason}: the server did not answer with a search result`;
  }

  async function loadPage(append) {
    if (!state.query) return;
    const generation = ++state.generation;
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const size = pageSize();
    const from = append ? state.nextFrom : 0;
    hideError();
    if (!append) clearResults();
    $("more").hidden = true;
    setBusy(true);
    setStatus(append ? "Loading more results…" : "Searching…");
    try {
      const { url, init } = state.query.request(from, size);
      const headers = { Accept: "application/json", ...(init.headers || {}) };
      const response = await fetch(url, { ...init, headers, signal: controller.signal });
      const body = await readJson(response);
      if (generation !== state.generation) return;
      if (!response.ok || !body || !Array.isArray(body.hits)) {
        showError(`Search failed: ${describeFailure(response, body)}`);
        setStatus(state.shown ? `${state.shown} products shown.` : "");
        $("more").hidden = !append; // a failed "more" can be retried
        return;
      }
      render(body, from, size);
    } catch (error) {
      if (generation !== state.generation || error.name === "AbortError") return;
      showError(`Search failed: could not reach the search API (${error.message}).`);
      setStatus(state.shown ? `${state.shown} products shown.` : "");
      $("more").hidden = !append;
    } finally {
      if (generation === state.generation) setBusy(false);
    }
  }

  // ---- rendering ------------------------------------------------------------------------------

  function setBusy(busy) {
    $("results").setAttribute("aria-busy", String(busy));
    $("more").disabled = busy;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showError(text) {
    $("error").textContent = text;
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function clearResults() {
    $("results").replaceChildren();
  }

  function showPreview(previewUrl, caption) {
    const image = $("query-image");
    const safe = safeImageUrl(previewUrl);
    image.hidden = safe === null;
    if (safe === null) image.removeAttribute("src");
    else image.src = safe;
    $("query-caption").textContent = caption;
    $("query").hidden = false;
  }

  function formatScore(score) {
    return typeof score === "number" && Number.isFinite(score) ? score.toFixed(3) : "–";
  }

  function text(tag, className, content) {
    const node = document.createElement(tag);
    node.className = className;
    node.textContent = content;
    return node;
  }

  function card(hit, rank) {
    const id = String(hit.id ?? "");
    const product = hit.relation_id == null ? "(no product)" : String(hit.relation_id);
    const score = formatScore(hit.score);
    const item = document.createElement("li");
    item.className = "hit";
    item.dataset.id = id;

    const button = document.createElement("button");
    button.type = "button";
    button.className = "hit-button";
    button.title = "Search for images like this one";
    button.setAttribute("aria-label", `Result ${rank}: product ${product}, image ${id}, score ${score}. ` +
      "Search for images like this one.");

    const thumbnailUrl = safeImageUrl(hit.image_url);
    const image = document.createElement("img");
    image.className = "thumb";
    image.alt = "";
    image.loading = "lazy";
    image.decoding = "async";
    image.addEventListener("error", () => item.classList.add("broken"));
    if (thumbnailUrl) image.src = thumbnailUrl;
    else item.classList.add("broken");

    const meta = document.createElement("span");
    meta.className = "meta";
    const scoreNode = text("span", "score", score);
    if (typeof hit.score === "number") scoreNode.title = `score ${hit.score}`;
    meta.append(text("span", "product", product), scoreNode, text("span", "image-id", `image ${id}`));

    button.append(image, meta);
    button.addEventListener("click", () => searchSimilar(id, thumbnailUrl, product));
    item.append(button);
    return item;
  }

  function render(body, from, size) {
    const warning = body.model && typeof body.model === "object" ? body.model.warning : null;
    $("warning").textContent = warning ? `Warning: ${warning}` : "";
    $("warning").hidden = !warning;

    const hits = body.hits.filter((hit) => hit && typeof hit === "object");
    $("results").append(...hits.map((hit, index) => card(hit, from + index + 1)));
    state.shown += hits.length;
    state.nextFrom = from + hits.length;
    // `has_more` when the API says it; otherwise a full page suggests there may be more.
    const more = typeof body.has_more === "boolean" ? body.has_more : hits.length >= size;
    $("more").hidden = !more || state.nextFrom > MAX_FROM;

    const took = typeof body.took_ms === "number" ? ` · search took ${Math.round(body.took_ms)} ms` : "";
    if (state.shown === 0) setStatus(`No similar products found${took}.`);
    else if (hits.length === 0) setStatus(`No more results: ${state.shown} products shown.`);
    else setStatus(`${state.shown} products shown${took}${more ? "" : " · no more results"}`);
  }

  // ---- optional endpoints (used when the server has them) --------------------------------------

  async function getJson(url) {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      return response.ok ? await readJson(response) : null;
    } catch {
      return null;
    }
  }

  /** One line about the index from GET /stats (alias, documents, last run), when the server has it. */
  async function showIndexInfo() {
    const stats = await getJson("/stats");
    if (!stats || typeof stats !== "object" || Array.isArray(stats)) return;
    const parts = [];
    if (typeof stats.documents === "number") parts.push(`${stats.documents.toLocaleString()} images indexed`);
    if (typeof stats.alias === "string") parts.push(`alias ${stats.alias}`);
    const run = stats.last_run;
    if (run && typeof run === "object" && typeof run.finished_at === "string") {
      const mode = typeof run.mode === "string" ? `${run.mode} ` : "";
      const when = run.finished_at.replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, " UTC");
      parts.push(`last ${mode}run ${when}`);
    }
    if (stats.model_matches === false) parts.push("the index was built by another model");
    if (!parts.length) return;
    $("index-info").textContent = parts.join(" · ");
    $("index-info").hidden = false;
  }

  async function searchFromLocation() {
    const imageId = new URLSearchParams(window.location.search).get("image");
    if (!imageId) return;
    searchSimilar(imageId, null, null);
    const image = await getJson(`/images/${encodeURIComponent(imageId)}`);
    const stillCurrent = new URLSearchParams(window.location.search).get("image") === imageId;
    if (image && typeof image === "object" && stillCurrent) {
      const product = image.relation_id ? `, product ${image.relation_id}` : "";
      showPreview(image.image_url, `More like image ${imageId}${product}`);
    }
  }

  // ---- events ---------------------------------------------------------------------------------

  function firstFile(list) {
    return list && list.length ? list[0] : null;
  }

  function isEditable(target) {
    return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA"].includes(target.tagName));
  }

  function wire() {
    $("file").addEventListener("change", (event) => {
      searchFile(firstFile(event.target.files), "Uploaded file");
      event.target.value = ""; // choosing the same file again searches again
    });

    $("url-form").addEventListener("submit", (event) => {
      event.preventDefault();
      searchUrl($("url").value);
    });

    $("more").addEventListener("click", () => loadPage(true));

    // Drag and drop: anywhere on the page, with the drop zone highlighted meanwhile.
    const zone = $("drop");
    let depth = 0;
    document.addEventListener("dragenter", (event) => {
      event.preventDefault();
      depth += 1;
      zone.classList.add("over");
    });
    document.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) zone.classList.remove("over");
    });
    document.addEventListener("dragover", (event) => {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
    });
    document.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      zone.classList.remove("over");
      const transfer = event.dataTransfer;
      if (!transfer) return;
      const file = firstFile(transfer.files);
      if (file) {
        searchFile(file, "Dropped file");
        return;
      }
      const dropped = (transfer.getData("text/uri-list") || transfer.getData("text/plain") || "").split("\n")[0].trim();
      if (isHttpUrl(dropped)) {
        $("url").value = dropped;
        searchUrl(dropped);
      }
    });

    // Ctrl+V: an image file from the clipboard; or an image URL when not typing into a field.
    document.addEventListener("paste", (event) => {
      const clipboard = event.clipboardData;
      if (!clipboard) return;
      const image = Array.from(clipboard.files || []).find((file) => file.type.startsWith("image/"));
      if (image) {
        event.preventDefault();
        searchFile(image, "Pasted image");
        return;
      }
      if (isEditable(event.target)) return;
      const pasted = (clipboard.getData("text/plain") || "").trim();
      if (isHttpUrl(pasted)) {
        event.preventDefault();
        $("url").value = pasted;
        searchUrl(pasted);
      }
    });
  }

  wire();
  showIndexInfo();
  searchFromLocation();
})();
