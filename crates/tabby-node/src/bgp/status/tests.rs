use super::Md5Drops;

/// The shape of `/proc/net/netstat`: name and value lines in pairs per group.
fn netstat(failure: u64, not_found: u64, unexpected: u64) -> String {
    format!(
        "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure TCPAckCompressed\n\
         TcpExt: 7 {not_found} {unexpected} {failure} 3\n\
         IpExt: InNoRoutes InTruncatedPkts\n\
         IpExt: 0 0\n"
    )
}

#[test]
fn md5_drop_counters_are_read_by_name_and_absent_when_all_zero() {
    assert_eq!(
        Md5Drops::parse(&netstat(12, 1, 2)),
        Some(Md5Drops {
            wrong: 12,
            missing: 1,
            unexpected: 2
        })
    );
    assert_eq!(Md5Drops::parse(&netstat(0, 0, 0)), None);
    assert_eq!(Md5Drops::parse("IpExt: InNoRoutes\nIpExt: 4\n"), None);
    assert_eq!(Md5Drops::parse(""), None);
}
