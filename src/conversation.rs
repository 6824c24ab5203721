//! A conversation job's inbox (docs/conversations.md): the messages that start its next turns, in order, the
//! close, and the interrupt of the running turn. The routes write it; the job's turn loop reads it.

use std::{collections::VecDeque, sync::Mutex, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub struct Conversation {
    /// How long the job waits for a message after a turn before it closes itself.
    pub idle: Duration,
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    /// The number of the last turn handed out: the first is the request's prompt.
    last_turn: u64,
    queue: VecDeque<Message>,
    closing: bool,
    /// Turns withdrawn by an interrupt and not yet reported.
    withdrawn: Vec<u64>,
    /// Stops the running turn; a new one for each turn, so an interrupt never reaches the turn after it.
    interrupt: CancellationToken,
    turns_begun: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub turn: u64,
    pub text: String,
}

/// What ends the wait after a turn.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Message(Message),
    /// `POST /jobs/{jobId}/close`, or no message within the idle window.
    Close {
        idle: bool,
    },
}

/// A message or close for a conversation that is closing or ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Ended;

/// What a message sent with `interrupt` did besides being queued.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub turn: u64,
    /// Messages that were waiting ahead of it and will not run: the interrupting message starts the next turn.
    pub withdrawn: Vec<u64>,
}

impl Conversation {
    pub fn new(idle: Duration) -> Self {
        Conversation {
            idle,
            state: Mutex::new(State {
                last_turn: 1,
                queue: VecDeque::new(),
                closing: false,
                withdrawn: Vec::new(),
                interrupt: CancellationToken::new(),
                turns_begun: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `text` as the next turn. With `interrupt`, the running turn is stopped and the messages still
    /// waiting are withdrawn, so this one runs next, at once.
    pub fn send(&self, text: String, interrupt: bool) -> Result<Sent, Ended> {
        let mut state = self.lock();
        if state.closing {
            return Err(Ended);
        }
        state.last_turn += 1;
        let turn = state.last_turn;
        let withdrawn = if interrupt { stop_turn(&mut state) } else { Vec::new() };
        state.queue.push_back(Message { turn, text });
        drop(state);
        self.changed.notify_one();
        Ok(Sent { turn, withdrawn })
    }

    /// Stops the running turn and withdraws the messages still waiting; the conversation then waits for the next
    /// message. Returns the withdrawn turns.
    pub fn interrupt(&self) -> Result<Vec<u64>, Ended> {
        let mut state = self.lock();
        if state.closing {
            return Err(Ended);
        }
        Ok(stop_turn(&mut state))
    }

    /// Asks the conversation to end once the running turn and the messages already queued have run. Closing twice
    /// is the same close.
    pub fn close(&self) {
        self.lock().closing = true;
        self.changed.notify_one();
    }

    /// The turns an interrupt withdrew since the last call, for the job to report.
    pub fn take_withdrawn(&self) -> Vec<u64> {
        std::mem::take(&mut self.lock().withdrawn)
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// The token that an interrupt cancels, fresh for each turn after the first. The first turn keeps the one it
    /// was born with: an interrupt sent while the job was still cloning stops the turn it was meant for.
    pub fn begin_turn(&self) -> CancellationToken {
        let mut state = self.lock();
        if state.turns_begun > 0 {
            state.interrupt = CancellationToken::new();
        }
        state.turns_begun += 1;
        state.interrupt.clone()
    }

    /// The next queued message, else waits for one, the close, or the idle window to pass.
    pub async fn next(&self) -> Next {
        let idle = tokio::time::sleep(self.idle);
        tokio::pin!(idle);
        loop {
            // Registered before the state is read, so a message sent in between still wakes this wait.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(message) = state.queue.pop_front() {
                    return Next::Message(message);
                }
                if state.closing {
                    return Next::Close { idle: false };
                }
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = &mut idle => {
                    let mut state = self.lock();
                    // A message that arrived with the deadline still runs.
                    if let Some(message) = state.queue.pop_front() {
                        return Next::Message(message);
                    }
                    state.closing = true;
                    return Next::Close { idle: true };
                }
            }
        }
    }
}

/// Cancels the running turn and takes the queue out: what an interrupt does, with or without a message.
fn stop_turn(state: &mut State) -> Vec<u64> {
    let withdrawn: Vec<u64> = state.queue.drain(..).map(|m| m.turn).collect();
    state.withdrawn.extend(withdrawn.iter().copied());
    state.interrupt.cancel();
    withdrawn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_run_in_order_and_the_close_waits_for_them() {
        let c = Conversation::new(Duration::from_secs(60));
        assert_eq!(c.send("a".into(), false).unwrap().turn, 2);
        assert_eq!(c.send("b".into(), false).unwrap().turn, 3);
        c.close();
        assert_eq!(c.send("late".into(), false), Err(Ended));
        assert_eq!(
            c.next().await,
            Next::Message(Message {
                turn: 2,
                text: "a".into()
            })
        );
        assert!(matches!(c.next().await, Next::Message(Message { turn: 3, .. })));
        assert_eq!(c.next().await, Next::Close { idle: false });
    }

    #[tokio::test]
    async fn an_interrupt_stops_the_running_turn_and_goes_ahead_of_the_queue() {
        let c = Conversation::new(Duration::from_secs(60));
        let running = c.begin_turn();
        c.send("queued".into(), false).unwrap();
        let sent = c.send("stop".into(), true).unwrap();
        assert_eq!(
            sent,
            Sent {
                turn: 3,
                withdrawn: vec![2]
            }
        );
        assert!(running.is_cancelled());
        assert_eq!(c.take_withdrawn(), vec![2]);
        assert!(c.take_withdrawn().is_empty());
        assert!(matches!(c.next().await, Next::Message(Message { turn: 3, .. })));
        assert!(
            !c.begin_turn().is_cancelled(),
            "the next turn starts with a fresh interrupt"
        );
    }

    #[tokio::test]
    async fn an_interrupt_without_a_message_leaves_the_conversation_waiting() {
        let c = Conversation::new(Duration::from_secs(60));
        let running = c.begin_turn();
        c.send("queued".into(), false).unwrap();
        assert_eq!(c.interrupt(), Ok(vec![2]));
        assert!(running.is_cancelled());
        c.close();
        assert_eq!(c.next().await, Next::Close { idle: false });
        assert_eq!(c.interrupt(), Err(Ended));
    }

    #[test]
    fn an_interrupt_before_the_first_turn_began_stops_that_turn() {
        let c = Conversation::new(Duration::from_secs(60));
        assert_eq!(c.interrupt(), Ok(vec![]));
        assert!(
            c.begin_turn().is_cancelled(),
            "the first turn was interrupted while the job cloned"
        );
        assert!(!c.begin_turn().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn no_message_within_the_idle_window_closes_it() {
        let c = Conversation::new(Duration::from_secs(5));
        assert_eq!(c.next().await, Next::Close { idle: true });
        assert!(c.send("too late".into(), false).is_err());
    }

    #[tokio::test]
    async fn a_message_sent_while_waiting_wakes_the_wait() {
        let c = std::sync::Arc::new(Conversation::new(Duration::from_secs(60)));
        let waiting = tokio::spawn({
            let c = c.clone();
            async move { c.next().await }
        });
        tokio::task::yield_now().await;
        c.send("hello".into(), false).unwrap();
        assert!(matches!(waiting.await.unwrap(), Next::Message(Message { turn: 2, .. })));
    }
}
