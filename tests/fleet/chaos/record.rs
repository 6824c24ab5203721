//! What one chaos client saw, and what is wrong with it.

/// What one client saw.
#[derive(Default)]
pub(super) struct Record {
    pub(super) job: String,
    /// Every event id received, in order, over all its connections.
    pub(super) ids: Vec<u64>,
    /// The terminal events received, as (id, `completed` or the error's code).
    pub(super) terminals: Vec<(u64, String)>,
    pub(super) queued: usize,
    pub(super) cuts: usize,
    pub(super) queued_cuts: usize,
    pub(super) reconnects: usize,
    pub(super) refused: usize,
    /// Streams opened after the terminal event that ended without an event, instead of a 204.
    pub(super) empty_after_terminal: usize,
    /// Its connections, for the report.
    pub(super) trail: Vec<String>,
    /// Why it stopped short, or what went wrong after its terminal event.
    pub(super) failure: Option<String>,
}

impl Record {
    /// What is wrong with this job: its stream (ids not exactly 0..=terminal once each in order, not one terminal
    /// event, a terminal other than `completed`), its CLI not started exactly once (`ran`: a line per start), or
    /// the store not listing it once with the terminal its client got.
    pub(super) fn faults(&self, ran: &[String], listed: Option<&Vec<Option<String>>>) -> Vec<String> {
        let mut faults: Vec<String> = self.failure.iter().cloned().collect();
        match self.terminals.as_slice() {
            [] => faults.push("no terminal event".into()),
            [(id, code)] => {
                if self.ids != (0..=*id).collect::<Vec<_>>() {
                    faults.push(id_faults(&self.ids, *id));
                }
                if code != "completed" {
                    faults.push(format!("terminal `{code}` (id {id})"));
                }
            }
            many => faults.push(format!("{} terminal events: {many:?}", many.len())),
        }
        if ran.len() != 1 {
            faults.push(format!("its CLI started {} times: {ran:?}", ran.len()));
        }
        let code = self.terminals.first().map(|(_, code)| code.clone());
        if listed != Some(&vec![code.clone()]) {
            faults.push(format!("the store lists it as {listed:?}, its client got {code:?}"));
        }
        faults
    }
}

/// Missing, repeated and out-of-order ids against 0..=terminal.
fn id_faults(ids: &[u64], terminal: u64) -> String {
    let missing: Vec<u64> = (0..=terminal).filter(|id| !ids.contains(id)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let repeated: Vec<u64> = ids.iter().copied().filter(|id| !seen.insert(*id)).collect();
    let backwards: Vec<(u64, u64)> = ids.windows(2).filter(|w| w[1] <= w[0]).map(|w| (w[0], w[1])).collect();
    format!(
        "ids {} against 0..={terminal}: missing {missing:?}, repeated {repeated:?}, out of order {backwards:?}",
        ranges(ids)
    )
}

/// `0-5,3-13` for a run of ids that went back to 3 after 5.
pub(super) fn ranges(ids: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut start = None;
    for (i, id) in ids.iter().enumerate() {
        let first = *start.get_or_insert(*id);
        if ids.get(i + 1) != Some(&(id + 1)) {
            parts.push(if first == *id {
                id.to_string()
            } else {
                format!("{first}-{id}")
            });
            start = None;
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}
