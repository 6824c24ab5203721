// main.js — starts the page: the fleet on a gateway, this worker's state on a worker, then the token and the form.

const ROLE = document.body.dataset.role;

// Suggestions only: the server validates the name. The list is the server's own registry, written into the page.
const KNOWN_PROVIDERS = (document.body.dataset.providers || "").split(",").filter(Boolean);

function fillProviders(names) {
  $("providers").replaceChildren(
    ...names.map((name) => {
      const option = el("option");
      option.value = name;
      return option;
    }),
  );
}

function formNote(text, kind) {
  $("run-note").textContent = text || "";
  $("run-note").className = "note" + (kind ? " " + kind : "");
}

function setupForm() {
  $("run").addEventListener("submit", (e) => {
    e.preventDefault();
    const prompt = $("prompt").value.trim();
    const provider = $("provider").value.trim();
    const repo = $("repo").value.trim();
    const branch = $("branch").value.trim();
    if (!prompt) {
      $("prompt").focus();
      return formNote("Write a prompt first.", "error");
    }
    if (!provider) {
      $("provider").focus();
      return formNote("Name a provider.", "error");
    }
    if (branch && !repo) {
      $("repo").focus();
      return formNote("A branch needs a repository.", "error");
    }
    // The page names the job, so it can reattach to it even if the connection drops before the first event.
    const body = { jobId: newJobId(), userRequest: prompt, codingAssistantProvider: provider };
    if (repo) {
      body.github = { repoUrl: repo };
      if (branch) body.github.branch = branch;
    }
    if ($("ask").checked) body.approvals = { mode: "client" };
    if ($("talk").checked) body.conversation = {};
    formNote("");
    runJob(body, oneLine(prompt, 28));
  });
}

function fact(list, name, value) {
  list.append(el("dt", "", name), el("dd", "", value === null || value === undefined || value === "" ? "–" : value));
}

async function startWorker() {
  $("worker").hidden = false;
  try {
    const response = await fetch("/health", { cache: "no-store" });
    const health = await response.json();
    $("role-name").textContent = "worker " + (health.workerId || "");
    const providers = health.providers && typeof health.providers === "object" ? health.providers : {};
    const names = Object.keys(providers);
    if (names.length) fillProviders(names);
    const available = names.filter((n) => providers[n] && providers[n].available);
    $("worker-card").dataset.providers = available.join(", ") || "none installed";
    $("worker-card").dataset.version = health.version || "";
  } catch (_) {
    // /status below says whether the worker answers at all.
  }
  for (;;) {
    let status = null;
    try {
      const response = await fetch("/status", { cache: "no-store" });
      status = await response.json();
    } catch (_) {
      // Not answering: shown as such.
    }
    renderWorker(status);
    await sleep(2000);
  }
}

function renderWorker(status) {
  const card = $("worker-card");
  const list = document.createDocumentFragment();
  fact(list, "state", status ? status.status : "not answering (a worker exits after its job unless EXIT_AFTER_JOB=false)");
  if (status && status.jobId) {
    fact(list, "job", status.jobId);
    fact(list, "provider", status.provider);
    const started = parseTime(status.startedAt);
    fact(list, "running for", started === null ? null : formatDuration(Date.now() - started));
  }
  fact(list, "providers", card.dataset.providers);
  fact(list, "version", card.dataset.version);
  card.replaceChildren(list);
  const button = $("worker-watch");
  const jobId = status && status.status !== "idle" ? status.jobId : null;
  button.hidden = !jobId;
  button.onclick = jobId ? () => watchJob(jobId) : null;
}

function start() {
  fillProviders(KNOWN_PROVIDERS);
  setupToken();
  setupForm();
  if (ROLE === "fleet") {
    $("role-name").textContent = "fleet gateway";
    startFleet();
  } else {
    startWorker();
  }
  setInterval(() => {
    tickFleet();
    tickViews();
  }, 1000);
}

start();
