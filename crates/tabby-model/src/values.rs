//! Field value types shared by many kinds (ports, protocols, AS numbers) and the checks for the
//! string formats Calico and Kubernetes use (names, labels, CIDRs, selectors).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tabby_selector::Selector;

use crate::check::Checker;

/// Labels on a resource: key to value.
pub type Labels = BTreeMap<String, String>;

/// A field that YAML authors write either as a number or as a string (ports, protocols).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntOrString {
    /// Written as a number.
    Int(i64),
    /// Written as a string.
    String(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::String(s) => f.write_str(s),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(i) => s.serialize_i64(*i),
            Self::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("number {v} is too large")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IntOrString, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    #[expect(clippy::cast_possible_truncation, reason = "checked integral above")]
                    Ok(IntOrString::Int(v as i64))
                } else {
                    Err(E::custom(format!("expected an integer, found {v}")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A port in a rule as written: a number, a range `lo:hi`, or a named port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// One port number.
    Number(u16),
    /// An inclusive range.
    Range(u16, u16),
    /// A named port, resolved per endpoint.
    Named(String),
}

impl PortSpec {
    /// Parses a port field, returning the reason when it is not valid.
    pub fn parse(v: &IntOrString) -> Result<Self, String> {
        match v {
            IntOrString::Int(i) => u16::try_from(*i)
                .map(Self::Number)
                .map_err(|_| format!("port {i} is out of range 0-65535")),
            IntOrString::String(s) => {
                if let Some((lo, hi)) = s.split_once(':') {
                    let lo_n = parse_port_number(lo.trim())
                        .ok_or_else(|| format!("range {s} has an invalid start {lo:?}"))?;
                    let hi_n = parse_port_number(hi.trim())
                        .ok_or_else(|| format!("range {s} has an invalid end {hi:?}"))?;
                    if lo_n > hi_n {
                        return Err(format!("range {s} is reversed"));
                    }
                    Ok(Self::Range(lo_n, hi_n))
                } else if let Some(n) = parse_port_number(s) {
                    Ok(Self::Number(n))
                } else if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
                    Err(format!("port {s} is out of range 0-65535"))
                } else {
                    check_port_name(s)?;
                    Ok(Self::Named(s.clone()))
                }
            }
        }
    }
}

fn parse_port_number(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Checks a named port (IANA service name rules, as Kubernetes uses them).
pub fn check_port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is neither a port number, a range lo:hi, nor a valid port name \
             (1-15 lowercase letters, digits and single hyphens, with at least one letter)"
        ))
    }
}

/// An IP protocol as written in a rule: a name or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    IcmpV6,
    /// SCTP (132).
    Sctp,
    /// UDP-Lite (136).
    UdpLite,
    /// Any other protocol by number.
    Number(u8),
}

impl Protocol {
    /// Parses Calico's protocol field.
    pub fn parse(v: &IntOrString) -> Result<Self, String> {
        let p = match v {
            IntOrString::Int(i) => match u8::try_from(*i) {
                Ok(n) if n >= 1 => Self::from_number(n),
                _ => return Err(format!("protocol number {i} is out of range 1-255")),
            },
            IntOrString::String(s) => match s.as_str() {
                "TCP" | "tcp" => Self::Tcp,
                "UDP" | "udp" => Self::Udp,
                "ICMP" | "icmp" => Self::Icmp,
                "ICMPv6" | "icmpv6" => Self::IcmpV6,
                "SCTP" | "sctp" => Self::Sctp,
                "UDPLite" | "udplite" => Self::UdpLite,
                other => match other.parse::<u8>() {
                    Ok(n) if n >= 1 => Self::from_number(n),
                    _ => {
                        return Err(format!(
                            "unknown protocol {other:?}: use TCP, UDP, ICMP, ICMPv6, SCTP, \
                             UDPLite or a number 1-255"
                        ));
                    }
                },
            },
        };
        Ok(p)
    }

    fn from_number(n: u8) -> Self {
        match n {
            6 => Self::Tcp,
            17 => Self::Udp,
            1 => Self::Icmp,
            58 => Self::IcmpV6,
            132 => Self::Sctp,
            136 => Self::UdpLite,
            n => Self::Number(n),
        }
    }

    /// The protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Icmp => 1,
            Self::IcmpV6 => 58,
            Self::Sctp => 132,
            Self::UdpLite => 136,
            Self::Number(n) => n,
        }
    }

    /// Whether rules may name ports with this protocol.
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Sctp | Self::UdpLite)
    }
}

/// A BGP AS number, written as a number, a decimal string, or asdot `high.low`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsNumber(pub u32);

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrString::deserialize(d)? {
            IntOrString::Int(i) => u32::try_from(i)
                .ok()
                .filter(|n| *n != 0)
                .map(Self)
                .ok_or_else(|| {
                    de::Error::custom(format!("AS number {i} is out of range 1-4294967295"))
                }),
            IntOrString::String(s) => parse_as_number(&s).map(Self).map_err(de::Error::custom),
        }
    }
}

fn parse_as_number(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not an AS number (1-4294967295, or asdot high.low)");
    let n = if let Some((hi, lo)) = s.split_once('.') {
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        (u32::from(hi) << 16) | u32::from(lo)
    } else {
        s.parse().map_err(|_| bad())?
    };
    if n == 0 { Err(bad()) } else { Ok(n) }
}

/// Checks a resource name: lowercase DNS subdomain (what Calico and Kubernetes require).
pub fn check_name(c: &mut Checker, name: &str) {
    if let Err(reason) = dns_subdomain(name) {
        c.error(format!("name {name:?} {reason}"));
    }
}

/// Checks a DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`, at most 253 characters.
pub fn dns_subdomain(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > 253 {
        return Err("is longer than 253 characters");
    }
    let ok_chars = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    let ends_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !ok_chars || !ends_ok(s.as_bytes()[0]) || !ends_ok(s.as_bytes()[s.len() - 1]) {
        return Err(
            "must consist of lowercase letters, digits, '-' and '.', and start and end with a \
             letter or digit",
        );
    }
    Ok(())
}

/// Checks a DNS-1123 label (namespaces): like a subdomain without dots, at most 63 characters.
pub fn dns_label(s: &str) -> Result<(), &'static str> {
    dns_subdomain(s)?;
    if s.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if s.contains('.') {
        return Err("must not contain '.'");
    }
    Ok(())
}

/// Checks a map of labels against Kubernetes' rules for keys and values.
pub fn check_labels(c: &mut Checker, field: &str, labels: &Labels) {
    c.field(field, |c| {
        for (k, v) in labels {
            if let Err(reason) = label_key(k) {
                c.error(format!("label key {k:?} {reason}"));
            }
            if let Err(reason) = label_value(v) {
                c.error(format!("value {v:?} of label {k:?} {reason}"));
            }
        }
    });
}

fn label_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > 63 {
        return Err("must have a name part of 1-63 characters");
    }
    let mid_ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.';
    let b = s.as_bytes();
    if !b[0].is_ascii_alphanumeric()
        || !b[b.len() - 1].is_ascii_alphanumeric()
        || !b.iter().all(|&x| mid_ok(x))
    {
        return Err(
            "must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit",
        );
    }
    Ok(())
}

/// Checks a Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name.
pub fn label_key(k: &str) -> Result<(), &'static str> {
    match k.split_once('/') {
        Some((prefix, name)) => {
            dns_subdomain(prefix).map_err(|_| "has an invalid prefix (must be a DNS subdomain)")?;
            label_name(name)
        }
        None => label_name(k),
    }
}

/// Checks a Kubernetes label value: empty, or a name of at most 63 characters.
pub fn label_value(v: &str) -> Result<(), &'static str> {
    if v.is_empty() { Ok(()) } else { label_name(v) }
}

/// Parses a selector field and records an error (with the parser's position) when it is invalid.
/// `allow_global` is false where Calico forbids `global()`.
pub fn check_selector(
    c: &mut Checker,
    field: &str,
    expr: &str,
    allow_global: bool,
) -> Option<Selector> {
    c.field(field, |c| match Selector::parse(expr) {
        Ok(sel) => {
            if !allow_global && sel.uses_global() {
                c.error("global() is only allowed in a rule's source or destination selectors");
            }
            Some(sel)
        }
        Err(e) => {
            c.error(format!("invalid selector {expr:?}: {e}"));
            None
        }
    })
}

/// Parses a CIDR or a bare address (taken as a host route), as Calico accepts in rules and sets.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a valid CIDR or IP address"))
}

/// Parses a CIDR that must have no host bits set (pools, blocks).
pub fn parse_masked_cidr(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s
        .parse()
        .map_err(|_| format!("{s:?} is not a valid CIDR"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Checks each entry of a list of CIDRs (or addresses), and the list's length.
pub fn check_nets(c: &mut Checker, field: &str, nets: &[String], max: usize) {
    if nets.len() > max {
        c.error_at(
            field,
            format!("has {} entries; at most {max} are allowed", nets.len()),
        );
    }
    c.each(field, nets, |c, n| {
        if let Err(e) = parse_net(n) {
            c.error(e);
        }
    });
}

/// Checks that a string is one of the allowed values.
pub fn check_enum(c: &mut Checker, field: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        c.error_at(
            field,
            format!("{value:?} is not one of {}", allowed.join(", ")),
        );
    }
}

/// Checks a Go-style duration such as `90s`, `5m` or `1h30m`.
pub fn check_duration(c: &mut Checker, field: &str, value: &str) {
    if parse_duration_secs(value).is_none() {
        c.error_at(
            field,
            format!("{value:?} is not a duration (for example 90s, 5m, 1h30m)"),
        );
    }
}

/// Parses a Go-style duration into seconds.
pub fn parse_duration_secs(value: &str) -> Option<f64> {
    let mut rest = value;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0.0);
    }
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len: usize = rest
            .chars()
            .take_while(|ch| ch.is_ascii_alphabetic() || *ch == 'µ')
            .map(char::len_utf8)
            .sum();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
    }
    Some(total)
}

#[cfg(test)]
mod tests;
