// events.js — how each event type of the stream (docs/events.md) shows in a job's view. Unknown types show as a plain
// line, so a newer worker never breaks an older page.

const RENDERERS = new Map();
const on = (type, render) => RENDERERS.set(type, render);

// A block of its own as one line of the list.
function wrap(node) {
  const item = el("li", "ev-wrap");
  item.append(node);
  return item;
}

on("queued", (v, e) => {
  v.setState("waiting");
  let text = "Waiting for a worker: position " + e.position + " of " + e.queueLength;
  if (typeof e.workers === "number") text += " · " + e.busy + " of " + e.workers + " workers busy";
  v.showNote(text, "queued");
});

on("connected", (v, e) => {
  v.startedAt = parseTime(e.ts) || Date.now();
  v.setState("running");
  v.showNote("");
  v.meta.textContent = [e.provider, e.workerId && "on " + e.workerId].filter(Boolean).join(" ");
  v.line("ev-info", "Started on worker " + (e.workerId || "?") + " · " + (e.provider || "?") + " · v" + (e.version || "?"));
});

on("message", (v, e) => v.line(e.level === "warn" ? "ev-warn" : "ev-info", e.text));

on("session", (v, e) => v.line("ev-dim", "session " + e.sessionId));

on("assistant_message", (v, e) => v.line("ev-assistant", e.text));

on("thinking", (v, e) => {
  const box = el("details", "ev ev-thinking");
  box.append(el("summary", "", "thinking · " + oneLine(e.text || "", 80)), el("div", "body", e.text));
  v.append(wrap(box));
});

const PHASES = { connecting: "Connecting", receiving: "Receiving objects", resolving: "Resolving deltas", checkout: "Checking out", done: "Repository ready" };

on("github_pull_progress", (v, e) => {
  if (!v.clone) {
    v.clone = { label: el("div", "clone-label"), bar: el("progress") };
    v.clone.bar.max = 100;
    const box = el("li", "ev ev-clone");
    box.append(v.clone.label, v.clone.bar);
    v.append(box);
  }
  const percent = e.phase === "done" ? 100 : Math.max(0, Math.min(100, Number(e.percent) || 0));
  v.clone.bar.value = percent;
  let text = (Object.prototype.hasOwnProperty.call(PHASES, e.phase) ? PHASES[e.phase] : "Cloning") + " · " + percent + "%";
  if (e.totalObjects) text += " · " + formatCount(e.receivedObjects) + "/" + formatCount(e.totalObjects) + " objects";
  if (e.receivedBytes) text += " · " + formatBytes(e.receivedBytes);
  v.clone.label.textContent = text;
});

// What a tool call is about, in a few words: the first of the usual argument names, else its first string.
function toolSummary(input) {
  if (input === null || input === undefined) return "";
  if (typeof input !== "object") return oneLine(input, 120);
  for (const key of ["command", "file_path", "path", "pattern", "url", "query", "description", "prompt"]) {
    if (typeof input[key] === "string" && input[key]) return oneLine(input[key], 120);
  }
  const first = Object.values(input).find((x) => typeof x === "string" && x);
  return first ? oneLine(first, 120) : oneLine(JSON.stringify(input), 120);
}

function pretty(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch (_) {
    return String(value);
  }
}

on("tool_use", (v, e) => {
  const box = el("details", "ev ev-tool pending");
  const head = el("summary");
  const status = el("span", "tool-status", "…");
  const preview = el("span", "tool-preview");
  head.append(status, el("span", "tool-name", e.name || "tool"), el("span", "tool-arg", toolSummary(e.input)), preview);
  const body = el("div", "body");
  body.append(el("div", "label", "input"), el("pre", "", pretty(e.input)));
  box.append(head, body);
  v.append(wrap(box));
  if (typeof e.id === "string") v.tools.set(e.id, { box, status, preview, body });
});

on("tool_result", (v, e) => {
  let tool = v.tools.get(e.toolUseId);
  if (!tool) {
    // A result without its call (the call came before the events this page has): a line of its own.
    RENDERERS.get("tool_use")(v, { id: e.toolUseId, name: "tool result", input: null });
    tool = v.tools.get(e.toolUseId);
    if (!tool) return;
  }
  const failed = e.isError === true;
  tool.box.classList.remove("pending");
  tool.box.classList.add(failed ? "failed" : "ok");
  tool.status.textContent = failed ? "✗" : "✓";
  tool.preview.textContent = oneLine(e.output || "", 80);
  tool.body.append(el("div", "label", failed ? "error" : "result"), el("pre", failed ? "error" : "", e.output));
});

on("log", (v, e) => v.line(e.stream === "stderr" ? "ev-log stderr" : "ev-log", e.text));

const FILE_STATUS = { added: "A", modified: "M", deleted: "D", renamed: "R", copied: "C", typechange: "T", untracked: "A" };

function changesBlock(changes) {
  const box = el("div", "changes");
  const files = Array.isArray(changes.files) ? changes.files : [];
  box.append(
    el("div", "changes-head", formatCount(changes.filesChanged) + " files changed · +" + formatCount(changes.insertions) + " −" + formatCount(changes.deletions)),
  );
  const list = el("ul");
  for (const f of files.slice(0, 200)) {
    const known = Object.prototype.hasOwnProperty.call(FILE_STATUS, f.status);
    const item = el("li");
    const status = el("span", "file-status " + (known ? f.status : "other"), known ? FILE_STATUS[f.status] : "?");
    status.title = String(f.status);
    item.append(status, el("span", "file-path", f.path), el("span", "plus", "+" + formatCount(f.insertions)), el("span", "minus", "−" + formatCount(f.deletions)));
    list.append(item);
  }
  box.append(list);
  if (files.length > 200) box.append(el("div", "ev-dim", "… and " + (files.length - 200) + " more"));
  return box;
}

on("git_changes", (v, e) => {
  v.changesShown = true;
  v.append(wrap(changesBlock(e)));
});

on("git_push", (v, e) => v.line("ev-info", "Pushed branch " + e.branch + " (" + String(e.commit || "").slice(0, 10) + ") to " + e.remote));

// A link only for http(s) addresses: a javascript: or data: URL from an event must never become clickable.
function safeLink(url, text) {
  let parsed = null;
  try {
    parsed = new URL(String(url));
  } catch (_) {
    // Not a URL: shown as text below.
  }
  if (!parsed || (parsed.protocol !== "https:" && parsed.protocol !== "http:")) return el("span", "", text + " " + url);
  const a = el("a", "", text);
  a.href = parsed.href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

function pullRequestLine(v, pr) {
  v.pullRequestShown = true;
  const item = el("li", "ev ev-pr");
  item.append(el("span", "", "Pull request "), safeLink(pr.url, "#" + pr.number + " " + pr.url));
  v.append(item);
}

on("pull_request", pullRequestLine);

on("plan", (v, e) => {
  const box = el("div", "plan");
  box.append(el("div", "label", "plan"));
  const list = el("ul");
  for (const entry of Array.isArray(e.entries) ? e.entries : []) {
    const mark = entry.status === "completed" ? "☑" : entry.status === "in_progress" ? "▸" : "☐";
    list.append(el("li", "plan-" + (entry.status === "completed" ? "done" : "open"), mark + " " + entry.content));
  }
  box.append(list);
  v.append(wrap(box));
});

// A question of the agent: what it wants to do (the diff or the input), and its options as buttons. The answer
// goes to the server; the stream's permission_resolved then settles the box, whoever answered.
on("permission_request", (v, e) => {
  const box = el("div", "question");
  box.dataset.requestId = String(e.requestId);
  const head = el("div", "question-head", "The agent asks: " + (e.title || e.kind || "permission"));
  box.append(head);
  if (e.diff && typeof e.diff === "object") {
    box.append(el("div", "question-path", (e.diff.oldText === null || e.diff.oldText === undefined ? "new file " : "edit ") + e.diff.path));
    box.append(el("pre", "question-diff", String(e.diff.newText || "").slice(0, 4000)));
  } else if (e.input !== null && e.input !== undefined) {
    box.append(el("pre", "question-input", pretty(e.input).slice(0, 4000)));
  }
  const buttons = el("div", "question-options");
  const note = el("div", "question-note");
  if (typeof e.timeoutSeconds === "number") {
    note.textContent = "Without an answer within " + e.timeoutSeconds + " s: " + (e.onTimeout || "reject") + ".";
  }
  for (const option of Array.isArray(e.options) ? e.options : []) {
    const allow = String(option.kind || "").startsWith("allow");
    const button = el("button", "small " + (allow ? "allow" : "reject"), option.name || option.optionId);
    button.type = "button";
    button.dataset.optionId = String(option.optionId);
    button.addEventListener("click", () => v.answer(e.requestId, option.optionId, box));
    buttons.append(button);
  }
  box.append(buttons, note);
  v.questions.set(String(e.requestId), box);
  v.append(wrap(box));
});

const RESOLVED_BY = { client: "answered", timeout: "timed out", cancel: "withdrawn (job stopped)" };

on("permission_resolved", (v, e) => {
  const box = v.questions.get(String(e.requestId));
  const by = Object.prototype.hasOwnProperty.call(RESOLVED_BY, e.by) ? RESOLVED_BY[e.by] : String(e.by);
  const text = e.optionId === null || e.optionId === undefined ? by : by + ": " + e.optionId;
  if (!box) return v.line("ev-dim", "Permission " + e.requestId + " " + text);
  box.classList.add("settled");
  for (const button of box.querySelectorAll("button")) {
    button.disabled = true;
    if (button.dataset.optionId === String(e.optionId)) button.classList.add("chosen");
  }
  box.querySelector(".question-note").textContent = "Settled · " + text;
});

on("turn_started", (v, e) => {
  v.talk.hidden = v.terminal !== null;
  v.append(el("li", "ev ev-turn", "Turn " + e.turn + " · " + oneLine(e.text || "", 200)));
});

on("turn_completed", (v, e) => {
  const parts = ["Turn " + e.turn + " done"];
  if (typeof e.durationMs === "number") parts.push(formatDuration(e.durationMs));
  const cost = formatCost(e.costUsd);
  if (cost) parts.push(cost);
  if (e.changes && typeof e.changes.filesChanged === "number") parts.push(e.changes.filesChanged + " files changed");
  v.line("ev-turn-end", parts.join(" · "));
  v.talkText.focus();
});

on("turn_failed", (v, e) => {
  const what = e.code === "interrupted" ? "interrupted" : "failed (" + e.code + ")";
  v.line("ev-warn", "Turn " + e.turn + " " + what + ": " + (e.message || ""));
});

on("completed", (v, e) => {
  v.terminal = e;
  v.endedAt = Date.now();
  v.setState("completed");
  v.showNote("");
  if (e.changes && !v.changesShown) RENDERERS.get("git_changes")(v, e.changes);
  if (e.pullRequest && !v.pullRequestShown) pullRequestLine(v, e.pullRequest);
  const parts = [el("span", "badge state-completed", "completed"), el("span", "", "in " + formatDuration(Number(e.durationMs)))];
  const cost = formatCost(e.costUsd);
  if (cost) parts.push(el("span", "cost", cost));
  if (typeof e.numTurns === "number") parts.push(el("span", "", e.numTurns + (e.numTurns === 1 ? " turn" : " turns")));
  const u = e.usage || {};
  if (typeof u.inputTokens === "number") parts.push(el("span", "", formatCount(u.inputTokens) + " in · " + formatCount(u.outputTokens) + " out tokens"));
  v.summary.replaceChildren(...parts);
  v.summary.className = "job-summary ok";
  v.summary.hidden = false;
});

on("error", (v, e) => {
  v.terminal = e;
  v.endedAt = Date.now();
  v.setState("error");
  v.showNote("");
  const box = el("div", "ev-error-box");
  box.append(el("div", "error-title", (e.code || "error") + (e.retryable ? " (retryable)" : "")), el("div", "", e.message));
  if (typeof e.exitCode === "number") box.append(el("div", "ev-dim", "exit code " + e.exitCode));
  if (e.stderrTail) {
    const tail = el("details");
    tail.append(el("summary", "", "stderr"), el("pre", "", e.stderrTail));
    box.append(tail);
  }
  v.append(wrap(box));
  v.summary.replaceChildren(el("span", "badge state-error", "error"), el("span", "", e.code || ""));
  v.summary.className = "job-summary failed";
  v.summary.hidden = false;
});
