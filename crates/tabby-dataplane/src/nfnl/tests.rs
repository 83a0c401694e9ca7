//! Byte-exact encoding, derived by hand from the uapi headers (and checked against what
//! `nft --debug=netlink,mnl` prints for the same elements), and the reading of answers.
//! Netlink headers are host-endian; these expectations are for a little-endian host.

#![cfg(target_endian = "little")]

use std::net::IpAddr;

use super::codec::check_replies;
use super::{ElementBatch, ElementKey, ElementOp, Reply, SetChange, encode, parse_replies};
use crate::apply::NftError;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid")
}

fn one_add() -> ElementBatch {
    ElementBatch {
        table: "tabby".to_owned(),
        changes: vec![SetChange {
            set: "s4_ab".to_owned(),
            op: ElementOp::Add,
            keys: vec![ElementKey::Addr(ip("10.0.0.2"))],
        }],
    }
}

const BEGIN_SEQ_7: [u8; 20] = [
    20, 0, 0, 0, // length
    16, 0, // NFNL_MSG_BATCH_BEGIN
    1, 0, // NLM_F_REQUEST
    7, 0, 0, 0, // seq
    0, 0, 0, 0, // port
    0, 0, 0, 10, // AF_UNSPEC, NFNETLINK_V0, res_id NFNL_SUBSYS_NFTABLES (big-endian)
];

#[test]
fn keys_fill_whole_registers_in_network_order() {
    assert_eq!(ElementKey::Addr(ip("10.0.0.2")).bytes(), [10, 0, 0, 2]);
    assert_eq!(
        ElementKey::Addr(ip("fd00::1")).bytes(),
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    );
    // nft prints `element 0100000a 00000006 00005000` for `10.0.0.1 . 6 . 80`.
    assert_eq!(
        ElementKey::AddrProtoPort {
            addr: ip("10.0.0.1"),
            protocol: 6,
            port: 80
        }
        .bytes(),
        [10, 0, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]
    );
    // ... and `000000fd 00000000 00000000 01000000 00000011 00003500` for
    // `fd00::1 . 17 . 53`.
    let v6 = ElementKey::AddrProtoPort {
        addr: ip("fd00::1"),
        protocol: 17,
        port: 0x1234,
    }
    .bytes();
    assert_eq!(v6.len(), 24);
    assert_eq!(v6[16..], [17, 0, 0, 0, 0x12, 0x34, 0, 0]);
}

#[test]
fn one_added_address_is_begin_newsetelem_end() {
    let mut want = BEGIN_SEQ_7.to_vec();
    want.extend_from_slice(&[
        64, 0, 0, 0, // length: 16 + 4 + 12 + 12 + 20
        0x0c, 0x0a, // NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM
        0x05, 0x04, // NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
        8, 0, 0, 0, // seq
        0, 0, 0, 0, // port
        1, 0, 0, 0, // NFPROTO_INET, v0, res_id 0
        10, 0, 1, 0, b't', b'a', b'b', b'b', b'y', 0, 0, 0, // NFTA_SET_ELEM_LIST_TABLE
        10, 0, 2, 0, b's', b'4', b'_', b'a', b'b', 0, 0, 0, // NFTA_SET_ELEM_LIST_SET
        20, 0, 3, 0x80, // NFTA_SET_ELEM_LIST_ELEMENTS, nested
        16, 0, 1, 0x80, // NFTA_LIST_ELEM, nested
        12, 0, 1, 0x80, // NFTA_SET_ELEM_KEY, nested
        8, 0, 1, 0, 10, 0, 0, 2, // NFTA_DATA_VALUE 10.0.0.2
    ]);
    want.extend_from_slice(&[
        20, 0, 0, 0, 17, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, // NFNL_MSG_BATCH_END
    ]);
    assert_eq!(encode(&one_add(), 7), want);
}

#[test]
fn deletes_and_named_ports_in_one_batch() {
    let batch = ElementBatch {
        table: "tabby".to_owned(),
        changes: vec![
            SetChange {
                set: "s6_x".to_owned(),
                op: ElementOp::Delete,
                keys: vec![
                    ElementKey::Addr(ip("fd00::1")),
                    ElementKey::Addr(ip("fd00::2")),
                ],
            },
            SetChange {
                set: "n4_yz".to_owned(),
                op: ElementOp::Add,
                keys: vec![ElementKey::AddrProtoPort {
                    addr: ip("10.0.0.1"),
                    protocol: 6,
                    port: 8080,
                }],
            },
        ],
    };
    let bytes = encode(&batch, 7);
    let mut want = BEGIN_SEQ_7.to_vec();
    // A 16-byte address: DATA_VALUE 20, KEY 24, LIST_ELEM 28; two of them in ELEMENTS: 60.
    want.extend_from_slice(&[
        104, 0, 0, 0, // 16 + 4 + 12 + 12 + 60
        0x0e, 0x0a, // NFT_MSG_DELSETELEM
        0x05, 0x00, // NLM_F_REQUEST | NLM_F_ACK
        8, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, // seq, port, nfgenmsg
        10, 0, 1, 0, b't', b'a', b'b', b'b', b'y', 0, 0, 0, //
        9, 0, 2, 0, b's', b'6', b'_', b'x', 0, 0, 0, 0, // 5-byte name, padded
        60, 0, 3, 0x80, //
        28, 0, 1, 0x80, 24, 0, 1, 0x80, 20, 0, 1, 0, //
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, //
        28, 0, 1, 0x80, 24, 0, 1, 0x80, 20, 0, 1, 0, //
        0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, //
    ]);
    // The named port: DATA_VALUE 16, KEY 20, LIST_ELEM 24, ELEMENTS 28.
    want.extend_from_slice(&[
        72, 0, 0, 0, // 16 + 4 + 12 + 12 + 28
        0x0c, 0x0a, 0x05, 0x04, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, //
        10, 0, 1, 0, b't', b'a', b'b', b'b', b'y', 0, 0, 0, //
        10, 0, 2, 0, b'n', b'4', b'_', b'y', b'z', 0, 0, 0, //
        28, 0, 3, 0x80, 24, 0, 1, 0x80, 20, 0, 1, 0x80, 16, 0, 1, 0, //
        10, 0, 0, 1, 6, 0, 0, 0, 0x1f, 0x90, 0, 0, // 10.0.0.1 . 6 . 8080
    ]);
    want.extend_from_slice(&[
        20, 0, 0, 0, 17, 0, 1, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10,
    ]);
    assert_eq!(bytes, want);
}

/// An acknowledgement as the kernel sends it with `NETLINK_CAP_ACK`: the request's header
/// only, and extended-ack attributes when `ext` is given.
fn ack(seq: u32, errno: i32, ext: Option<&[u8]>) -> Vec<u8> {
    let mut flags: u16 = 0x100;
    let mut tail = Vec::new();
    if let Some(text) = ext {
        flags |= 0x200;
        let len = 4 + text.len();
        tail.extend_from_slice(&(len as u16).to_le_bytes());
        tail.extend_from_slice(&1u16.to_le_bytes());
        tail.extend_from_slice(text);
        tail.resize((len + 3) & !3, 0);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&((36 + tail.len()) as u32).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&4242u32.to_le_bytes());
    out.extend_from_slice(&(-errno).to_le_bytes());
    // The request's header: length, type, flags, seq, port.
    out.extend_from_slice(&[64, 0, 0, 0, 0x0c, 0x0a, 0x05, 0x04]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&tail);
    out
}

#[test]
fn answers_are_read_per_message() {
    let mut datagram = ack(8, 0, None);
    datagram.extend(ack(9, 2, Some(b"bad key\0")));
    let replies = parse_replies(&datagram).expect("well formed");
    assert_eq!(
        replies,
        vec![
            Reply::Ack {
                seq: 8,
                errno: 0,
                message: None
            },
            Reply::Ack {
                seq: 9,
                errno: 2,
                message: Some("bad key".to_owned())
            },
        ]
    );
    assert!(parse_replies(&datagram[..30]).is_err());
    let mut lying = ack(8, 0, None);
    lying[0] = 200;
    assert!(parse_replies(&lying).is_err());
}

#[test]
fn every_message_must_be_acknowledged_with_zero() {
    let batch = one_add();
    let ok = [Reply::Ack {
        seq: 8,
        errno: 0,
        message: None,
    }];
    assert!(check_replies(&batch, 7, &ok).is_ok());

    let missing = check_replies(&batch, 7, &[]).expect_err("no ack");
    assert!(matches!(missing, NftError::NetlinkReply(_)), "{missing}");

    let refused = check_replies(
        &batch,
        7,
        &[Reply::Ack {
            seq: 8,
            errno: 2,
            message: Some("no such set".to_owned()),
        }],
    )
    .expect_err("refused");
    let text = refused.to_string();
    assert!(
        matches!(&refused, NftError::ElementsRejected { set, errno: 2, count: 1, op: ElementOp::Add, .. } if set == "s4_ab"),
        "{text}"
    );
    assert!(
        text.contains("s4_ab") && text.contains("inet tabby") && text.contains("no such set"),
        "{text}"
    );

    let whole = check_replies(
        &batch,
        7,
        &[Reply::Ack {
            seq: 7,
            errno: 1,
            message: None,
        }],
    )
    .expect_err("begin refused");
    assert!(
        matches!(whole, NftError::BatchRejected { errno: 1, .. }),
        "{whole}"
    );
}
