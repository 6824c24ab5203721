//! A child process on a pseudo-terminal: its stdin, stdout and stderr are the terminal, so it behaves as it does for
//! a person (`isatty` is true), while the test reads what it shows and types into it.

#![allow(dead_code)]

use std::{
    ffi::CStr,
    fs::File,
    io::{Read, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::support::PATIENCE;

pub struct PtyChild {
    child: tokio::process::Child,
    master: File,
    output: Arc<Mutex<String>>,
}

/// A new terminal pair: (master, slave). Both ends are close-on-exec from the start, so that processes other tests
/// spawn meanwhile never hold the terminal open.
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain libc calls; every returned descriptor is checked and owned at once.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(master);
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let slave = libc::open(
            CStr::from_ptr(name.as_ptr()).as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((master, OwnedFd::from_raw_fd(slave)))
    }
}

impl PtyChild {
    /// Spawns `command` with the terminal as its stdin, stdout and stderr.
    pub fn spawn(mut command: tokio::process::Command) -> PtyChild {
        let (master, slave) = open_pty().expect("open a pseudo-terminal");
        let child = {
            let stdio = || Stdio::from(slave.try_clone().expect("dup the terminal"));
            command
                .stdin(stdio())
                .stdout(stdio())
                .stderr(stdio())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn on the terminal")
        };
        // Only the child holds the terminal now (the command's copies went with it), so the reader below sees the
        // end when the child exits.
        drop(command);
        drop(slave);
        let output = Arc::new(Mutex::new(String::new()));
        let mut reader = File::from(master.try_clone().expect("dup the master"));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Linux answers EIO once the last slave descriptor is closed: the end of the output.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
                sink.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        PtyChild {
            child,
            master: File::from(master),
            output,
        }
    }

    /// What the terminal showed so far, with its `\r\n` line ends made `\n`.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace("\r\n", "\n")
    }

    /// Waits until the terminal shows `needle` after `after` occurrences of it, i.e. its `after + 1`-th time.
    pub async fn wait_for_nth(&self, needle: &str, after: usize) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = self.output();
            if out.matches(needle).count() > after {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {needle:?}:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_for(&self, needle: &str) {
        self.wait_for_nth(needle, 0).await
    }

    /// Types `text` and Enter.
    pub fn type_line(&mut self, text: &str) {
        self.master
            .write_all(format!("{text}\n").as_bytes())
            .expect("type into the terminal");
    }

    /// The exit code, once the child has exited.
    pub async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("the child on the terminal hung")
            .expect("wait");
        status.code().unwrap_or(-1)
    }
}
