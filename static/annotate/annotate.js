// The annotator page: keyboard-first rating with the next clip leased and preloaded.
(function () {
  "use strict";
  const root = document.getElementById("annotator");
  const nextUrl = root.dataset.nextUrl;
  const csrf = root.dataset.csrf;
  const dims = Array.from(document.querySelectorAll("fieldset.dimension"));
  const videos = [document.getElementById("video-a"), document.getElementById("video-b")];
  const statusEl = document.getElementById("status");
  const progressEl = document.getElementById("progress");
  const speedEl = document.getElementById("speed");
  const frameEl = document.getElementById("frame-readout");
  const dialog = document.getElementById("reason-dialog");
  let current = null;   // {clip, key, shownAt, video}
  let upcoming = null;  // {clip, video} leased and preloading
  let focus = 0;
  let busy = false;

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  async function api(url, body) {
    const resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body || {}),
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

  function load(video, clip) {
    video.src = clip.video_url;
    video.poster = clip.poster_url;
    video.dataset.clipId = clip.id;
    video.load();
  }

  async function fetchNext(exclude) {
    const res = await api(nextUrl, {exclude});
    if (res.status === 204) return null;
    if (!res.ok) throw new Error(errorText(res));
    return res.data;
  }

  function show(entry, progress) {
    const clip = entry.clip;
    videos.forEach((v) => { if (v !== entry.video) { v.pause(); v.hidden = true; } });
    entry.video.hidden = false;
    entry.video.playbackRate = parseFloat(speedEl.value);
    const playing = entry.video.play();
    if (playing && playing.catch) playing.catch(() => {});
    document.getElementById("condition-image").src = clip.condition_image_url;
    document.getElementById("prompt").textContent = clip.prompt;
    const wrap = document.getElementById("character-wrap");
    wrap.hidden = !clip.character_reference_url;
    if (clip.character_reference_url) document.getElementById("character-image").src = clip.character_reference_url;
    current = {clip, key: uuid4(), shownAt: performance.now(), video: entry.video};
    root.dataset.clipId = clip.id;
    document.getElementById("scores").reset();
    dims.forEach((d) => d.classList.remove("scored", "missing"));
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
      const video = spareVideo();
      load(video, data.clip);
      upcoming = {clip: data.clip, video, progress: data.progress};
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
      const video = spareVideo();
      load(video, data.clip);
      show({clip: data.clip, video}, data.progress);
    }
    prefetch();
  }

  function finish() {
    current = null;
    document.getElementById("workspace").hidden = true;
    document.getElementById("scores").hidden = true;
    document.getElementById("done").hidden = false;
    progressEl.textContent = "Round finished for you";
  }

  function setFocus(i) {
    focus = (i + dims.length) % dims.length;
    dims.forEach((d, j) => d.classList.toggle("focused", j === focus));
    dims[focus].focus({preventScroll: false});
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

  async function submit() {
    if (!current || busy) return;
    const s = scores();
    const missing = dims.filter((d) => s[d.dataset.key] === null);
    if (missing.length) {
      missing.forEach((d) => d.classList.add("missing"));
      setFocus(dims.indexOf(missing[0]));
      say(`Score every dimension first (${missing.length} missing).`, "error");
      return;
    }
    busy = true;
    say("Saving…");
    const body = {...s, seconds_spent: (performance.now() - current.shownAt) / 1000, idempotency_key: current.key};
    try {
      const res = await api(`/api/clips/${current.clip.id}/ratings/`, body);
      if (!res.ok) {
        // Keep the scores on screen: the annotator can retry (same key, so never counted twice).
        say(`Not saved: ${errorText(res)}. Your scores are kept; press Enter to retry or S to skip.`, "error");
        return;
      }
      say("Saved.", "ok");
      await advance(res.data && res.data.progress);
    } catch (e) {
      say(`Not saved (network error: ${e.message}). Your scores are kept; press Enter to retry.`, "error");
    } finally {
      busy = false;
    }
  }

  function askReason(title, preset) {
    return new Promise((resolve) => {
      document.getElementById("reason-title").textContent = title;
      const input = document.getElementById("reason-input");
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

  function video() { return current ? current.video : null; }
  function stepFrame(direction) {
    const v = video(); if (!v) return;
    v.pause();
    const fps = current.clip.fps || 16;
    v.currentTime = Math.max(0, Math.min(v.duration || 0, v.currentTime + direction / fps));
  }
  function changeSpeed(delta) {
    const options = Array.from(speedEl.options);
    const i = Math.max(0, Math.min(options.length - 1, speedEl.selectedIndex + delta));
    speedEl.selectedIndex = i;
    speedEl.dispatchEvent(new Event("change"));
  }

  speedEl.addEventListener("change", () => { videos.forEach((v) => { v.playbackRate = parseFloat(speedEl.value); }); });
  document.getElementById("btn-play").addEventListener("click", () => { const v = video(); if (v) (v.paused ? v.play() : v.pause()); });
  document.getElementById("btn-back").addEventListener("click", () => stepFrame(-1));
  document.getElementById("btn-fwd").addEventListener("click", () => stepFrame(1));
  document.getElementById("btn-skip").addEventListener("click", () => skipOrFlag("skip"));
  document.getElementById("btn-flag").addEventListener("click", () => skipOrFlag("flag"));
  document.getElementById("scores").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  dims.forEach((d, i) => {
    d.addEventListener("click", () => { focus = i; dims.forEach((x, j) => x.classList.toggle("focused", j === i)); });
    d.querySelectorAll("input").forEach((input) => input.addEventListener("change", () => setScore(i, input.value)));
  });
  videos.forEach((v) => v.addEventListener("timeupdate", () => {
    if (v !== video()) return;
    const fps = current.clip.fps || 16;
    frameEl.textContent = `frame ${Math.floor(v.currentTime * fps) + 1} / ${current.clip.frames || "?"}`;
  }));

  document.addEventListener("keydown", (e) => {
    if (dialog.open || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target && e.target.tagName === "SELECT") return;
    const k = e.key;
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
    if (k === " ") { e.preventDefault(); const v = video(); if (v) (v.paused ? v.play() : v.pause()); return; }
    if (k === ",") { e.preventDefault(); stepFrame(-1); return; }
    if (k === ".") { e.preventDefault(); stepFrame(1); return; }
    if (k === "[") { e.preventDefault(); changeSpeed(-1); return; }
    if (k === "]") { e.preventDefault(); changeSpeed(1); return; }
  });

  advance().catch((e) => say(`Could not load a clip: ${e.message}`, "error"));
})();
