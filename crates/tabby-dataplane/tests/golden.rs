//! Golden files of rendered nft scripts: a full script, then the incremental script of one
//! change set. `TABBY_BLESS=1 cargo test -p tabby-dataplane --test golden` rewrites them; review
//! the diff before committing.

#[path = "util/deltas.rs"]
mod deltas;
#[path = "util/scenario.rs"]
mod scenario;

use std::path::PathBuf;

use tabby_dataplane::{Config, FakeNft, NftTable};

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var("TABBY_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with TABBY_BLESS=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering, first at line {}:\n  golden: {:?}\n  now:    {:?}\n\
             (TABBY_BLESS=1 regenerates it)",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn three_workloads_full_then_incremental() {
    let mut table = NftTable::new(Config::default());
    let mut nft = FakeNft::default();
    for d in scenario::initial() {
        table.apply(&d);
    }
    table.sync(&mut nft).expect("fake never fails");
    for d in scenario::update() {
        table.apply(&d);
    }
    table.sync(&mut nft).expect("fake never fails");
    assert_eq!(nft.scripts.len(), 2);
    golden("three_workloads_full.nft", &nft.scripts[0]);
    golden("three_workloads_update.nft", &nft.scripts[1]);
}

#[test]
fn named_ports_networks_and_tiers() {
    let mut table = NftTable::new(Config::default());
    for d in scenario::rich() {
        table.apply(&d);
    }
    golden("rich_full.nft", &table.full_script());
}
