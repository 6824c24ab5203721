//! A stand-in for the GitHub REST API's pull request endpoint that records what it was sent.

use std::{
    io::Write,
    net::TcpListener,
    sync::{Arc, Mutex},
};

use serde_json::Value;

use super::http::{Request, read_request, response};

pub struct FakeGithub {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeGithub {
    /// Answers every request with `status` and `body`.
    pub fn start(status: &'static str, body: Value) -> FakeGithub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let body = body.to_string();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                if let Ok(request) = read_request(&stream) {
                    recorded.lock().unwrap_or_else(|e| e.into_inner()).push(request);
                }
                let headers = [("Content-Type", "application/json")];
                let _ = stream.write_all(&response(status, &headers, body.as_bytes()));
            }
        });
        FakeGithub { port, requests }
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
            .collect()
    }
}
