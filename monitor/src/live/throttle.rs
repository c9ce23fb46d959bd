//! One log line for many repeated events: the agent's servers, the alert
//! sink and the webhook all warn this way, so a flood of failures is
//! counted rather than written out line by line.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Rate-limits a log line about repeated events: the first event is
/// reported at once, later ones at most once per interval, with how many
/// there were since the last report.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle { every, state: Mutex::new(ThrottleState { last: None, since: 0 }) }
    }

    /// Counts one event. `Some(n)` when a line is due: `n` events since
    /// the last one, this one included.
    pub fn hit(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.since += 1;
        Self::due(&mut st, self.every)
    }

    /// `Some(n)` when events are unreported and a line is due.
    pub fn pending(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.since == 0 {
            return None;
        }
        Self::due(&mut st, self.every)
    }

    fn due(st: &mut ThrottleState, every: Duration) -> Option<u64> {
        if st.last.is_none_or(|t| t.elapsed() >= every) {
            st.last = Some(Instant::now());
            Some(std::mem::take(&mut st.since))
        } else {
            None
        }
    }
}
