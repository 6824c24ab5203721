//! A TCP proxy that forwards to the worker and cuts its first connection right after a chosen SSE event, to test
//! that clients reattach without losing or repeating events.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
};

pub struct CuttingProxy {
    pub port: u16,
    cut: Arc<Notify>,
    done: Arc<AtomicBool>,
}

impl CuttingProxy {
    /// Cuts the first connection once the response has carried a frame containing `marker`.
    pub async fn start(target_port: u16, marker: &'static str) -> CuttingProxy {
        Self::start_with(target_port, marker, false).await
    }

    /// Cuts whichever connection first carries `marker`, once (a browser spreads its requests over several).
    pub async fn start_on_any(target_port: u16, marker: &'static str) -> CuttingProxy {
        Self::start_with(target_port, marker, true).await
    }

    async fn start_with(target_port: u16, marker: &'static str, any: bool) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(Notify::new());
        let done = Arc::new(AtomicBool::new(false));
        let (cut_tx, done_tx) = (cut.clone(), done.clone());
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)).await else {
                    continue;
                };
                let cutter = (first || any).then(|| (cut_tx.clone(), done_tx.clone()));
                first = false;
                tokio::spawn(forward(client, server, marker, cutter));
            }
        });
        CuttingProxy { port, cut, done }
    }

    pub async fn wait_cut(&self) {
        while !self.done.load(Ordering::SeqCst) {
            self.cut.notified().await;
        }
    }
}

async fn forward(client: TcpStream, server: TcpStream, marker: &str, cutter: Option<(Arc<Notify>, Arc<AtomicBool>)>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some((cut, done)) = cutter.as_ref().filter(|(_, done)| !done.load(Ordering::SeqCst)) else {
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            continue;
        };
        let start = seen.len();
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_string();
        let Some(at) = text.find(marker) else {
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            continue;
        };
        // Forward up to the end of the marked frame, then drop the connection.
        let end = text[at..]
            .find("\n\n")
            .map(|i| at + i + 2)
            .unwrap_or(text.len())
            .max(start);
        let _ = client_write.write_all(&seen[start..end]).await;
        let _ = client_write.shutdown().await;
        done.store(true, Ordering::SeqCst);
        cut.notify_waiters();
        break;
    }
    upstream.abort();
}
