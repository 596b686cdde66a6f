//! The simulated mesh at CI size (issue 14): 50 real nodes in one process on a paused
//! clock, a fixed seed, node loss (30%), restarts with and without the store, a
//! partition, joins and 1% message loss. Asserts the invariants, never timings.

use libernet::sim::{self, Config};

#[test]
fn fifty_nodes_keep_what_they_are_trusted_with_and_find_what_is_held() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let report = runtime.block_on(sim::run(Config::small(14)));
    let table = report.table();
    eprintln!("{table}");
    assert_eq!(report.nodes_start, 50);
    assert_eq!(report.removed, 15, "{table}");
    assert!(report.reads_eligible_unpartitioned > 500, "{table}");
    // No kept block is lost after the node losses, up to the repair the mesh does.
    assert_eq!(report.kept_lost, 0, "{table}");
    // And repair puts every kept block back on three live nodes (custody's R) by the
    // end of the run.
    assert_eq!(report.kept_under_replicated, 0, "{table}");
    // Every lookup of a block some live, connected node holds succeeds, outside the
    // round with a partition: there, a lookup's first asks go to peers across the cut,
    // which stay silent until the lookup's deadline (docs/mesh.md "Simulation").
    assert_eq!(
        report.reads_eligible_unpartitioned_found, report.reads_eligible_unpartitioned,
        "{table}"
    );
    // A read cannot find a block no reachable node holds (checks the bookkeeping).
    assert_eq!(report.reads_ineligible_found, 0, "{table}");
    // Blocks read in the last round are still held somewhere.
    assert_eq!(report.last_round_requested_lost, 0, "{table}");
}
