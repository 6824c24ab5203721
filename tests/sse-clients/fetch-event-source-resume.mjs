// `@microsoft/fetch-event-source` reading one job to its end: `POST /execute` with the body, and after the test's
// proxy cuts that connection, the library's own retry — carrying the `last-event-id` header it keeps by itself —
// goes to `GET /jobs/{jobId}/events` (its `fetch` option routes it there; the job id comes from the stream).
//
// Reports (see report.mjs): {"request"} and {"response"} per request, {"event"} per event, {"retry"} per failure
// the library retries after, and {"done"} when the call returns after the terminal event.

import { fetchEventSource } from '@microsoft/fetch-event-source';

import { MAX_REQUESTS, TERMINAL_TYPES, args, report, resumePath } from './report.mjs';

// The library is written for browsers: it reads `document` (page visibility) and `window` (timers, fetch) even
// with `openWhenHidden`. Node has neither; a page that is always visible is the honest stand-in.
globalThis.window ??= globalThis;
globalThis.document ??= { hidden: false, addEventListener() {}, removeEventListener() {} };

const { base, body } = args();
let jobId = null;
let requests = 0;
let terminal = null;

class NoMoreEvents extends Error {}

async function startOrResume(url, init) {
  requests += 1;
  const n = requests;
  const headers = new Headers(init.headers);
  const lastEventId = headers.get('last-event-id');
  let target = new URL(url);
  let options = init;
  if (n > 1) {
    if (jobId === null) {
      throw new Error('a retry before the stream told the job id');
    }
    // The retry repeats the first call's options; a resume is a GET without the job's body.
    headers.delete('content-type');
    target = new URL(`${base}${resumePath(jobId)}`);
    options = { ...init, method: 'GET', headers, body: undefined };
  }
  report('request', { n, method: options.method ?? 'GET', path: target.pathname, lastEventId });
  const response = await fetch(target, options);
  report('response', { n, status: response.status, contentType: response.headers.get('content-type') });
  return response;
}

let stoppedBy204 = false;
try {
  await fetchEventSource(`${base}/execute`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    openWhenHidden: true,
    fetch: startOrResume,
    async onopen(response) {
      // The library's default would retry a 204 forever; the SSE standard's meaning is "nothing more, stop".
      if (response.status === 204) {
        throw new NoMoreEvents();
      }
      const type = response.headers.get('content-type') ?? '';
      if (!response.ok || !type.startsWith('text/event-stream')) {
        throw new Error(`unexpected answer ${response.status} (${type})`);
      }
    },
    onmessage(ev) {
      // The library hands on every blank-line-ended block, a comment-only one (`: keep-alive`, `: end`) too, which a
      // WHATWG EventSource never dispatches.
      if (ev.data === '' && ev.event === '' && ev.id === '') {
        return;
      }
      const data = JSON.parse(ev.data);
      jobId ??= data.jobId;
      if (TERMINAL_TYPES.includes(ev.event)) {
        terminal = ev.id;
      }
      report('event', { connection: requests, id: ev.id, type: ev.event, data });
    },
    onclose() {
      // The stream ended; unless it carried the terminal event, that is a drop to resume from.
      if (terminal === null) {
        throw new Error('the stream ended before the terminal event');
      }
    },
    onerror(err) {
      if (err instanceof NoMoreEvents) {
        throw err;
      }
      report('retry', { message: String(err?.message ?? err), cause: String(err?.cause?.code ?? err?.cause ?? '') });
      if (requests >= MAX_REQUESTS) {
        throw new Error(`more than ${MAX_REQUESTS} requests without reaching the terminal event`);
      }
      // Undefined: retry after the library's interval (or the server's `retry:`).
    },
  });
} catch (err) {
  if (!(err instanceof NoMoreEvents)) {
    throw err;
  }
  stoppedBy204 = true;
}
report('done', { requests, terminal, stoppedBy204 });
