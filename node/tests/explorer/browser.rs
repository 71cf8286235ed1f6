//! A headless Chromium driven over WebDriver (chromedriver), with the handful of commands
//! the explorer tests need: open a URL, run a script, wait for text, take a screenshot.
//!
//! WebDriver is JSON over HTTP, so this speaks it with the `reqwest` client the node
//! already depends on rather than a WebDriver crate (see ARCHITECTURE.md, "Why these
//! crates"). Missing Chromium fails the test with a message saying what to install.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Deadline of one WebDriver command (a page load included).
const COMMAND_TIMEOUT_MS: u64 = 30_000;
/// Deadline for chromedriver to answer its status after it starts.
const DRIVER_START_TIMEOUT_MS: u64 = 20_000;
/// How often a wait re-reads the page.
const POLL_MS: u64 = 200;

pub struct Browser {
    driver: std::process::Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

pub fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the explorer's browser tests drive a real headless Chromium. \
         Install Debian's packages (`apt-get install -y chromium chromium-driver`; .ci/run does \
         so when /usr/bin/chromium is absent)."
    );
}

impl Browser {
    pub async fn start() -> Browser {
        require(CHROMIUM);
        require(CHROMEDRIVER);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for chromedriver")
            .port();
        let mut command = std::process::Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: dropping the browser ends chromedriver and the Chromium
        // it started, by that group's id, and nothing else.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = command.spawn().expect("start chromedriver");
        let profile = tempfile::Builder::new()
            .prefix("docket-ui-chromium-")
            .tempdir()
            .expect("profile directory");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(COMMAND_TIMEOUT_MS))
            .build()
            .expect("http client");
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(response) = ready {
                let body: Value = response.json().await.unwrap_or_default();
                if body["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_millis(DRIVER_START_TIMEOUT_MS),
                "chromedriver did not become ready on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        let profile_arg = format!("--user-data-dir={}", profile.path().display());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1280,1400", profile_arg],
            }
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("ask chromedriver for a session")
            .json()
            .await
            .expect("chromedriver's answer");
        let id = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused a session: {response}"));
        Browser {
            session: format!("{base}/session/{id}"),
            driver,
            http,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        if response["value"].get("error").is_some() {
            panic!("WebDriver {path} failed: {response}");
        }
        response["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Runs `script` as an async WebDriver script: it answers by calling
    /// `arguments[arguments.length - 1]` with its result.
    pub async fn eval_async(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Presses Tab once, as a keyboard user would.
    pub async fn press_tab(&self) {
        let tab = "\u{E004}";
        self.command(
            reqwest::Method::POST,
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": tab}, {"type": "keyUp", "value": tab}]}]}),
            ),
        )
        .await;
    }

    /// The text of the first element matching `selector` and its `data-verdict`, if any.
    pub async fn read(&self, selector: &str) -> Option<(String, String)> {
        let value = self
            .eval(
                "const e = document.querySelector(arguments[0]);
                 return e ? [e.innerText, e.dataset.verdict || ''] : null;",
                json!([selector]),
            )
            .await;
        value.as_array().map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_owned(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
    }

    /// Waits until `selector`'s text (and `data-verdict`) satisfy `check`; answers the text.
    /// Panics naming `what`, with the page's text, at the deadline.
    pub async fn wait_for(
        &self,
        what: &str,
        selector: &str,
        timeout_ms: u64,
        check: impl Fn(&str, &str) -> bool,
    ) -> String {
        let started = Instant::now();
        loop {
            if let Some((text, verdict)) = self.read(selector).await {
                if check(&text, &verdict) {
                    return text;
                }
            }
            if started.elapsed() > Duration::from_millis(timeout_ms) {
                let page = self
                    .eval("return document.body.innerText;", json!([]))
                    .await;
                panic!(
                    "waited {timeout_ms} ms for {what} ({selector}); the page reads:\n{}",
                    page.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Saves a PNG of the viewport as `target/ui-screenshots/NAME.png`; answers its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("base64 screenshot");
        let dir = screenshots_dir();
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("write screenshot");
        path
    }
}

impl Browser {
    /// Ends the session, so chromedriver closes Chromium in order (Drop then ends
    /// chromedriver itself).
    pub async fn close(self) {
        self.command(reqwest::Method::DELETE, "", None).await;
    }
}

/// `target/ui-screenshots/` of this workspace (or of `CARGO_TARGET_DIR`).
pub fn screenshots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("ui-screenshots")
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's Chromium is chromedriver's child, in the group started above.
        let group = self.driver.id();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{group}")])
            .status();
        let _ = self.driver.wait();
    }
}
