//! ACP (the Agent Client Protocol) from the client's side: the worker drives an agent that speaks it (Copilot and
//! Gemini CLI natively, Claude Code and Codex through their adapters, any `ACP_AGENTS` entry). `client` is the
//! pure state machine (agent lines in; lines to send, events, questions and the outcome out); `runner` runs the
//! agent's process with the job's limits, times the questions and stops the agent (docs/approvals.md).

mod client;
mod runner;

pub use client::{AcpClient, AcpSetup, Step};
pub use runner::converse;
