// api.js — the server's API as the page calls it: the bearer token (asked for when the server wants one, kept in
// this tab's session storage, never in the page's address or markup) and the API's JSON errors.

const TOKEN_KEY = "unified-worker.api-token";

const auth = {
  required: document.body.dataset.auth === "token",
  token: "",
  waiting: [],
};

try {
  auth.token = sessionStorage.getItem(TOKEN_KEY) || "";
} catch (_) {
  // Storage can be switched off; the token then lives in memory only.
}

function storeToken(value) {
  auth.token = value;
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    // As above: memory only.
  }
}

function showToken(note) {
  const ask = auth.required && (!auth.token || Boolean(note));
  $("token-form").hidden = !ask;
  $("token-set").hidden = !auth.required || ask;
  $("token-note").textContent = note || "";
  if (ask && note) $("token").focus();
}

function askForToken(note) {
  showToken(note);
  return new Promise((resolve) => auth.waiting.push(resolve));
}

function setupToken() {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    $("token").value = "";
    storeToken(value);
    showToken("");
    for (const resolve of auth.waiting.splice(0)) resolve();
  });
  $("token-forget").addEventListener("click", () => {
    storeToken("");
    showToken("");
  });
  showToken("");
}

// fetch() with the token. Without one where one is needed, asks first (so the page never sends a request bound to
// fail); a refused token is forgotten and asked for again, then the request is sent again — safe, because the
// server checks the token before anything else happens.
async function apiFetch(path, options) {
  const opts = options || {};
  if (auth.required && !auth.token) await askForToken("needed to run or watch a job");
  for (;;) {
    const headers = Object.assign({}, opts.headers);
    if (auth.token) headers.Authorization = "Bearer " + auth.token;
    const response = await fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
    if (response.status !== 401 || !auth.required) return response;
    storeToken("");
    await askForToken("the server refused this token");
  }
}

// The API's error body ({"error":{"code","message","field"}}) as one line.
async function errorText(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // Not JSON: the status says enough.
  }
  const error = body && body.error;
  if (!error) return "HTTP " + response.status;
  let text = (error.code ? error.code + ": " : "") + (error.message || "");
  if (error.field) text += " (" + error.field + ")";
  const retry = response.headers.get("Retry-After");
  if (retry) text += " — retry after " + retry + " s";
  return text;
}
