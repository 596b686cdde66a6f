//! Giving the heap's free memory back to the operating system after a burst. glibc's
//! allocator keeps what a burst freed (10,000 connections' buffers, say) in its arenas
//! for reuse: on a quiet node that stays resident for good. `Bursts` tells from the
//! server's activity when a burst has just ended, and `release_free_memory` then hands
//! the free pages back. Knows nothing of HTTP or the node; the server calls it.

/// Activity (connections opened and closed, requests answered) in one housekeeping tick
/// below which nothing counts as a burst: a trim after a handful of requests would only
/// make the next few fault their pages in again.
pub const MIN_BURST: u64 = 64;

/// How much quieter than the busiest tick since the last release a tick must be for the
/// burst to count as over: a quarter, so steady load never triggers a release (its free
/// memory is about to be reused) while the end of a burst does.
pub const QUIET_SHARE: u64 = 4;

/// Watches the activity of each housekeeping tick for the end of a burst.
#[derive(Debug, Default)]
pub struct Bursts {
    busiest: u64,
}

impl Bursts {
    /// Records one tick's `activity`; true when a burst (a tick of at least `MIN_BURST`
    /// since the last true, counting that tick) has just ended: this tick saw at most a
    /// `QUIET_SHARE`th of the busiest. Then the count starts again from this tick.
    pub fn tick(&mut self, activity: u64) -> bool {
        self.busiest = self.busiest.max(activity);
        if self.busiest >= MIN_BURST && activity.saturating_mul(QUIET_SHARE) <= self.busiest {
            self.busiest = activity;
            true
        } else {
            false
        }
    }
}

/// Returns the allocator's free pages to the operating system (glibc's `malloc_trim`,
/// which walks every arena and also releases free pages inside them, not only at their
/// top). True if memory was released. Takes a few milliseconds on a large heap: call it
/// off the async workers. Does nothing on other C libraries (musl gives memory back by
/// itself).
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` takes no pointers and only works on glibc's own arenas
        // under their locks, so it is safe to call from any thread at any time; 0 asks
        // to keep no padding at the heap's top. Rust's global allocator on this target
        // is glibc's malloc, so this is the heap the program uses.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Arenas a client command's allocator keeps at most: glibc's default is eight per
/// core, and each keeps its own free memory, so a backup's encoding threads each held
/// their own few MiB of spare buffers.
pub const CLIENT_ARENAS: i32 = 2;

/// Keeps a client command's heap nearer what it uses: at most `CLIENT_ARENAS` arenas.
/// (Fixing glibc's mmap threshold at 1 MiB as well, so large buffers are given back
/// when freed, made the first backup of the benchmark tree cost 50% more CPU in page
/// faults for no measurable gain in peak memory: not done.) Call it first, before other
/// threads exist.
pub fn fix_client_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` takes two integers and no pointers; it sets glibc's malloc
        // parameters under its own lock, and is called here once, at start, before the
        // runtime's threads exist. The value is within glibc's accepted range (at
        // least one arena).
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, CLIENT_ARENAS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_follows_the_end_of_each_burst_only() {
        let mut bursts = Bursts::default();
        // A trickle is never a burst.
        assert!((0..20).all(|i| !bursts.tick(i % 3)));
        // A burst: nothing while it lasts or slows a little; a release once it is
        // over, and one more for its tail; then nothing while the node is quiet.
        let seen: Vec<bool> = [5000, 3000, 4000, 2000, 900, 0, 0, 0]
            .into_iter()
            .map(|a| bursts.tick(a))
            .collect();
        assert_eq!(seen, [false, false, false, false, true, true, false, false]);
        // Steady load is not a burst ending; its end is.
        assert!((0..10).all(|_| !bursts.tick(400)));
        assert!(bursts.tick(100));
        assert!(!bursts.tick(100));
        // A second burst is released again.
        assert!(!bursts.tick(10_000));
        assert!(bursts.tick(3));
    }

    #[test]
    fn releasing_free_memory_is_harmless() {
        let freed: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 256 << 10]).collect();
        drop(freed);
        release_free_memory();
        release_free_memory();
        assert_eq!(
            vec![7u8; 1 << 20]
                .iter()
                .map(|&b| b as usize)
                .sum::<usize>(),
            7 << 20
        );
    }
}
