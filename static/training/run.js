// Watch a run: poll its JSON, move the progress bar, show ETA and log, plot metric series as SVG.
(function () {
  const root = document.getElementById("run");
  if (!root) return;
  const url = root.dataset.url;
  const NS = "http://www.w3.org/2000/svg";
  const W = 420, H = 180, PAD = 32;

  function fmtEta(s) {
    if (s === null || s === undefined) return "–";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function plot(svg, points) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    svg.appendChild(el("line", { x1: PAD, y1: H - PAD, x2: W - 8, y2: H - PAD, class: "axis" }));
    svg.appendChild(el("line", { x1: PAD, y1: 8, x2: PAD, y2: H - PAD, class: "axis" }));
    if (!points.length) { svg.appendChild(el("text", { x: PAD + 8, y: H / 2 }, "no data yet")); return; }
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y1 - y0 < 1e-12) { y0 -= 0.5; y1 += 0.5; }
    const sx = (x) => PAD + ((x - x0) / (x1 - x0)) * (W - PAD - 8);
    const sy = (y) => H - PAD - ((y - y0) / (y1 - y0)) * (H - PAD - 8);
    const d = points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ");
    svg.appendChild(el("path", { d: d, class: "line" }));
    svg.appendChild(el("text", { x: 2, y: 14 }, y1.toPrecision(3)));
    svg.appendChild(el("text", { x: 2, y: H - PAD }, y0.toPrecision(3)));
    svg.appendChild(el("text", { x: PAD, y: H - 10 }, "step " + x0));
    svg.appendChild(el("text", { x: W - 70, y: H - 10 }, "step " + x1));
  }

  function render(run) {
    document.getElementById("bar").style.width = (100 * run.fraction).toFixed(1) + "%";
    document.getElementById("steps").textContent = run.step + " / " + run.total_steps;
    document.getElementById("eta").textContent = fmtEta(run.eta_seconds);
    document.getElementById("heartbeat").textContent = run.heartbeat_at || "–";
    const status = document.getElementById("status");
    status.textContent = run.status + (run.cancel_requested && run.status === "running" ? " (cancelling)" : "");
    status.className = "status-" + run.status;
    const live = run.status === "queued" || run.status === "running";
    const cancel = document.getElementById("cancel");
    if (cancel && !live) cancel.closest("form").remove();  // nothing left to cancel
    document.getElementById("log").textContent = run.log_tail;
    document.getElementById("error").textContent = run.error;
    for (const svg of document.querySelectorAll("svg.plot[data-metric]")) {
      const key = svg.dataset.metric;
      plot(svg, run.metrics.filter((m) => typeof m[key] === "number").map((m) => [m.step, m[key]]));
    }
    return live;
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok && render(await response.json())) setTimeout(poll, 2000);
      else if (!response.ok) setTimeout(poll, 5000);
    } catch (e) { setTimeout(poll, 5000); }
  }
  poll();
})();
