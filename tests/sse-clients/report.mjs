// What both client scripts share: how they tell the Rust test what happened (one JSON object per line on stdout,
// read as it comes so that the test can act in between), and the event types of docs/events.md.

/** Prints one line of the report: `{"<kind>": value}`. */
export function report(kind, value) {
  process.stdout.write(`${JSON.stringify({ [kind]: value })}\n`);
}

/**
 * Every event type of docs/events.md. A WHATWG EventSource hands a named event only to listeners for that name, so a type
 * missing here would show as a gap in the ids, never pass unseen.
 */
export const EVENT_TYPES = [
  'connected',
  'message',
  'github_pull_progress',
  'session',
  'assistant_message',
  'thinking',
  'tool_use',
  'tool_result',
  'log',
  'git_changes',
  'git_push',
  'pull_request',
  'queued',
  'plan',
  'permission_request',
  'permission_resolved',
  'completed',
  'error',
];

export const TERMINAL_TYPES = ['completed', 'error'];

/** A client that keeps reconnecting is a failure of the test, not a reason to run forever. */
export const MAX_REQUESTS = 6;

/** `node SCRIPT BASE_URL BODY_JSON` */
export function args() {
  const [base, body] = process.argv.slice(2);
  if (!base || !body) {
    process.stderr.write('usage: node SCRIPT BASE_URL BODY_JSON\n');
    process.exit(2);
  }
  return { base: base.replace(/\/$/, ''), body };
}

/** The job's events after a reconnect: the path a client builds from the job id the stream told it. */
export function resumePath(jobId) {
  return `/jobs/${encodeURIComponent(jobId)}/events`;
}
