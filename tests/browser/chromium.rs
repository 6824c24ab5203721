//! Headless Chromium for the tests: chromedriver started on a port of its choosing, one WebDriver session with a
//! fresh profile, helpers that wait for a condition in the page, screenshots, and the browser's console log.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, wd::WebDriverCompatibleCommand};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::{PATIENCE, required};

/// How often a waiting helper looks at the page again.
const LOOK_EVERY: Duration = Duration::from_millis(50);

pub struct Browser {
    pub client: Client,
    driver: Child,
    shots: PathBuf,
    name: String,
    taken: usize,
    _profile: TempDir,
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Where screenshots go: `target/browser-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("browser-screenshots")
}

impl Browser {
    /// A browser session, or `None` (with a message) where no browser is installed and CI does not require one.
    pub async fn start(name: &str) -> Option<Browser> {
        let (Some(chromium), Some(chromedriver)) = (
            on_path(&["chromium", "chromium-browser", "google-chrome"]),
            on_path(&["chromedriver"]),
        ) else {
            assert!(
                !required(),
                "CI=true but chromium or chromedriver is not installed (.ci/run installs both)"
            );
            eprintln!("skipping {name}: no chromium/chromedriver here (apt-get install chromium chromium-driver)");
            return None;
        };
        let (driver, port) = start_driver(&chromedriver);
        let profile = TempDir::new().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--no-proxy-server", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--lang=en-US", "--window-size=1440,1100",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Some(Browser {
            client,
            driver,
            shots,
            name: name.to_string(),
            taken: 0,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script in the page")
    }

    /// Waits until `script` returns something other than null, false, 0 or "", and returns it.
    pub async fn wait_js(&mut self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.js(script, args.clone()).await;
            let truthy = !matches!(&value, Value::Null | Value::Bool(false))
                && value.as_f64() != Some(0.0)
                && value.as_str() != Some("");
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-"))).await;
                let page = self.js("return document.body.innerText", vec![]).await;
                panic!(
                    "timed out waiting for {what}; the page shows:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    }

    /// The text of the first element matching `css`, shown or not.
    pub async fn text(&self, css: &str) -> String {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null",
                vec![json!(css)],
            )
            .await;
        v.as_str().map(str::to_string).unwrap_or_default()
    }

    pub async fn click(&self, css: &str) {
        let found = self
            .js(
                "const e = document.querySelector(arguments[0]); if (!e) return false; e.click(); return true",
                vec![json!(css)],
            )
            .await;
        assert_eq!(found, json!(true), "nothing to click at {css}");
    }

    /// Types into a field as a user would (key events), through WebDriver.
    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        field.send_keys(text).await.expect("type");
    }

    /// Saves a PNG of the window as `target/browser-screenshots/<test>-<n>-<label>.png`.
    pub async fn screenshot(&mut self, label: &str) -> PathBuf {
        self.taken += 1;
        let path = self.shots.join(format!("{}-{}-{label}.png", self.name, self.taken));
        match self.client.screenshot().await {
            Ok(png) => {
                std::fs::write(&path, png).expect("write screenshot");
                eprintln!("screenshot: {}", path.display());
            }
            Err(e) => eprintln!("no screenshot {label}: {e}"),
        }
        path
    }

    /// The console's errors (and failed loads) since the page opened, from the browser's log.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.expect("the browser's log");
        let entries = log.as_array().cloned().unwrap_or_default();
        let mut errors: Vec<String> = entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect();
        // What the page caught itself (window.onerror, unhandled rejections), which it also shows in a banner.
        let own = self
            .js(
                "return window.__dashboardErrors || ['the page script never ran']",
                vec![],
            )
            .await;
        errors.extend(own.as_array().into_iter().flatten().map(|e| format!("page: {e}")));
        errors
    }

    /// Ends the session (the browser quits); dropping then stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// chromedriver in a process group of its own, on a port it picks; returns it with that port.
fn start_driver(binary: &Path) -> (Child, u16) {
    let mut child = Command::new(binary)
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromedriver");
    let stdout = child.stdout.take().expect("chromedriver stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "ChromeDriver was started successfully on port 40531."
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(rest.trim_end_matches('.').trim().parse::<u16>().ok());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => (child, port),
        _ => {
            let _ = child.kill();
            panic!("chromedriver did not say which port it listens on");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser it started, also when a test failed half-way.
        // SAFETY: a signal to the process group this test created.
        unsafe {
            libc::kill(-(self.driver.id() as i32), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// `POST /session/{id}/se/log {"type":"browser"}`: chromedriver's console log (needs `goog:loggingPrefs`).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_string()))
    }
}
