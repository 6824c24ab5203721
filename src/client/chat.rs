//! `exec --chat`: the person's side of a conversation job. Lines of input become the next messages, the end of
//! input closes the conversation, and Ctrl-C stops the running turn rather than the client.

use std::io::{BufRead, Write};

use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

/// What the person did.
pub enum Input {
    Message(String),
    /// End of input (Ctrl-D on a terminal): close the conversation.
    End,
}

pub struct Chat {
    input: mpsc::UnboundedReceiver<Input>,
    ctrl_c: Signal,
    /// Between `turn_started` and the turn's end: Ctrl-C then interrupts instead of leaving.
    pub turn_running: bool,
    /// The close was sent; the job's remaining events are still read to the end.
    pub closed: bool,
}

/// What woke the chat up.
pub enum Woke {
    Input(Input),
    CtrlC,
}

impl Chat {
    /// Starts reading stdin: a thread of its own, since a terminal's read blocks.
    pub fn start() -> std::io::Result<Chat> {
        let ctrl_c = signal(SignalKind::interrupt())?;
        let (tx, input) = mpsc::unbounded_channel();
        std::thread::Builder::new().name("chat-input".into()).spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                if tx.send(Input::Message(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::End);
        })?;
        Ok(Chat {
            input,
            ctrl_c,
            turn_running: false,
            closed: false,
        })
    }

    /// The next thing the person did; input stops being read once the close was sent.
    pub async fn next(&mut self) -> Woke {
        tokio::select! {
            input = self.input.recv(), if !self.closed => Woke::Input(input.unwrap_or(Input::End)),
            _ = self.ctrl_c.recv() => Woke::CtrlC,
        }
    }
}

/// The first message, asked for at the terminal when none was given; None (and a note) on end of input.
pub fn first_message() -> Option<String> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "› ");
    let _ = err.flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(n) if n > 0 && !line.trim().is_empty() => Some(line.trim_end().to_string()),
        _ => {
            eprintln!("unified-worker exec: no first message given");
            None
        }
    }
}
