// Pairwise judging: two clips under one player, the overall choice and six per-dimension choices
// made from the keyboard the way the rating page's six scores are. No dependencies.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const root = $("judge");
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const left = $("video-left");
  const right = $("video-right");
  const status = $("status");
  const submitButton = $("submit");
  const speedEl = $("speed");
  const scrub = $("scrub");
  const rows = Array.from(root.querySelectorAll("fieldset.verdict"));
  let task = null;
  let choices = {};
  let focus = 0;
  let shownAt = 0;
  let busy = false;
  let scrubbing = false;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body || {}),
    });
  }

  // --- one player for both clips: the left clip is the clock, the right one follows it --------
  function follow() {
    if (Math.abs(right.currentTime - left.currentTime) > 0.05) right.currentTime = left.currentTime;
  }
  left.addEventListener("play", () => { right.play().catch(() => {}); });
  left.addEventListener("pause", () => { right.pause(); follow(); });
  left.addEventListener("seeked", follow);
  left.addEventListener("timeupdate", () => {
    follow();
    if (!scrubbing && left.duration) scrub.value = String(left.currentTime / left.duration);
    const fps = (task && task.fps) || 16;
    $("frame").textContent = "frame " + (Math.floor(left.currentTime * fps) + 1);
  });
  function togglePlay() {
    if (left.paused) left.play().catch(() => {}); else left.pause();
  }
  function step(direction) {
    left.pause();
    const fps = (task && task.fps) || 16;
    left.currentTime = Math.max(0, Math.min(left.duration || 0, left.currentTime + direction / fps));
  }
  function setSpeed(delta) {
    const options = Array.from(speedEl.options);
    speedEl.selectedIndex = Math.max(0, Math.min(options.length - 1, speedEl.selectedIndex + delta));
    speedEl.dispatchEvent(new Event("change"));
  }
  speedEl.addEventListener("change", () => {
    left.playbackRate = right.playbackRate = parseFloat(speedEl.value);
  });
  scrub.addEventListener("input", () => {
    scrubbing = true;
    if (left.duration) left.currentTime = parseFloat(scrub.value) * left.duration;
  });
  scrub.addEventListener("change", () => { scrubbing = false; });
  $("btn-play").addEventListener("click", togglePlay);
  $("btn-back").addEventListener("click", () => step(-1));
  $("btn-fwd").addEventListener("click", () => step(1));

  // --- the seven choices: overall first, focus moves on after each ---------------------------
  function setFocus(index) {
    focus = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((row, i) => row.classList.toggle("focused", i === focus));
  }
  function complete() {
    return rows.every((row) => choices[row.dataset.key]);
  }
  function choose(side, rowIndex) {
    if (!task) return;
    const row = rows[rowIndex === undefined ? focus : rowIndex];
    choices[row.dataset.key] = side;
    row.querySelectorAll(".pick").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.side === side)));
    if (row.dataset.key === "overall") {
      $("side-left").classList.toggle("chosen", side === "left");
      $("side-right").classList.toggle("chosen", side === "right");
    }
    const next = rows.findIndex((r, i) => i > rows.indexOf(row) && !choices[r.dataset.key]);
    const firstOpen = rows.findIndex((r) => !choices[r.dataset.key]);
    setFocus(next >= 0 ? next : firstOpen >= 0 ? firstOpen : rows.indexOf(row));
    submitButton.disabled = !complete();
    const left_ = rows.filter((r) => !choices[r.dataset.key]).length;
    status.textContent = left_ ? left_ + " choice(s) left." : "All chosen: Enter to submit.";
  }
  rows.forEach((row, i) => {
    row.querySelectorAll(".pick").forEach((b) => b.addEventListener("click", () => choose(b.dataset.side, i)));
  });

  async function submit() {
    if (!task || busy) return;
    if (!complete()) {
      const missing = rows.findIndex((r) => !choices[r.dataset.key]);
      setFocus(missing);
      status.textContent = "Choose A, B or tie on " + rows[missing].querySelector("legend").textContent + " first.";
      return;
    }
    busy = true;
    const dimensions = {};
    rows.slice(1).forEach((r) => { dimensions[r.dataset.key] = choices[r.dataset.key]; });
    const url = root.dataset.judgeUrl.replace("/0/", "/" + task.task_id + "/");
    const response = await post(url, {
      choice: choices.overall,
      dimensions: dimensions,
      seconds_spent: Math.max(0, (performance.now() - shownAt) / 1000),
    });
    busy = false;
    if (response.status === 201) {
      status.textContent = "Saved.";
      loadNext();
    } else {
      const data = await response.json().catch(() => ({}));
      status.textContent = "Not saved: " + (data.detail || response.status);
      if (response.status === 409) loadNext();
    }
  }
  submitButton.addEventListener("click", submit);

  async function loadNext() {
    task = null;
    choices = {};
    submitButton.disabled = true;
    root.querySelectorAll(".pick").forEach((b) => b.setAttribute("aria-pressed", "false"));
    document.querySelectorAll(".side").forEach((s) => s.classList.remove("chosen"));
    setFocus(0);
    const response = await post(root.dataset.nextUrl, {});
    const section = $("task");
    if (response.status === 204) {
      section.hidden = true;
      status.textContent = "No pairs left to judge. Thank you!";
      return;
    }
    if (!response.ok) {
      status.textContent = "Could not load a pair (" + response.status + ").";
      return;
    }
    task = await response.json();
    $("prompt").textContent = task.prompt;
    $("condition-image").src = task.condition_image_url;
    $("thumb-character").hidden = !task.character_reference_url;
    if (task.character_reference_url) $("character-image").src = task.character_reference_url;
    left.src = task.left.video_url;
    left.poster = task.left.poster_url;
    right.src = task.right.video_url;
    right.poster = task.right.poster_url;
    left.playbackRate = right.playbackRate = parseFloat(speedEl.value);
    section.hidden = false;
    section.dataset.taskId = task.task_id;
    shownAt = performance.now();
    status.textContent = "Pair " + task.task_id + ": overall, then each dimension — A, B or tie.";
    left.play().catch(() => {});
  }

  const SIDE_KEYS = { a: "left", 1: "left", t: "tie", 2: "tie", 0: "tie", b: "right", 3: "right" };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLSelectElement || (event.target instanceof HTMLInputElement && event.target.type !== "range")) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key in SIDE_KEYS) choose(SIDE_KEYS[key]);
    else if (key === "ArrowDown" || (key === "Tab" && !event.shiftKey)) setFocus(focus + 1);
    else if (key === "ArrowUp" || (key === "Tab" && event.shiftKey)) setFocus(focus - 1);
    else if (key === "Enter") submit();
    else if (key === " ") togglePlay();
    else if (key === ",") step(-1);
    else if (key === ".") step(1);
    else if (key === "[") setSpeed(-1);
    else if (key === "]") setSpeed(1);
    else return;
    event.preventDefault();
  });
  loadNext();
})();
