use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn none(_: IpAddr) -> bool {
    false
}

#[test]
fn a_new_block_hands_out_addresses_in_order_and_released_ones_last() {
    let mut b = Block::new("10.0.0.64/26".parse().unwrap(), Some("n1".into()));
    assert_eq!(b.size(), 64);
    let attrs = BTreeMap::new();
    let first = b.allocate("h1", &attrs, &none).unwrap();
    let second = b.allocate("h2", &attrs, &none).unwrap();
    assert_eq!(first, "10.0.0.64".parse::<IpAddr>().unwrap());
    assert_eq!(second, "10.0.0.65".parse::<IpAddr>().unwrap());
    b.release(first, None).unwrap();
    // FIFO: the released address waits behind the 62 that were never used.
    let mut last = None;
    for _ in 0..63 {
        last = b.allocate("h3", &attrs, &none);
    }
    assert_eq!(last, Some(first));
    assert_eq!(b.allocate("h4", &attrs, &none), None);
}

#[test]
fn reserved_addresses_are_skipped_but_stay_free() {
    let mut b = Block::new("10.0.0.0/30".parse().unwrap(), None);
    let reserved = |ip: IpAddr| ip == "10.0.0.0".parse::<IpAddr>().unwrap();
    assert_eq!(b.free(&reserved), 3);
    let ip = b.allocate("h", &BTreeMap::new(), &reserved).unwrap();
    assert_eq!(ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert!(b.unallocated.contains(&0));
}

#[test]
fn a_release_with_a_stale_sequence_number_is_refused() {
    let mut b = Block::new("10.0.0.0/30".parse().unwrap(), None);
    let attrs = BTreeMap::new();
    let ip = b.allocate_ip("10.0.0.2".parse().unwrap(), "old", &attrs);
    assert_eq!(ip, Ok(()));
    let old_seq = b.allocations[&2].sequence;
    b.release("10.0.0.2".parse().unwrap(), Some(old_seq))
        .unwrap();
    b.allocate_ip("10.0.0.2".parse().unwrap(), "new", &attrs)
        .unwrap();
    let late = b.release("10.0.0.2".parse().unwrap(), Some(old_seq));
    assert!(matches!(late, Err(ReleaseError::BadSequence { .. })));
    assert_eq!(b.allocations[&2].handle, "new");
    assert!(matches!(
        b.allocate_ip("10.0.0.2".parse().unwrap(), "x", &attrs),
        Err(TakeError::Taken(a)) if a.handle == "new"
    ));
    assert_eq!(
        b.allocate_ip("10.0.1.2".parse().unwrap(), "x", &attrs),
        Err(TakeError::Outside)
    );
}

#[test]
fn ipv6_blocks_address_by_ordinal() {
    let b = Block::new("fd00::40/122".parse().unwrap(), None);
    assert_eq!(b.size(), 64);
    assert_eq!(b.ip_at(3), "fd00::43".parse::<IpAddr>().unwrap());
    assert_eq!(b.ordinal_of("fd00::7f".parse().unwrap()), Some(63));
    assert_eq!(b.ordinal_of("fd00::80".parse().unwrap()), None);
    assert_eq!(b.ordinal_of("10.0.0.1".parse().unwrap()), None);
}

#[test]
fn records_round_trip_through_json() {
    let mut b = Block::new("10.1.0.0/28".parse().unwrap(), Some("n".into()));
    b.allocate("h", &BTreeMap::from([("pod".into(), "p".into())]), &none);
    let text = serde_json::to_string(&b).unwrap();
    assert!(text.contains("\"cidr\":\"10.1.0.0/28\""), "{text}");
    let back: Block = serde_json::from_str(&text).unwrap();
    assert_eq!(back, b);
    assert_eq!(block_name(b.cidr), "10-1-0-0-28");
    assert_eq!(affinity_key("n", b.cidr).namespace, "n");
}

#[derive(Debug, Clone)]
enum Step {
    Allocate(u8),
    AllocateIp(u8, u8),
    Release(u8),
    ReleaseHandle(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4).prop_map(Step::Allocate),
        (0u8..4, 0u8..16).prop_map(|(h, o)| Step::AllocateIp(h, o)),
        (0u8..16).prop_map(Step::Release),
        (0u8..4).prop_map(Step::ReleaseHandle),
    ]
}

proptest! {
    /// Against a plain map of address to handle: the block never hands out an address twice,
    /// frees exactly what it is told, and free + allocated always cover the block.
    #[test]
    fn block_matches_a_reference_map(steps in proptest::collection::vec(step(), 0..80)) {
        let mut b = Block::new("10.9.0.0/28".parse().unwrap(), None);
        let mut model: BTreeMap<IpAddr, String> = BTreeMap::new();
        let attrs = BTreeMap::new();
        let mut last_seq = 0;
        for s in steps {
            match s {
                Step::Allocate(h) => {
                    let got = b.allocate(&format!("h{h}"), &attrs, &none);
                    match got {
                        Some(ip) => {
                            prop_assert!(!model.contains_key(&ip), "{ip} handed out twice");
                            model.insert(ip, format!("h{h}"));
                        }
                        None => prop_assert_eq!(model.len(), 16),
                    }
                }
                Step::AllocateIp(h, o) => {
                    let ip = b.ip_at(u32::from(o));
                    let got = b.allocate_ip(ip, &format!("h{h}"), &attrs);
                    prop_assert_eq!(got.is_ok(), !model.contains_key(&ip));
                    model.entry(ip).or_insert_with(|| format!("h{h}"));
                }
                Step::Release(o) => {
                    let ip = b.ip_at(u32::from(o));
                    let got = b.release(ip, None);
                    prop_assert_eq!(got.is_ok(), model.remove(&ip).is_some());
                }
                Step::ReleaseHandle(h) => {
                    let freed: BTreeSet<IpAddr> =
                        b.release_handle(&format!("h{h}")).into_iter().collect();
                    let expected: BTreeSet<IpAddr> = model
                        .iter()
                        .filter(|(_, v)| **v == format!("h{h}"))
                        .map(|(k, _)| *k)
                        .collect();
                    prop_assert_eq!(&freed, &expected);
                    model.retain(|_, v| *v != format!("h{h}"));
                }
            }
            prop_assert!(b.sequence_number >= last_seq);
            last_seq = b.sequence_number;
            let allocated: BTreeMap<IpAddr, String> = b
                .allocations
                .iter()
                .map(|(o, a)| (b.ip_at(*o), a.handle.clone()))
                .collect();
            prop_assert_eq!(&allocated, &model);
            let free: BTreeSet<u32> = b.unallocated.iter().copied().collect();
            prop_assert_eq!(free.len(), b.unallocated.len(), "a free ordinal listed twice");
            prop_assert_eq!(free.len() + b.allocations.len(), 16);
        }
    }
}
