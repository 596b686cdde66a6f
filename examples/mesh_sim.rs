//! The mesh at scale, simulated (docs/mesh.md "Simulation"): N real nodes in one
//! process over `libernet::sim`'s network, on a paused tokio clock, with churn and a
//! Zipf read workload. Prints the figures as a table, and as JSON with `--json`.
//!
//! `cargo run --release --example mesh_sim -- --nodes 1000 --seed 1`

use std::time::Duration;

use clap::Parser;
use libernet::sim::{self, Config};

/// Runs a simulated mesh and prints its figures.
#[derive(Parser, Debug)]
struct Args {
    /// Seed of ids, workload and faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Nodes at the start (1000 and more use the benchmark sizes).
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Blocks of the read workload (default: 100,000 at 1000 nodes, 400 at 50).
    #[arg(long)]
    blocks: Option<usize>,
    /// Kept blocks (default: 5,000 at 1000 nodes).
    #[arg(long)]
    kept: Option<usize>,
    /// Rounds of reads and churn.
    #[arg(long)]
    rounds: Option<usize>,
    /// Simulated seconds per round.
    #[arg(long)]
    round_secs: Option<u64>,
    /// Reads per round.
    #[arg(long)]
    reads: Option<usize>,
    /// Share of the starting nodes removed over the run.
    #[arg(long)]
    remove: Option<f64>,
    /// Share of asks lost.
    #[arg(long)]
    loss: Option<f64>,
    /// Print the report as JSON too.
    #[arg(long)]
    json: bool,
}

fn main() {
    let args = Args::parse();
    let mut cfg = if args.nodes >= 500 {
        Config::large(args.seed)
    } else {
        Config::small(args.seed)
    };
    cfg.nodes = args.nodes;
    cfg.progress = true;
    if let Some(b) = args.blocks {
        cfg.blocks = b;
    }
    if let Some(k) = args.kept {
        cfg.kept = k;
    }
    if let Some(r) = args.rounds {
        cfg.rounds = r;
    }
    if let Some(s) = args.round_secs {
        cfg.round = Duration::from_secs(s);
    }
    if let Some(r) = args.reads {
        cfg.reads_per_round = r;
    }
    if let Some(r) = args.remove {
        cfg.remove_share = r;
    }
    if let Some(l) = args.loss {
        cfg.loss = l;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mesh_sim: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let report = runtime.block_on(sim::run(cfg));
    print!("{}", report.table());
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("mesh_sim: {e}"),
        }
    }
}
