// job.js — one job's stream, rendered as it comes: its place in line, the assistant's text, one line per tool call
// with the result folded under it, errors in red, clone progress as a bar, changed files, the pull request, and
// the end with duration and cost. A dropped connection reattaches with Last-Event-ID, so nothing is lost or shown
// twice. Several jobs can be open at once, one tab each.

const views = new Map();
let shownView = null;

const eventsPath = (jobId) => "/jobs/" + encodeURIComponent(jobId) + "/events";

// Opens a job the page starts itself (POST /execute).
function runJob(body, label) {
  const view = new JobView(body.jobId, label);
  view.follow(() =>
    apiFetch("/execute", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: view.controller.signal,
    }),
  );
  return view;
}

// Opens (or shows again) the stream of a job that runs elsewhere: from its first event.
function watchJob(jobId) {
  const open = views.get(jobId);
  if (open && !open.closed) return showView(open);
  const view = new JobView(jobId, "job " + jobId.slice(0, 8));
  view.follow(() => apiFetch(eventsPath(jobId), { signal: view.controller.signal }));
  return view;
}

function showView(view) {
  shownView = view;
  for (const v of views.values()) {
    v.root.hidden = v !== view;
    v.tab.classList.toggle("active", v === view);
    v.tab.setAttribute("aria-selected", String(v === view));
  }
  $("no-job").hidden = views.size > 0;
  return view;
}

const RETRY_LIMIT = 30;

class JobView {
  constructor(jobId, label) {
    this.jobId = jobId;
    this.lastId = null;
    this.frames = 0;
    this.state = "";
    this.terminal = null;
    this.closed = false;
    this.startedAt = null;
    this.endedAt = null;
    this.tools = new Map();
    this.questions = new Map();
    this.seen = new Set();
    this.controller = new AbortController();
    this.build(label);
    views.set(jobId, this);
    showView(this);
    this.setState("connecting");
  }

  build(label) {
    this.root = el("article", "job");
    this.root.dataset.jobId = this.jobId;
    const head = el("div", "job-head");
    this.badge = el("span", "badge");
    this.meta = el("span", "job-meta");
    this.clock = el("span", "job-clock");
    this.cancelButton = el("button", "small", "Cancel");
    this.cancelButton.type = "button";
    this.cancelButton.addEventListener("click", () => this.cancel());
    head.append(this.badge, el("code", "job-id", this.jobId), this.meta, el("span", "spacer"), this.clock, this.cancelButton);
    this.note = el("div", "job-note");
    this.note.hidden = true;
    this.list = el("ol", "events");
    this.summary = el("div", "job-summary");
    this.summary.hidden = true;
    this.talk = this.buildTalk();
    this.root.append(head, this.note, this.list, this.talk, this.summary);
    $("job-views").append(this.root);

    this.tab = el("button", "tab");
    this.tab.type = "button";
    this.tab.setAttribute("role", "tab");
    this.tab.title = this.jobId;
    this.tabDot = el("span", "dot");
    const close = el("span", "tab-close", "×");
    close.title = "Close (the job goes on)";
    close.addEventListener("click", (e) => {
      e.stopPropagation();
      this.close();
    });
    this.tab.append(this.tabDot, el("span", "tab-label", label), close);
    this.tab.addEventListener("click", () => showView(this));
    $("job-tabs").append(this.tab);
  }

  // The message box under a conversation: shown from its first turn until its end.
  buildTalk() {
    const form = el("form", "talk");
    form.hidden = true;
    const text = el("textarea");
    text.rows = 2;
    text.placeholder = "Next message (Enter sends; it runs when the current turn ends)";
    const send = el("button", "primary", "Send");
    send.type = "submit";
    const steer = el("button", "", "Send and interrupt");
    steer.type = "button";
    steer.title = "Stop the running turn; this message starts the next one at once";
    const stop = el("button", "", "Interrupt");
    stop.type = "button";
    stop.title = "Stop the running turn; the conversation waits for a message";
    const end = el("button", "", "Close conversation");
    end.type = "button";
    end.title = "Push and open the pull request if asked, then end the job";
    const note = el("span", "note talk-note");
    const actions = el("div", "actions");
    actions.append(send, steer, stop, end, note);
    form.append(text, actions);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.sendMessage(false);
    });
    text.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this.sendMessage(false);
      }
    });
    steer.addEventListener("click", () => this.sendMessage(true));
    stop.addEventListener("click", () => this.conversationStep("interrupt", null, "Interrupting…"));
    end.addEventListener("click", () => this.conversationStep("close", null, "Closing…"));
    this.talkText = text;
    this.talkNote = note;
    return form;
  }

  async sendMessage(interrupt) {
    const text = this.talkText.value.trim();
    if (!text) {
      this.talkNote.textContent = "Write a message first.";
      return this.talkText.focus();
    }
    const sent = await this.conversationStep("messages", { text, interrupt }, "Sending…");
    if (sent) {
      this.talkText.value = "";
      this.talkNote.textContent = "Queued as turn " + sent.turn;
    }
  }

  // POST /jobs/{jobId}/<step>; the stream shows what it did. Returns the answer's JSON when it was taken.
  async conversationStep(step, body, pending) {
    this.talkNote.textContent = pending;
    const options = { method: "POST" };
    if (body) {
      options.headers = { "Content-Type": "application/json" };
      options.body = JSON.stringify(body);
    }
    try {
      const response = await apiFetch("/jobs/" + encodeURIComponent(this.jobId) + "/" + step, options);
      if (!response.ok) {
        this.talkNote.textContent = await errorText(response);
        return null;
      }
      const answer = await response.json();
      if (step !== "messages") this.talkNote.textContent = step === "close" ? "Closing: the last turn finishes, then the job ends" : "Interrupted";
      return answer;
    } catch (err) {
      this.talkNote.textContent = "Could not send: " + err;
      return null;
    }
  }

  setState(state) {
    this.state = state;
    this.badge.textContent = state;
    this.badge.className = "badge state-" + state;
    this.tabDot.className = "dot state-" + state;
    this.root.dataset.state = state;
    this.cancelButton.hidden = this.terminal !== null || state === "refused" || state === "ended";
    if (this.talk && (this.terminal !== null || state === "refused" || state === "ended")) this.talk.hidden = true;
  }

  // A click on an option: POST the answer; the stream's permission_resolved settles the box.
  async answer(requestId, optionId, box) {
    for (const button of box.querySelectorAll("button")) button.disabled = true;
    const note = box.querySelector(".question-note");
    note.textContent = "Sending…";
    const path = "/jobs/" + encodeURIComponent(this.jobId) + "/permissions/" + encodeURIComponent(requestId);
    try {
      const response = await apiFetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ optionId }),
      });
      if (response.ok) {
        if (!box.classList.contains("settled")) note.textContent = "Sent: " + optionId;
        return;
      }
      note.textContent = await errorText(response);
      // Taken by someone else (409) or gone: the stream settles it; anything else may be tried again.
      if (response.status !== 409 && response.status !== 404 && !box.classList.contains("settled")) {
        for (const button of box.querySelectorAll("button")) button.disabled = false;
      }
    } catch (err) {
      note.textContent = "Could not send the answer: " + err;
      for (const button of box.querySelectorAll("button")) button.disabled = false;
    }
  }

  showNote(text, kind) {
    this.note.hidden = !text;
    this.note.textContent = text || "";
    this.note.className = "job-note" + (kind ? " " + kind : "");
  }

  // Reads the first response, then reattaches after each drop until the terminal event.
  async follow(first) {
    let response = null;
    try {
      response = await first();
    } catch (_) {
      if (this.closed) return;
    }
    if (response && !response.ok) return this.refused(response);
    let tries = 0;
    for (;;) {
      if (response) {
        const before = this.frames;
        try {
          await readFrames(response, (frame) => this.onFrame(frame));
        } catch (_) {
          // The connection broke; reattach below.
        }
        if (this.closed) return;
        if (this.terminal) return;
        if (this.frames > before) tries = 0;
      }
      tries += 1;
      if (tries > RETRY_LIMIT) {
        this.showNote("Lost the connection to the server; gave up reattaching.", "error");
        return this.setState("ended");
      }
      this.setState("reconnecting");
      this.showNote("Connection lost — reattaching" + (tries > 1 ? " (try " + tries + ")" : "") + "…");
      await sleep(Math.min(250 * 2 ** (tries - 1), 5000));
      if (this.closed) return;
      const headers = this.lastId === null ? {} : { "Last-Event-ID": String(this.lastId) };
      try {
        response = await apiFetch(eventsPath(this.jobId), { headers, signal: this.controller.signal });
      } catch (_) {
        if (this.closed) return;
        response = null;
        continue;
      }
      if (response.status === 204) {
        // The server says the stream is over and the client has its end: nothing more will come.
        this.showNote("The job had already ended.");
        return this.setState("ended");
      }
      if (!response.ok) return this.refused(response);
      this.showNote("");
      this.setState(this.startedAt === null ? "waiting" : "running");
    }
  }

  async refused(response) {
    const text = await errorText(response);
    let hint = "";
    if (response.status === 404 && this.startedAt === null && this.lastId === null) {
      hint = " — it left the line before a worker took it (cancelled on disconnect, or its gateway lost it); run it again.";
    }
    this.endedAt = Date.now();
    this.setState("refused");
    this.append(el("li", "ev ev-error", text + hint));
  }

  onFrame(frame) {
    if (frame.id !== null) {
      const id = Number(frame.id);
      if (Number.isInteger(id)) {
        // A replay that overlaps what is shown already: skip it.
        if (this.lastId !== null && id <= this.lastId) return;
        this.lastId = id;
      }
    }
    this.frames += 1;
    let data = null;
    try {
      data = JSON.parse(frame.data);
    } catch (_) {
      return this.line("ev-log", oneLine(frame.data, 300));
    }
    if (!data || typeof data !== "object") return;
    const type = typeof data.type === "string" ? data.type : frame.event;
    const render = RENDERERS.get(type);
    if (render) render(this, data);
    else this.line("ev-other", type + " " + oneLine(JSON.stringify(data), 200));
  }

  append(node) {
    const list = this.list;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(node);
    if (atBottom) list.scrollTop = list.scrollHeight;
    return node;
  }

  line(className, text) {
    return this.append(el("li", "ev " + className, text));
  }

  tick(now) {
    if (this.startedAt === null) return;
    this.clock.textContent = formatDuration((this.endedAt || now) - this.startedAt);
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      const response = await apiFetch("/jobs/" + encodeURIComponent(this.jobId) + "/cancel", { method: "POST" });
      if (!response.ok) this.showNote("Cancel: " + (await errorText(response)), "error");
      else this.showNote("Cancelling…");
    } catch (e) {
      this.showNote("Cancel: " + e.message, "error");
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  // Stops reading (the job itself goes on) and removes the tab.
  close() {
    this.closed = true;
    this.controller.abort();
    this.root.remove();
    this.tab.remove();
    views.delete(this.jobId);
    const next = Array.from(views.values()).pop();
    if (shownView === this) shownView = null;
    if (next) showView(next);
    else $("no-job").hidden = false;
  }
}

function tickViews() {
  const now = Date.now();
  for (const view of views.values()) view.tick(now);
}
