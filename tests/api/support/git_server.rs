//! A real smart-HTTP git server on 127.0.0.1: every request runs `git http-backend` (CGI) against bare repositories
//! in a temp folder, built with the `git` CLI. It can require a token (Basic auth), stall, redirect to another
//! host, or send packs slowly, and it records what it was asked.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tempfile::TempDir;

use super::http::{Request, base64, read_request, response};

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Mode {
    #[default]
    Serve,
    /// Accept connections and never answer.
    Stall,
    /// Answer every request with a redirect to the same path on this host name (e.g. `localhost`).
    RedirectTo(String),
    /// Answer requests for `old.git` with a redirect to `new.git` on the same host (a renamed repository).
    Renamed { old: String, new: String },
    /// Send pack responses in small pieces with a pause between them, so that a clone stays in progress.
    Drip,
}

#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub host: String,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    mode: Mode,
    token: Option<String>,
    seen: Vec<Seen>,
    connections: usize,
    /// Pack downloads the client broke off before their end.
    cut_short: usize,
}

pub struct GitServer {
    pub port: u16,
    root: TempDir,
    state: Arc<Mutex<State>>,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Fixture", "-c", "user.email=fixture@example.com"])
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitServer {
    pub fn start() -> GitServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let root = TempDir::new().expect("git root");
        let state = Arc::new(Mutex::new(State::default()));
        let (shared, project_root) = (state.clone(), root.path().to_path_buf());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (shared, root) = (shared.clone(), project_root.clone());
                std::thread::spawn(move || serve(stream, &shared, &root, port));
            }
        });
        GitServer { port, root, state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// From now on every request needs `Authorization: Basic base64(x-access-token:<token>)`.
    pub fn require_token(&self, token: &str) {
        self.lock().token = Some(token.to_string());
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }

    pub fn bare(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.git"))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    pub fn connections(&self) -> usize {
        self.lock().connections
    }

    pub fn cut_short(&self) -> usize {
        self.lock().cut_short
    }

    /// Runs the `git` CLI against a bare repository of this server.
    pub fn git(&self, name: &str, args: &[&str]) -> String {
        git(&self.bare(name), args)
    }

    /// Creates `name.git` whose default branch is `default_branch`, with one commit per entry of `commits` (each a
    /// list of files) on it, and the extra `branches` (name, file) forked from its tip.
    pub fn create_repo(&self, name: &str, default_branch: &str, commits: &[Vec<(String, Vec<u8>)>]) {
        let work = TempDir::new().expect("work tree");
        git(work.path(), &["init", "-q", "-b", default_branch]);
        for (i, files) in commits.iter().enumerate() {
            for (path, content) in files {
                let file = work.path().join(path);
                std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
                std::fs::write(file, content).expect("write fixture file");
            }
            git(work.path(), &["add", "-A"]);
            git(work.path(), &["commit", "-q", "-m", &format!("commit {i}")]);
        }
        let bare = self.bare(name);
        git(
            self.root.path(),
            &["init", "-q", "--bare", bare.to_str().expect("utf-8")],
        );
        git(&bare, &["config", "http.receivepack", "true"]);
        git(
            &bare,
            &["symbolic-ref", "HEAD", &format!("refs/heads/{default_branch}")],
        );
        git(
            work.path(),
            &[
                "push",
                "-q",
                bare.to_str().expect("utf-8"),
                &format!("{default_branch}:{default_branch}"),
            ],
        );
    }

    /// Creates `name.git` with no commit at all.
    pub fn create_empty(&self, name: &str) {
        let bare = self.bare(name);
        git(
            self.root.path(),
            &["init", "-q", "--bare", bare.to_str().expect("utf-8")],
        );
        git(&bare, &["config", "http.receivepack", "true"]);
    }

    /// Adds `branch` to `name.git`, forked from `from` with one more file.
    pub fn add_branch(&self, name: &str, from: &str, branch: &str, file: &str) {
        let work = TempDir::new().expect("work tree");
        let bare = self.bare(name);
        git(
            work.path(),
            &["clone", "-q", "-b", from, bare.to_str().expect("utf-8"), "."],
        );
        git(work.path(), &["checkout", "-q", "-b", branch]);
        std::fs::write(work.path().join(file), format!("{branch}\n")).expect("write");
        git(work.path(), &["add", "-A"]);
        git(work.path(), &["commit", "-q", "-m", &format!("on {branch}")]);
        git(work.path(), &["push", "-q", "origin", branch]);
    }
}

/// `count` small text files, spread over folders.
pub fn many_files(count: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            (
                format!("dir{}/file{i}.txt", i % 50),
                format!("file {i}\nline two\n").into_bytes(),
            )
        })
        .collect()
}

/// Incompressible content, so that the pack is as large as the files.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, root: &Path, port: u16) {
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    let mode = {
        let mut s = lock();
        s.connections += 1;
        s.mode.clone()
    };
    if mode == Mode::Stall {
        // Hold the connection open until the client gives up.
        let _ = std::io::copy(&mut stream, &mut std::io::sink());
        return;
    }
    let Ok(request) = read_request(&stream) else { return };
    let authorization = request.header("authorization").map(String::from);
    let token = {
        let mut s = lock();
        s.seen.push(Seen {
            method: request.method.clone(),
            path: request.path.clone(),
            host: request.header("host").unwrap_or_default().to_string(),
            authorization: authorization.clone(),
        });
        s.token.clone()
    };
    if let Mode::RedirectTo(host) = &mode {
        let location = format!("http://{host}:{port}{}?{}", request.path, request.query);
        let _ = stream.write_all(&response("302 Found", &[("Location", &location)], b""));
        return;
    }
    if let Mode::Renamed { old, new } = &mode
        && let Some(rest) = request.path.strip_prefix(&format!("/{old}.git"))
    {
        let location = format!("http://127.0.0.1:{port}/{new}.git{rest}?{}", request.query);
        let _ = stream.write_all(&response("301 Moved Permanently", &[("Location", &location)], b""));
        return;
    }
    if let Some(token) = token {
        let expected = format!("Basic {}", base64(format!("x-access-token:{token}").as_bytes()));
        if authorization.as_deref() != Some(expected.as_str()) {
            let headers = [("WWW-Authenticate", "Basic realm=\"git\"")];
            let _ = stream.write_all(&response("401 Unauthorized", &headers, b"unauthorized\n"));
            return;
        }
    }
    let (status, headers, body) = run_backend(&request, root);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let full = response(&status, &headers, &body);
    if mode == Mode::Drip && request.path.ends_with("git-upload-pack") {
        let (head, body) = full.split_at(full.len() - body.len());
        let _ = stream.write_all(head);
        for piece in body.chunks(2048) {
            if stream.write_all(piece).and_then(|_| stream.flush()).is_err() {
                lock().cut_short += 1;
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        return;
    }
    let _ = stream.write_all(&full);
}

/// Runs `git http-backend` as CGI and splits its output into status, headers and body.
fn run_backend(request: &Request, root: &Path) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("REQUEST_METHOD", &request.method)
        .env("CONTENT_TYPE", request.header("content-type").unwrap_or_default())
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .env("HTTP_GIT_PROTOCOL", request.header("git-protocol").unwrap_or_default())
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend");
    let mut stdin = child.stdin.take().expect("stdin");
    let body = request.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read cgi");
    let _ = writer.join();
    let _ = child.wait();
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, p + 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|p| (p, p + 2)))
        .unwrap_or((out.len(), out.len()));
    let head = String::from_utf8_lossy(&out[..split.0]).to_string();
    let mut status = "200 OK".to_string();
    let mut headers = Vec::new();
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("status") {
                status = value.trim().to_string();
            } else {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
    }
    (status, headers, out[split.1..].to_vec())
}
