// The WHATWG EventSource (npm `eventsource`) reading one job to its end as a browser would.
//
// EventSource can only GET, so its `fetch` option starts the job: the first request becomes `POST /execute` with
// the body; every later one is a reconnect, carrying the `Last-Event-ID` that EventSource keeps by itself, and goes
// to `GET /jobs/{jobId}/events` (the job id comes from the stream). Nothing here reconnects or stops by hand: the
// test's proxy cuts the first connection, EventSource reconnects on its own, and after the terminal event its next
// reconnect gets 204, which must close it for good.
//
// Reports (see report.mjs): {"request"} and {"response"} per request, {"event"} per event, {"connectionError"}
// per error EventSource signals, and {"exit"} when Node exits because nothing is left to do — which is itself the
// proof that no reconnect is pending.

import { EventSource } from 'eventsource';

import { EVENT_TYPES, MAX_REQUESTS, args, report, resumePath } from './report.mjs';

const { base, body } = args();
let jobId = null;
let requests = 0;

async function startOrResume(url, init) {
  requests += 1;
  const n = requests;
  if (n > MAX_REQUESTS) {
    source.close();
    throw new Error(`more than ${MAX_REQUESTS} requests: EventSource does not stop`);
  }
  const headers = new Headers(init.headers);
  const lastEventId = headers.get('last-event-id');
  let target = new URL(url);
  let options = { ...init, method: 'POST', headers, body };
  if (n === 1) {
    headers.set('content-type', 'application/json');
  } else {
    if (jobId === null) {
      throw new Error('a reconnect before the stream told the job id');
    }
    target = new URL(`${base}${resumePath(jobId)}`);
    options = { ...init, method: 'GET', headers };
  }
  report('request', { n, method: options.method, path: target.pathname, lastEventId });
  const response = await fetch(target, options);
  report('response', { n, status: response.status, contentType: response.headers.get('content-type') });
  return response;
}

const source = new EventSource(`${base}/execute`, { fetch: startOrResume });

for (const type of EVENT_TYPES) {
  source.addEventListener(type, (ev) => {
    // `error` is both an event type of the stream and how EventSource reports a failed connection.
    if (!(ev instanceof MessageEvent)) {
      report('connectionError', { code: ev.code ?? null, message: ev.message ?? null, readyState: source.readyState });
      return;
    }
    const data = JSON.parse(ev.data);
    jobId ??= data.jobId;
    report('event', { connection: requests, id: ev.lastEventId, type: ev.type, data });
  });
}

process.on('exit', () => report('exit', { requests, readyState: source.readyState }));
