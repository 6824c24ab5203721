// fleet.js — the fleet, live from the gateway's feed (GET /fleet/events): a tile per worker, the line with each
// waiting job's wait so far, the counters and the last hour's chart. Elapsed times tick in the page between
// snapshots, counted on the gateway's clock (the snapshot's `now`), so a browser whose clock is off still shows the
// right ones.

const fleet = { snapshot: null, receivedAt: 0, offset: 0, tiles: new Map(), historyJson: "" };

function startFleet() {
  $("fleet").hidden = false;
  $("feed-state").hidden = false;
  drawLegend();
  followFleet();
}

// The feed asks for the token like every job endpoint (it names the workers' addresses and the jobs), which an
// EventSource cannot send: it is read with fetch() and reconnected here.
async function followFleet() {
  for (let tries = 0; ; tries++) {
    try {
      const response = await apiFetch("/fleet/events");
      if (!response.ok) throw new Error(await errorText(response));
      await readFrames(response, (frame) => {
        if (frame.event !== "fleet") return;
        tries = 0;
        onSnapshot(frame.data);
      });
    } catch (_) {
      // Shown as "reconnecting"; the next try says more if it fails the same way.
    }
    setFeed("reconnecting");
    await sleep(Math.min(250 * 2 ** tries, 5000));
  }
}

function onSnapshot(data) {
  let snapshot = null;
  try {
    snapshot = JSON.parse(data);
  } catch (err) {
    return pageError("fleet feed: " + err.message);
  }
  fleet.snapshot = snapshot;
  fleet.receivedAt = Date.now();
  const now = parseTime(snapshot.now);
  fleet.offset = now === null ? 0 : now - fleet.receivedAt;
  renderFleet(snapshot);
  setFeed("live");
}

function setFeed(state) {
  $("feed-state").className = "feed-state " + state;
  $("feed-text").textContent = state === "live" ? "live" : "reconnecting…";
}

const gatewayNow = () => Date.now() + fleet.offset;

function renderFleet(s) {
  const workers = Array.isArray(s.workers) ? s.workers : [];
  renderTiles(workers);
  renderQueue(s.queue || {});
  renderCounters(workers, s.queue || {}, s.counters || {}, s.history || {});
  const historyJson = JSON.stringify(s.history || null);
  if (historyJson !== fleet.historyJson) {
    fleet.historyJson = historyJson;
    drawChart(s.history);
  }
  tickFleet();
}

function renderTiles(workers) {
  const present = new Set();
  for (const w of workers) {
    const address = String(w.address);
    present.add(address);
    let tile = fleet.tiles.get(address);
    if (!tile) {
      tile = makeTile(address);
      fleet.tiles.set(address, tile);
    }
    tile.worker = w;
    const state = ["idle", "busy", "draining", "down"].includes(w.state) ? w.state : "down";
    const watchable = state !== "idle" && state !== "down" && typeof w.jobId === "string" && w.jobId !== "";
    tile.root.className = "tile state-" + state + (watchable ? " watchable" : "");
    tile.root.disabled = !watchable;
    tile.root.title = watchable ? "Watch job " + w.jobId : address;
    tile.root.dataset.state = state;
    tile.root.dataset.jobId = watchable ? w.jobId : "";
    tile.state.textContent = state;
    if (typeof w.jobId === "string" && w.jobId) {
      tile.job.replaceChildren(el("code", "", w.jobId));
      if (w.provider) tile.job.append(el("span", "muted", " · " + w.provider));
    } else {
      tile.job.replaceChildren(el("span", "muted", state === "down" ? "not answering" : "no job"));
    }
  }
  for (const [address, tile] of fleet.tiles) {
    if (!present.has(address)) {
      tile.root.remove();
      fleet.tiles.delete(address);
    }
  }
  // Keep the gateway's order (by address).
  for (const w of workers) {
    const tile = fleet.tiles.get(String(w.address));
    if (tile) $("tiles").append(tile.root);
  }
  $("no-workers").hidden = workers.length > 0;
}

function makeTile(address) {
  const root = el("button", "tile");
  root.type = "button";
  root.dataset.address = address;
  const top = el("div", "tile-top");
  const state = el("span", "tile-state");
  const elapsed = el("span", "tile-elapsed");
  top.append(el("span", "dot"), state, el("span", "spacer"), elapsed);
  const job = el("div", "tile-job");
  root.append(top, el("div", "tile-address", address.replace(/^https?:\/\//, "")), job);
  const tile = { root, state, elapsed, job, worker: null };
  root.addEventListener("click", () => {
    const id = root.dataset.jobId;
    if (id) watchJob(id);
  });
  return tile;
}

function renderQueue(queue) {
  const jobs = Array.isArray(queue.jobs) ? queue.jobs : [];
  const rows = jobs.map((j) => {
    const row = el("tr");
    const wait = el("td", "num wait");
    wait.dataset.waitMs = String(Number(j.waitMs) || 0);
    row.append(el("td", "pos", j.position), el("td", "", ""), wait);
    row.children[1].append(el("code", "", j.jobId));
    return row;
  });
  $("queue-rows").replaceChildren(...rows);
  $("queue").hidden = jobs.length === 0;
  $("queue-empty").hidden = jobs.length > 0;
  $("queue-count").textContent = jobs.length ? String(jobs.length) : "";
}

function sumColumn(column) {
  return Array.isArray(column) ? column.reduce((a, b) => a + (typeof b === "number" ? b : 0), 0) : 0;
}

function renderCounters(workers, queue, counters, history) {
  const count = (state) => workers.filter((w) => w.state === state).length;
  const finished = history.finished || {};
  const done = sumColumn(finished.completed);
  const total = OUTCOMES.reduce((n, [key]) => n + sumColumn(finished[key]), 0);
  const card = (label, value, sub) => {
    const box = el("div", "counter");
    const subNode = typeof sub === "string" ? el("div", "counter-sub", sub) : sub;
    box.append(el("div", "counter-label", label), el("div", "counter-value", value), subNode);
    return box;
  };
  const busy = count("busy") + count("draining");
  // The oldest wait ticks like the line's.
  const oldest = el("div", "counter-sub");
  oldest.id = "oldest-wait";
  oldest.dataset.waitMs = typeof queue.oldestWaitMs === "number" ? String(queue.oldestWaitMs) : "";
  $("counters").replaceChildren(
    card("Workers", workers.length, count("idle") + " idle · " + busy + " busy" + (count("down") ? " · " + count("down") + " down" : "")),
    card("Waiting", Number(queue.length) || 0, oldest),
    card("Finished, last hour", total, done + " completed · " + (total - done) + " other"),
    card("Dispatched", formatCount(counters.dispatched), "since start"),
  );
  const small = el("div", "counter-row");
  for (const [label, value] of [
    ["busy 429s retried", counters.busyRetries],
    ["workers lost", counters.workerLost],
    ["timed out in line", counters.queueTimeouts],
    ["refused, line full", counters.queueFull],
  ]) {
    const item = el("span", "mini");
    item.append(el("b", "", formatCount(value)), el("span", "", " " + label));
    small.append(item);
  }
  $("counters").append(small);
}

// Once a second: elapsed times on the tiles, waits in the line.
function tickFleet() {
  if (!fleet.snapshot) return;
  const now = gatewayNow();
  const sinceSnapshot = Date.now() - fleet.receivedAt;
  for (const tile of fleet.tiles.values()) {
    const since = tile.worker && parseTime(tile.worker.since);
    tile.elapsed.textContent = since === null ? "" : formatDuration(Math.max(0, now - since));
  }
  for (const cell of document.querySelectorAll("#queue-rows .wait")) {
    cell.textContent = formatDuration(Number(cell.dataset.waitMs) + sinceSnapshot);
  }
  const oldest = $("oldest-wait");
  if (oldest) {
    oldest.textContent = oldest.dataset.waitMs === "" ? "nobody waiting" : "oldest waiting " + formatDuration(Number(oldest.dataset.waitMs) + sinceSnapshot);
  }
}
