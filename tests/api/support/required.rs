//! The one switch that turns the suite's optional tools (a browser, Node and its client packages, a Docker engine
//! and its image) from "skip and say so" into "must be here": `CI` set to `true` or `1`, as CI services set it.
//! Every test binary includes this file, so no test has a switch of its own.

// The fleet tests include this file on its own, the other binaries through the support module.
#![allow(dead_code)]

/// The variable and the values that make every optional tool required, for the messages that name it.
pub const SWITCH: &str = "CI=true";

pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
