// Pairwise judging: two clips played in sync; A / B / T choose, Enter submits. No dependencies.
(function () {
  "use strict";
  const root = document.getElementById("judge");
  const csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const left = document.getElementById("video-left");
  const right = document.getElementById("video-right");
  const status = document.getElementById("status");
  const submitButton = document.getElementById("submit");
  let task = null;
  let choice = null;
  let shownAt = 0;
  let busy = false;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body || {}),
    });
  }

  // Keep the right video on the left one's clock: play, pause and seek together.
  function sync() {
    if (Math.abs(right.currentTime - left.currentTime) > 0.15) right.currentTime = left.currentTime;
  }
  left.addEventListener("play", () => { right.play().catch(() => {}); });
  left.addEventListener("pause", () => { right.pause(); });
  left.addEventListener("seeked", sync);
  left.addEventListener("timeupdate", sync);

  function togglePlay() {
    if (left.paused) left.play().catch(() => {}); else left.pause();
  }

  function choose(side) {
    if (!task) return;
    choice = side;
    root.querySelectorAll("[data-choice]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.choice === side)));
    document.getElementById("side-left").classList.toggle("chosen", side === "left");
    document.getElementById("side-right").classList.toggle("chosen", side === "right");
    submitButton.disabled = false;
    status.textContent = side === "tie" ? "Tie selected. Enter to submit." : (side === "left" ? "A" : "B") + " selected. Enter to submit.";
  }

  function dimensions() {
    const out = {};
    root.querySelectorAll("input[type=radio]:checked").forEach((input) => {
      out[input.name.replace(/^dim-/, "")] = input.value;
    });
    return out;
  }

  async function submit() {
    if (!task || !choice || busy) return;
    busy = true;
    const url = root.dataset.judgeUrl.replace("/0/", "/" + task.task_id + "/");
    const response = await post(url, {
      choice: choice,
      dimensions: dimensions(),
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

  async function loadNext() {
    task = null;
    choice = null;
    submitButton.disabled = true;
    root.querySelectorAll("[data-choice]").forEach((b) => b.setAttribute("aria-pressed", "false"));
    root.querySelectorAll("input[type=radio]").forEach((r) => { r.checked = false; });
    document.querySelectorAll(".side").forEach((s) => s.classList.remove("chosen"));
    const response = await post(root.dataset.nextUrl, {});
    const section = document.getElementById("task");
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
    document.getElementById("prompt").textContent = task.prompt;
    left.src = task.left.video_url;
    left.poster = task.left.poster_url;
    right.src = task.right.video_url;
    right.poster = task.right.poster_url;
    section.hidden = false;
    section.dataset.taskId = task.task_id;
    shownAt = performance.now();
    status.textContent = "Pair " + task.task_id + ": choose A, B or T.";
    left.play().catch(() => {});
  }

  root.querySelectorAll("[data-choice]").forEach((b) => b.addEventListener("click", () => choose(b.dataset.choice)));
  submitButton.addEventListener("click", submit);
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof HTMLInputElement && event.target.type !== "radio") return;
    const key = event.key.toLowerCase();
    if (key === "a") { choose("left"); event.preventDefault(); }
    else if (key === "b") { choose("right"); event.preventDefault(); }
    else if (key === "t") { choose("tie"); event.preventDefault(); }
    else if (key === "enter") { submit(); event.preventDefault(); }
    else if (key === " ") { togglePlay(); event.preventDefault(); }
  });
  loadNext();
})();
