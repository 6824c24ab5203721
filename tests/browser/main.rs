//! The dashboard in a real browser: headless Chromium driven through chromedriver (WebDriver) against real worker
//! and gateway processes with a fake CLI. Screenshots land in `target/browser-screenshots/`.

#[path = "../api/support/mod.rs"]
mod support;

mod chromium;
mod dashboard;
