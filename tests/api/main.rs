//! Integration tests: the real worker binary on port 0, driven over HTTP.

mod claude_code;
mod concurrency;
mod framing;
mod lifecycle;
mod persistence;
mod secrets;
mod support;
mod validation;
mod webhook;
