//! The cost of one backup index key derivation (Argon2id at the defaults a new set
//! gets, see `backup::key`), against the first format's SHA-256, on this machine.
//!
//!     cargo run --release --example kdf_cost [ROUNDS]
//!
//! Prints the median and the spread of ROUNDS derivations (default 5).

use std::time::Instant;

use libernet::backup::key::{DEFAULT_M_KIB, DEFAULT_P, DEFAULT_T, Kdf};
use libernet::codec::Key;

fn main() -> anyhow::Result<()> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 5,
    };
    let kdf = Kdf::fresh()?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        std::hint::black_box(kdf.derive("correct horse battery staple")?);
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let started = Instant::now();
    const SHA_ROUNDS: u32 = 100_000;
    for i in 0..SHA_ROUNDS {
        std::hint::black_box(Key::from_passphrase(&format!("guess {i}")));
    }
    let sha = started.elapsed().as_secs_f64() / f64::from(SHA_ROUNDS);
    println!(
        "Argon2id m={} MiB t={DEFAULT_T} p={DEFAULT_P}: median {:.3} s over {} derivations \
         (min {:.3}, max {:.3}); SHA-256 of a passphrase: {:.2} us; ratio {:.0}x",
        DEFAULT_M_KIB / 1024,
        median,
        times.len(),
        times[0],
        times[times.len() - 1],
        sha * 1e6,
        median / sha
    );
    Ok(())
}
