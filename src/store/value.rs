//! What a block is worth keeping (DESIGN 6): its decayed request count ("heat") plus a
//! bonus when it lies in this node's part of the id space. Eviction removes the least
//! valuable blocks first; a push from a peer is taken only when it is worth more than
//! what it would displace. Pure arithmetic: no I/O, no locks.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Instant;

use crate::id::BlockId;

/// Default half-life of a request's weight: a block asked for once an hour ago counts
/// half as much as one asked for now.
pub const DEFAULT_HALF_LIFE: Duration = Duration::from_secs(3600);

/// Value added to blocks in this node's own region of the id space. Worth two recent
/// requests: the node that lookups reach first for a block keeps it over a block that
/// was asked for once, but not over a popular one.
pub const NEAR_BONUS: f32 = 2.0;

/// Time unit of heat stamps: a tenth of a second (a `u32` of them lasts 13 years).
const TICK: Duration = Duration::from_millis(100);

/// Decay clock and the node's place in the id space; shared by every entry of an index.
#[derive(Debug)]
pub struct Valuer {
    epoch: Instant,
    half_life_ticks: f32,
    /// The node id (set once the identity is loaded; the zero id until then).
    home: OnceLock<BlockId>,
    /// Blocks sharing at least this many leading bits with `home` get `NEAR_BONUS`.
    /// 0 (everything near) until the mesh knows enough peers to narrow it.
    near_bits: AtomicU32,
}

impl Valuer {
    /// A valuer with requests decaying by `half_life`.
    pub fn new(half_life: Duration) -> Valuer {
        Valuer {
            epoch: Instant::now(),
            half_life_ticks: (half_life.as_secs_f32() / TICK.as_secs_f32()).max(1.0),
            home: OnceLock::new(),
            near_bits: AtomicU32::new(0),
        }
    }

    /// Sets the node id that nearness is measured from; later calls are ignored.
    pub fn set_home(&self, home: BlockId) {
        let _ = self.home.set(home);
    }

    /// Narrows (or widens) this node's region: blocks with at least `bits` leading bits
    /// in common with the node id are "near".
    pub fn set_near_bits(&self, bits: u32) {
        self.near_bits.store(bits.min(256), Ordering::Relaxed);
    }

    /// The current width of the near region in bits.
    pub fn near_bits(&self) -> u32 {
        self.near_bits.load(Ordering::Relaxed)
    }

    /// The clock now, in ticks.
    pub fn now(&self) -> u32 {
        let ticks = self.epoch.elapsed().as_millis() / TICK.as_millis();
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// `heat` decayed to tick `now`.
    pub fn heat_at(&self, heat: &AtomicU64, now: u32) -> f32 {
        let (value, stamp) = unpack(heat.load(Ordering::Relaxed));
        self.decay(value, stamp, now)
    }

    /// Adds `amount` requests' worth of heat at tick `now`.
    pub fn add_heat(&self, heat: &AtomicU64, amount: f32, now: u32) {
        // A lost race between two requests loses one of them; the CAS makes that rare.
        let _ = heat.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |packed| {
            let (value, stamp) = unpack(packed);
            Some(pack(self.decay(value, stamp, now) + amount, now))
        });
    }

    /// A fresh heat cell holding `amount` at tick `now`.
    pub fn new_heat(&self, amount: f32, now: u32) -> AtomicU64 {
        AtomicU64::new(pack(amount, now))
    }

    /// The bonus of `id` for lying in this node's region, plus a small tie-breaker that
    /// prefers nearer blocks among equals (at most a quarter of a request).
    pub fn nearness(&self, id: &BlockId) -> f32 {
        let bits = id.match_score(self.home.get().unwrap_or(&BlockId([0; 32])));
        let bonus = if bits >= self.near_bits() {
            NEAR_BONUS
        } else {
            0.0
        };
        bonus + bits.min(64) as f32 / 256.0
    }

    /// What block `id` with `heat` is worth at tick `now`.
    pub fn value(&self, id: &BlockId, heat: &AtomicU64, now: u32) -> f32 {
        self.heat_at(heat, now) + self.nearness(id)
    }

    fn decay(&self, value: f32, stamp: u32, now: u32) -> f32 {
        let age = now.saturating_sub(stamp) as f32;
        value * (-age / self.half_life_ticks).exp2()
    }
}

fn pack(value: f32, stamp: u32) -> u64 {
    (u64::from(value.max(0.0).to_bits()) << 32) | u64::from(stamp)
}

fn unpack(packed: u64) -> (f32, u32) {
    (f32::from_bits((packed >> 32) as u32), packed as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_halves_every_half_life_and_adds_up() {
        let v = Valuer::new(Duration::from_secs(10));
        let heat = v.new_heat(4.0, 0);
        assert!((v.heat_at(&heat, 0) - 4.0).abs() < 1e-6);
        assert!((v.heat_at(&heat, 100) - 2.0).abs() < 1e-4);
        assert!((v.heat_at(&heat, 200) - 1.0).abs() < 1e-4);
        v.add_heat(&heat, 1.0, 100);
        assert!((v.heat_at(&heat, 100) - 3.0).abs() < 1e-4);
        assert!((v.heat_at(&heat, 200) - 1.5).abs() < 1e-4);
        // A stamp in the future (never written, but harmless) does not grow heat.
        assert!(v.heat_at(&heat, 50) <= 3.0 + 1e-4);
    }

    #[test]
    fn near_blocks_get_the_bonus_only_inside_the_region() {
        let v = Valuer::new(DEFAULT_HALF_LIFE);
        v.set_home(BlockId([0; 32]));
        let mut near = [0u8; 32];
        near[1] = 0x01; // 15 leading bits in common
        let mut far = [0u8; 32];
        far[0] = 0x80; // none in common
        let (near, far) = (BlockId(near), BlockId(far));
        assert!(v.nearness(&near) >= NEAR_BONUS && v.nearness(&far) >= NEAR_BONUS);
        v.set_near_bits(8);
        assert!(v.nearness(&near) >= NEAR_BONUS);
        assert!(v.nearness(&far) < 0.1);
        v.set_near_bits(16);
        assert!(v.nearness(&near) < NEAR_BONUS);
        assert!(
            v.nearness(&near) > v.nearness(&far),
            "tie-breaker prefers nearer"
        );
    }
}
