//! Integration tests: the real worker binary on port 0, driven over HTTP.

mod claude_code;
mod concurrency;
mod framing;
mod git;
mod git_push;
mod lifecycle;
mod secrets;
mod support;
mod validation;
