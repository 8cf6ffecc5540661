// The annotator page: keyboard-first rating with the next clip leased and preloaded, everything
// on one screen; history (H) and undo (U) reopen a rating for a correction; guidelines (?).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const root = $("annotator");
  const nextUrl = root.dataset.nextUrl;
  const historyUrl = root.dataset.historyUrl;
  const seenUrl = root.dataset.seenUrl;
  const undoSeconds = parseInt(root.dataset.undoSeconds || "0", 10);
  const csrf = root.dataset.csrf;
  const form = $("scores");
  const dims = Array.from(document.querySelectorAll("fieldset.dimension"));
  const videos = [$("video-a"), $("video-b")];
  const reviseVideo = $("video-r");
  const statusEl = $("status");
  const progressEl = $("progress");
  const speedEl = $("speed");
  const frameEl = $("frame-readout");
  const dialog = $("reason-dialog");
  const drawers = {history: $("history"), guidelines: $("guidelines")};
  let current = null;   // {clip, key, shownAt, video}
  let upcoming = null;  // {clip, video} leased and preloading
  let revising = null;  // {ratingId, clip, shownAt, saved: {scores, focus}} while correcting
  let lastSubmit = null; // {ratingId, clip, scores, at} for U
  let undoTimer = null;
  let focus = 0;
  let busy = false;
  let comparing = false;
  let lightboxPinned = false;

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  async function api(url, body, method) {
    const resp = await fetch(url, {
      method: method || "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: method === "GET" ? undefined : JSON.stringify(body || {}),
    });
    let data = null;
    if (resp.status !== 204) { try { data = await resp.json(); } catch (e) { data = null; } }
    return {status: resp.status, ok: resp.ok, data};
  }

  function say(text, kind) {
    statusEl.textContent = text || "";
    statusEl.className = "status " + (kind || "");
  }

  function errorText(res) {
    if (!res.data) return `server answered ${res.status}`;
    if (res.data.detail) return res.data.detail;
    return Object.entries(res.data).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
  }

  function spareVideo() { return current && current.video === videos[0] ? videos[1] : videos[0]; }
  function activeClip() { return revising ? revising.clip : (current ? current.clip : null); }
  function video() { return revising ? reviseVideo : (current ? current.video : null); }

  function load(v, clip) {
    v.src = clip.video_url;
    v.poster = clip.poster_url;
    v.dataset.clipId = clip.id;
    v.load();
  }

  function play(v) {
    v.hidden = false;
    v.playbackRate = parseFloat(speedEl.value);
    const playing = v.play();
    if (playing && playing.catch) playing.catch(() => {});
  }

  function onlyVideo(v) {
    [...videos, reviseVideo].forEach((x) => { if (x !== v) { x.pause(); x.hidden = true; } });
    play(v);
  }

  // Condition image, character reference, prompt and the compare frame of a clip.
  function showClipContext(clip) {
    $("condition-image").src = clip.condition_image_url;
    $("lightbox-condition").src = clip.condition_image_url;
    $("prompt").textContent = clip.prompt;
    const hasCharacter = !!clip.character_reference_url;
    $("thumb-character").hidden = !hasCharacter;
    $("lightbox-character-wrap").hidden = !hasCharacter;
    if (hasCharacter) {
      $("character-image").src = clip.character_reference_url;
      $("lightbox-character").src = clip.character_reference_url;
    }
    $("compare-image").src = clip.poster_url;  // the poster is the clip's first frame
  }

  async function fetchNext(exclude) {
    const res = await api(nextUrl, {exclude});
    if (res.status === 204) return null;
    if (!res.ok) throw new Error(errorText(res));
    return res.data;
  }

  function resetScores() {
    form.reset();
    dims.forEach((d) => d.classList.remove("scored", "missing"));
  }

  function fillScores(s) {
    resetScores();
    dims.forEach((d, i) => { if (s[d.dataset.key]) setScore(i, s[d.dataset.key]); });
  }

  function show(entry, progress) {
    const clip = entry.clip;
    onlyVideo(entry.video);
    showClipContext(clip);
    current = {clip, key: uuid4(), shownAt: performance.now(), video: entry.video};
    root.dataset.clipId = clip.id;
    resetScores();
    setFocus(0);
    if (progress) renderProgress(progress);
  }

  function renderProgress(p) {
    progressEl.textContent = `You rated ${p.rated_by_me} · round ${p.round_ratings_done}/${p.round_ratings_target} ratings · ${p.clips_left} clips open`;
  }

  async function prefetch() {
    upcoming = null;
    try {
      const data = await fetchNext([current.clip.id]);
      if (!data) return;
      const v = spareVideo();
      load(v, data.clip);
      upcoming = {clip: data.clip, video: v, progress: data.progress};
      renderProgress(data.progress);  // leased after the last submit, so its counts are current
    } catch (e) { /* the next submit fetches again */ }
  }

  async function advance(progressHint) {
    if (upcoming && (!current || upcoming.clip.id !== current.clip.id)) {
      const entry = upcoming;
      upcoming = null;
      show(entry, progressHint || entry.progress);
    } else {
      const data = await fetchNext(current ? [current.clip.id] : []);
      if (!data) { finish(); return; }
      const v = spareVideo();
      load(v, data.clip);
      show({clip: data.clip, video: v}, data.progress);
    }
    prefetch();
  }

  function finish() {
    current = null;
    videos.forEach((v) => { v.pause(); v.hidden = true; });
    $("workspace").hidden = true;
    $("done").hidden = false;
    progressEl.textContent = "Round finished for you";
  }

  function setFocus(i) {
    focus = (i + dims.length) % dims.length;
    dims.forEach((d, j) => d.classList.toggle("focused", j === focus));
    dims[focus].focus({preventScroll: true});
  }

  function setScore(i, n) {
    const input = dims[i].querySelector(`input[value="${n}"]`);
    if (!input) return;
    input.checked = true;
    dims[i].classList.add("scored");
    dims[i].classList.remove("missing");
  }

  function scores() {
    const out = {};
    dims.forEach((d) => {
      const checked = d.querySelector("input:checked");
      out[d.dataset.key] = checked ? parseInt(checked.value, 10) : null;
    });
    return out;
  }

  function checkComplete(s) {
    const missing = dims.filter((d) => s[d.dataset.key] === null);
    if (!missing.length) return true;
    missing.forEach((d) => d.classList.add("missing"));
    setFocus(dims.indexOf(missing[0]));
    say(`Score every dimension first (${missing.length} missing).`, "error");
    return false;
  }

  function armUndo(entry) {
    lastSubmit = entry;
    $("btn-undo").disabled = false;
    clearTimeout(undoTimer);
    undoTimer = setTimeout(() => { $("btn-undo").disabled = true; }, undoSeconds * 1000);
  }

  async function submit() {
    if (busy) return;
    if (revising) { await submitCorrection(); return; }
    if (!current) return;
    const s = scores();
    if (!checkComplete(s)) return;
    busy = true;
    say("Saving…");
    const clip = current.clip;
    const body = {...s, seconds_spent: (performance.now() - current.shownAt) / 1000, idempotency_key: current.key};
    try {
      const res = await api(`/api/clips/${clip.id}/ratings/`, body);
      if (!res.ok) {
        // Keep the scores on screen: the annotator can retry (same key, so never counted twice).
        say(`Not saved: ${errorText(res)}. Your scores are kept; press Enter to retry or S to skip.`, "error");
        return;
      }
      say(undoSeconds > 0 ? "Saved. U reopens it." : "Saved.", "ok");
      armUndo({ratingId: res.data.rating_id, clip, scores: s, at: Date.now()});
      await advance(res.data && res.data.progress);
    } catch (e) {
      say(`Not saved (network error: ${e.message}). Your scores are kept; press Enter to retry.`, "error");
    } finally {
      busy = false;
    }
  }

  // --- corrections: reopen one of your ratings, revise, save a superseding rating ---------------

  async function openRevision(ratingId, known) {
    if (busy) return;
    let data = known;
    if (!data) {
      const res = await api(`${historyBase()}${ratingId}/`, null, "GET");
      if (!res.ok) { say(`Cannot reopen: ${errorText(res)}`, "error"); return; }
      data = {clip: res.data.clip, scores: res.data.scores};
    }
    if (!revising) revising = {saved: {scores: scores(), focus}};
    revising.ratingId = ratingId;
    revising.clip = data.clip;
    revising.shownAt = performance.now();
    closeDrawers(false);
    $("workspace").hidden = false;  // also after the round is finished for this annotator
    $("done").hidden = true;
    load(reviseVideo, data.clip);
    onlyVideo(reviseVideo);
    showClipContext(data.clip);
    root.dataset.revisingRating = ratingId;
    $("revise-clip").textContent = data.clip.id;
    $("revise-banner").hidden = false;
    form.classList.add("revising");
    $("btn-submit").firstChild.textContent = "Save correction ";
    fillScores(data.scores);
    setFocus(0);
    say("Change the scores, then Enter saves the correction.", "");
  }

  function closeRevision() {
    if (!revising) return;
    const saved = revising.saved;
    revising = null;
    delete root.dataset.revisingRating;
    reviseVideo.pause();
    reviseVideo.hidden = true;
    $("revise-banner").hidden = true;
    form.classList.remove("revising");
    $("btn-submit").firstChild.textContent = "Submit & next ";
    if (current) {
      onlyVideo(current.video);
      showClipContext(current.clip);
      resetScores();
      dims.forEach((d, i) => { const n = saved.scores[d.dataset.key]; if (n) setScore(i, n); });
      setFocus(saved.focus);
    } else {
      finish();
    }
  }

  async function submitCorrection() {
    const s = scores();
    if (!checkComplete(s)) return;
    busy = true;
    say("Saving correction…");
    const body = {...s, seconds_spent: (performance.now() - revising.shownAt) / 1000};
    try {
      const res = await api(`${historyBase()}${revising.ratingId}/`, body);
      if (!res.ok) { say(`Correction not saved: ${errorText(res)}. Esc goes back.`, "error"); return; }
      const clip = revising.clip;
      closeRevision();
      armUndo({ratingId: res.data.rating_id, clip, scores: s, at: Date.now()});
      say(`Correction saved for clip ${clip.id}.`, "ok");
      if (!drawers.history.hidden) refreshHistory();
    } catch (e) {
      say(`Correction not saved (network error: ${e.message}).`, "error");
    } finally { busy = false; }
  }

  async function undo() {
    if (revising || busy) return;
    if (lastSubmit && Date.now() - lastSubmit.at <= undoSeconds * 1000) {
      await openRevision(lastSubmit.ratingId, {clip: lastSubmit.clip, scores: lastSubmit.scores});
      return;
    }
    // Nothing in memory (a reload): the newest rating, if still inside the window.
    const res = await api(historyUrl + "&limit=1", null, "GET");
    const newest = res.ok && res.data.ratings[0];
    if (newest && newest.undoable) { await openRevision(newest.rating_id); return; }
    say(`Nothing to undo from the last ${undoSeconds} s; H lists older ratings to revise.`, "error");
  }

  function historyBase() { return historyUrl.split("?")[0]; }

  // --- drawers: history (H) and guidelines (?) -------------------------------------------------

  function ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    return `${Math.round(s / 3600)} h ago`;
  }

  async function refreshHistory() {
    const list = $("history-list");
    const res = await api(historyUrl + "&limit=20", null, "GET");
    list.replaceChildren();
    if (!res.ok) { list.textContent = `Could not load: ${errorText(res)}`; return; }
    if (!res.data.ratings.length) { list.textContent = "No ratings in this round yet."; return; }
    res.data.ratings.forEach((r) => {
      const li = document.createElement("li");
      li.dataset.ratingId = r.rating_id;
      const img = document.createElement("img");
      img.src = r.poster_url; img.alt = `clip ${r.clip_id}`; img.loading = "lazy";
      const meta = document.createElement("div");
      meta.className = "meta";
      const head = document.createElement("div");
      head.textContent = `Clip ${r.clip_id} · ${ago(r.created_at)}${r.corrected ? " · corrected" : ""}`;
      const s = document.createElement("div");
      s.className = "s";
      s.title = dims.map((d) => `${d.querySelector(".dim-name").textContent}: ${r.scores[d.dataset.key]}`).join("\n");
      s.textContent = dims.map((d) => r.scores[d.dataset.key]).join(" ");
      const p = document.createElement("div");
      p.className = "p"; p.textContent = r.prompt;
      meta.append(head, s, p);
      const btn = document.createElement("button");
      btn.type = "button"; btn.className = "revise"; btn.textContent = "Revise";
      btn.addEventListener("click", () => openRevision(r.rating_id));
      li.append(img, meta, btn);
      list.append(li);
    });
  }

  function closeDrawers(restoreFocus) {
    Object.entries(drawers).forEach(([name, el]) => {
      if (el.hidden) return;
      el.hidden = true;
      el.querySelectorAll("video").forEach((v) => v.pause());
      if (name === "guidelines") api(seenUrl, {}).catch(() => {});
    });
    if (restoreFocus !== false) setFocus(focus);
  }

  function toggleDrawer(name) {
    const el = drawers[name];
    const opening = el.hidden;
    closeDrawers(!opening);
    if (!opening) return;
    el.hidden = false;
    el.querySelector(".close").focus({preventScroll: true});
    if (name === "history") refreshHistory();
  }

  document.querySelectorAll(".drawer .close").forEach((b) => b.addEventListener("click", () => closeDrawers()));
  document.querySelectorAll(".example").forEach((fig) => {
    fig.querySelector(".example-play").addEventListener("click", () => {
      const v = document.createElement("video");
      v.src = fig.dataset.video; v.muted = true; v.loop = true; v.autoplay = true; v.controls = true;
      v.setAttribute("playsinline", "");
      fig.querySelector(".example-play").replaceWith(v);
    });
  });

  // --- images: thumbnails that enlarge on hover/click (I); compare with the first frame (C) ------

  function setLightbox(open, pinned) {
    $("lightbox").hidden = !open;
    lightboxPinned = open && pinned;
  }
  ["thumb-condition", "thumb-character"].forEach((id) => {
    const t = $(id);
    t.addEventListener("mouseenter", () => { if (!lightboxPinned) setLightbox(true, false); });
    t.addEventListener("mouseleave", () => { if (!lightboxPinned) setLightbox(false, false); });
    t.addEventListener("click", () => { setLightbox(!lightboxPinned, true); setFocus(focus); });
  });
  $("lightbox").addEventListener("click", () => setLightbox(false, false));

  function toggleCompare() {
    comparing = !comparing;
    $("compare-pane").hidden = !comparing;
    $("stage").classList.toggle("comparing", comparing);
    $("btn-compare").setAttribute("aria-pressed", String(comparing));
  }

  // --- skip / flag, playback ------------------------------------------------------------------

  function askReason(title, preset) {
    return new Promise((resolve) => {
      $("reason-title").textContent = title;
      const input = $("reason-input");
      input.value = preset || "";
      dialog.returnValue = "";
      dialog.showModal();
      input.focus();
      dialog.addEventListener("close", function onClose() {
        dialog.removeEventListener("close", onClose);
        resolve(dialog.returnValue === "ok" && input.value.trim() ? input.value.trim() : null);
      });
    });
  }

  async function skipOrFlag(kind) {
    if (revising) { say("Save the correction (Enter) or go back (Esc) first.", "error"); return; }
    if (!current || busy) return;
    const reason = await askReason(kind === "flag" ? "Flag this clip as broken" : "Skip this clip",
      kind === "flag" ? "Video does not play" : "");
    if (!reason) { setFocus(focus); return; }
    busy = true;
    try {
      const res = await api(`/api/clips/${current.clip.id}/${kind}/`, {reason});
      if (!res.ok) { say(`Could not ${kind}: ${errorText(res)}`, "error"); return; }
      say(kind === "flag" ? "Flagged; thank you." : "Skipped.", "ok");
      await advance();
    } catch (e) {
      say(`Could not ${kind} (network error: ${e.message})`, "error");
    } finally { busy = false; }
  }

  function togglePlay() { const v = video(); if (v) (v.paused ? v.play() : v.pause()); }
  function stepFrame(direction) {
    const v = video(); if (!v) return;
    v.pause();
    const fps = activeClip().fps || 16;
    v.currentTime = Math.max(0, Math.min(v.duration || 0, v.currentTime + direction / fps));
  }
  function changeSpeed(delta) {
    const options = Array.from(speedEl.options);
    speedEl.selectedIndex = Math.max(0, Math.min(options.length - 1, speedEl.selectedIndex + delta));
    speedEl.dispatchEvent(new Event("change"));
  }

  speedEl.addEventListener("change", () => { [...videos, reviseVideo].forEach((v) => { v.playbackRate = parseFloat(speedEl.value); }); });
  $("btn-play").addEventListener("click", togglePlay);
  $("btn-back").addEventListener("click", () => stepFrame(-1));
  $("btn-fwd").addEventListener("click", () => stepFrame(1));
  $("btn-compare").addEventListener("click", toggleCompare);
  $("btn-skip").addEventListener("click", () => skipOrFlag("skip"));
  $("btn-flag").addEventListener("click", () => skipOrFlag("flag"));
  $("btn-undo").addEventListener("click", undo);
  $("btn-history").addEventListener("click", () => toggleDrawer("history"));
  $("btn-guidelines").addEventListener("click", () => toggleDrawer("guidelines"));
  form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  dims.forEach((d, i) => {
    d.addEventListener("click", () => { focus = i; dims.forEach((x, j) => x.classList.toggle("focused", j === i)); });
    d.querySelectorAll("input").forEach((input) => input.addEventListener("change", () => setScore(i, input.value)));
  });
  [...videos, reviseVideo].forEach((v) => v.addEventListener("timeupdate", () => {
    if (v !== video()) return;
    const clip = activeClip();
    const fps = clip.fps || 16;
    frameEl.textContent = `frame ${Math.floor(v.currentTime * fps) + 1} / ${clip.frames || "?"}`;
  }));

  document.addEventListener("keydown", (e) => {
    if (dialog.open || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target && (e.target.tagName === "SELECT" || e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA")) return;
    const k = e.key;
    const drawerOpen = Object.values(drawers).some((el) => !el.hidden);
    if (k === "Escape") {
      if (drawerOpen) { closeDrawers(); return; }
      if (!$("lightbox").hidden) { setLightbox(false, false); return; }
      if (revising) { closeRevision(); say("Back to your clip; nothing changed.", ""); return; }
      return;
    }
    if (k === "?") { e.preventDefault(); toggleDrawer("guidelines"); return; }
    if (k === "h" || k === "H") { e.preventDefault(); toggleDrawer("history"); return; }
    if (drawerOpen) return;  // inside a drawer, keys act on its buttons and links
    if (k === "i" || k === "I") { e.preventDefault(); setLightbox($("lightbox").hidden, true); return; }
    if (k === "c" || k === "C") { e.preventDefault(); toggleCompare(); return; }
    if (k === "u" || k === "U") { e.preventDefault(); undo(); return; }
    if (k >= "1" && k <= "5") { e.preventDefault(); setScore(focus, k); if (focus < dims.length - 1) setFocus(focus + 1); return; }
    if (k === "ArrowDown" || (k === "Tab" && !e.shiftKey)) { e.preventDefault(); setFocus(focus + 1); return; }
    if (k === "ArrowUp" || (k === "Tab" && e.shiftKey)) { e.preventDefault(); setFocus(focus - 1); return; }
    if (k === "ArrowRight" || k === "ArrowLeft") {
      e.preventDefault();
      const s = scores()[dims[focus].dataset.key] || 3;
      setScore(focus, Math.max(1, Math.min(5, s + (k === "ArrowRight" ? 1 : -1))));
      return;
    }
    if (k === "Enter") { e.preventDefault(); submit(); return; }
    if (k === "s" || k === "S") { e.preventDefault(); skipOrFlag("skip"); return; }
    if (k === "f" || k === "F") { e.preventDefault(); skipOrFlag("flag"); return; }
    if (k === " ") { e.preventDefault(); togglePlay(); return; }
    if (k === ",") { e.preventDefault(); stepFrame(-1); return; }
    if (k === ".") { e.preventDefault(); stepFrame(1); return; }
    if (k === "[") { e.preventDefault(); changeSpeed(-1); return; }
    if (k === "]") { e.preventDefault(); changeSpeed(1); return; }
  });

  if (root.dataset.showGuidelines === "1") toggleDrawer("guidelines");
  advance().catch((e) => say(`Could not load a clip: ${e.message}`, "error"));
})();
