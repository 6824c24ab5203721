//! A real `redis-server` for the tests of fleet state: its own free port and data folder, AOF on (as the stack
//! runs it), stopped when dropped. Absent `redis-server`, the tests that need it skip, unless the suite's one
//! switch (`support::required`) says every tool must be there.

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    password: Option<String>,
}

fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// A fresh server, or None (with a note) where redis-server is not installed and CI does not require it.
    pub fn start() -> Option<RedisServer> {
        Self::start_with(None)
    }

    pub fn start_with(password: Option<&str>) -> Option<RedisServer> {
        if !installed() {
            assert!(
                !super::required::required(),
                "{} but redis-server is not installed (.ci/run installs Debian's redis-server)",
                super::required::SWITCH
            );
            eprintln!("skipped: redis-server is not installed");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer {
            port,
            dir: TempDir::new().expect("redis dir"),
            child: None,
            password: password.map(String::from),
        };
        server.run();
        Some(server)
    }

    /// `redis://127.0.0.1:<port>` (without the password).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        self.child = Some(cmd.spawn().expect("start redis-server"));
        self.wait_until(true);
    }

    /// A clean stop (the AOF is flushed), as a container restart does.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on the pid of a child this struct started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        self.wait_until(false);
    }

    /// Started again on the same port and data folder: what AOF kept comes back.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Waits until the port answers PING (`up`) or refuses connections.
    fn wait_until(&self, up: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answers = self.ping();
            if answers == up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server never became {}",
                if up { "ready" } else { "stopped" }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
        let hello = match &self.password {
            Some(p) => format!("AUTH {p}\r\nPING\r\n"),
            None => "PING\r\n".to_string(),
        };
        if conn.write_all(hello.as_bytes()).is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if got.windows(5).any(|w| w == b"+PONG") || got.starts_with(b"-") {
                break;
            }
        }
        // A server still loading its AOF answers -LOADING: not ready yet.
        got.windows(5).any(|w| w == b"+PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
