// Drives an ACP agent with the reference SDK's ClientSideConnection, as an editor would, for
// tests/api/acp_server.rs. argv: the agent's program and its arguments.
//
// Commands arrive on stdin, one JSON object a line:
//   {"id": 1, "method": "prompt", "params": {...}}  a method of ClientSideConnection (initialize, newSession,
//                                                  loadSession, prompt, cancel, closeSession); its outcome is
//                                                  reported as {"reply": 1, "result": ...} or {"reply": 1, "error": ...}
//   {"answer": ["allow_once", "reject_once"]}      the option kinds the next permission requests are answered with,
//                                                  in order (none left: the request is answered "cancelled")
// Reports go to stdout, one JSON object a line, in the order things happened: {"update": params},
// {"permission": params, "chose": optionId}, replies, and {"exited": code} when the agent ends.
// End of stdin closes the agent's stdin; this script ends with the agent.
import { spawn } from "node:child_process";
import readline from "node:readline";
import { Readable, Writable } from "node:stream";

import * as acp from "@agentclientprotocol/sdk";

const [program, ...args] = process.argv.slice(2);
const agent = spawn(program, args, { stdio: ["pipe", "pipe", "inherit"] });
const report = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
const answers = [];

class TestClient {
  async requestPermission(params) {
    const kind = answers.shift();
    const option = params.options.find((o) => o.kind === kind);
    report({ permission: params, chose: option ? option.optionId : null });
    return option
      ? { outcome: { outcome: "selected", optionId: option.optionId } }
      : { outcome: { outcome: "cancelled" } };
  }

  async sessionUpdate(params) {
    report({ update: params });
  }

  // The client advertises no file system or terminal: an agent that asks anyway is told so.
  async readTextFile() {
    throw acp.RequestError.methodNotFound("fs/read_text_file");
  }

  async writeTextFile() {
    throw acp.RequestError.methodNotFound("fs/write_text_file");
  }
}

const stream = acp.ndJsonStream(Writable.toWeb(agent.stdin), Readable.toWeb(agent.stdout));
const connection = new acp.ClientSideConnection(() => new TestClient(), stream);
agent.on("exit", (code, signal) => report({ exited: code, signal }));

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  if (command.answer) {
    answers.push(...command.answer);
    continue;
  }
  const { id, method, params } = command;
  Promise.resolve()
    .then(() => connection[method](params))
    .then(
      (result) => report({ reply: id, result: result ?? null }),
      (error) => report({ reply: id, error: { code: error.code, message: error.message, data: error.data } }),
    );
}
agent.stdin.end();
