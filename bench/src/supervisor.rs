//! The benchmark's stand-in for Swarm: one worker process per slot on a fixed port, a new one started as soon as
//! the last one exits (`EXIT_AFTER_JOB=true`), and for each process when it first answered `/health` and when it
//! exited. Each process gets its own `WORKER_ID` (`s<slot>-<generation>`), which its `connected` event carries,
//! so that a client's job can be matched with the process that ran it.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{sync::watch, task::JoinHandle};

use crate::worker::{command, free_port};

/// How often a starting replica's `/health` is polled: the resolution of the replacement time.
const HEALTH_POLL: Duration = Duration::from_millis(1);

#[derive(Clone, Debug)]
pub struct Life {
    pub id: String,
    pub slot: usize,
    pub generation: usize,
    pub answered: Option<Instant>,
    pub exited: Option<Instant>,
}

pub struct Supervisor {
    pub ports: Vec<u16>,
    lives: Arc<Mutex<Vec<Life>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts `slots` replicas with `env` on top of the bench's worker environment; returns once all answer.
    /// `delay`: how long after an exit the replacement is started (0 = at once).
    pub async fn start(slots: usize, env: &[(&str, &str)], delay: Duration) -> Supervisor {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let ports: Vec<u16> = (0..slots).map(|_| free_port()).collect();
        let lives = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let tasks = ports
            .iter()
            .enumerate()
            .map(|(slot, &port)| tokio::spawn(keep(slot, port, env.clone(), delay, lives.clone(), stopped.clone())))
            .collect();
        let supervisor = Supervisor {
            ports,
            lives,
            stop,
            tasks,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while supervisor.lives().iter().filter(|l| l.answered.is_some()).count() < slots {
            assert!(Instant::now() < deadline, "the replicas never answered /health");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        supervisor
    }

    pub fn addresses(&self) -> Vec<String> {
        self.ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect()
    }

    pub fn lives(&self) -> Vec<Life> {
        self.lives.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until each of `ids` has exited (or `patience` ran out), so that their exit times are known.
    pub async fn wait_exited(&self, ids: &[String], patience: Duration) {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let lives = self.lives();
            let running = ids
                .iter()
                .any(|id| lives.iter().any(|l| &l.id == id && l.exited.is_none()));
            if !running {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Kills the replicas still running and returns every process's record.
    pub async fn stop(self) -> Vec<Life> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let lives = self.lives.lock().unwrap_or_else(|e| e.into_inner());
        lives.clone()
    }
}

async fn keep(
    slot: usize,
    port: u16,
    env: Vec<(String, String)>,
    delay: Duration,
    lives: Arc<Mutex<Vec<Life>>>,
    mut stopped: watch::Receiver<bool>,
) {
    // No idle connection kept: a pooled keep-alive connection would be one more the exiting worker drains.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let record = |index: usize, update: &dyn Fn(&mut Life)| {
        let mut lives = lives.lock().unwrap_or_else(|e| e.into_inner());
        update(&mut lives[index]);
    };
    for generation in 0.. {
        let id = format!("s{slot}-{generation}");
        let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        vars.push(("WORKER_ID", &id));
        let mut cmd = tokio::process::Command::from(command(&[], port, &vars));
        cmd.stdout(Stdio::null()).kill_on_drop(true);
        let mut child = cmd.spawn().expect("start a replica");
        let index = {
            let mut lives = lives.lock().unwrap_or_else(|e| e.into_inner());
            lives.push(Life {
                id: id.clone(),
                slot,
                generation,
                answered: None,
                exited: None,
            });
            lives.len() - 1
        };
        // Poll /health until it answers; a process that exits first (it could not bind) is simply replaced.
        let mut alive = true;
        loop {
            if *stopped.borrow() {
                let _ = child.kill().await;
                return;
            }
            if let Ok(Some(_)) = child.try_wait() {
                let now = Instant::now();
                record(index, &|l| l.exited = Some(now));
                alive = false;
                break;
            }
            if let Ok(resp) = client.get(format!("http://127.0.0.1:{port}/health")).send().await
                && resp.status() == 200
            {
                let now = Instant::now();
                record(index, &|l| l.answered = Some(now));
                break;
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
        if alive {
            let exited = tokio::select! {
                _ = child.wait() => Instant::now(),
                _ = stopped.changed() => {
                    let _ = child.kill().await;
                    return;
                }
            };
            record(index, &|l| l.exited = Some(exited));
            // An orchestrator takes its time to schedule the replacement (Swarm: about half a second).
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped.changed() => return,
                }
            }
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
