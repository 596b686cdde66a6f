//! The protocol's clock: one seam for the time that the mesh, the node's housekeeping,
//! the store's heat decay and custody leases follow. In a normal build `now` is
//! `std::time::Instant::now()` (tokio's `Instant` wraps std's) and `unix_now` the system
//! clock; under tokio's `test-util` with a paused runtime (`start_paused`), both follow
//! the runtime's simulated clock, which is how `sim` runs a mesh for hours of protocol
//! time in seconds. HTTP signature timestamps (`identity`, `client::verify_reply`, the
//! routes) stay on the system clock: they are checked against other machines' clocks.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio::time::Instant;

/// The protocol's monotonic now (simulated under a paused tokio clock).
pub fn now() -> Instant {
    Instant::now()
}

/// Seconds since the Unix epoch, in protocol time: the system clock read once, plus the
/// time `now` has moved since. In a normal build that tracks the system clock (minus
/// any jump of the system clock after the first call, which protocol time should not
/// follow anyway); under a paused clock it advances with simulated time.
pub fn unix_now() -> u64 {
    static BASE: OnceLock<(u64, Instant)> = OnceLock::new();
    let (secs, at) = *BASE.get_or_init(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (secs, Instant::now())
    });
    secs + Instant::now().saturating_duration_since(at).as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unix_now_is_close_to_the_system_clock() {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(unix_now().abs_diff(system) <= 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_moves_protocol_time() {
        let (before, at) = (unix_now(), now());
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(now().duration_since(at) >= Duration::from_secs(3600));
        assert!(unix_now() >= before + 3600);
    }
}
