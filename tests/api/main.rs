//! Integration tests: the real worker binary on port 0, driven over HTTP.

mod claude_code;
mod codex;
mod concurrency;
mod contract;
mod copilot;
mod cursor;
mod dashboard;
mod exec;
mod exec_approvals;
mod framing;
mod gateway;
mod gemini;
mod git;
mod git_push;
mod lifecycle;
mod limits;
mod mcp;
mod opencode;
mod persistence;
mod resume;
mod secrets;
mod sse_clients;
mod support;
mod validation;
mod webhook;
