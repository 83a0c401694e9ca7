//! Linux programming for tabby: nftables rendering and transactional apply, netlink (links,
//! addresses, routes, neighbours) and network-namespace helpers. Every kernel write goes
//! through a trait with an in-memory fake ([`NftApply`]/[`FakeNft`], [`Netlink`]/
//! [`FakeNetlink`]), so the rendering is tested without root. It must not decide policy: it
//! renders what the calc engine's [`tabby_calc::Delta`]s say, in their order.
//!
//! # The `inet tabby` table
//!
//! One table in family `inet` (IPv4 and IPv6 together) that tabby alone owns; nothing else is
//! touched. [`NftTable`] holds the desired table, built from deltas, and writes it with
//! `nft -f -`: a full script at start-up (add, delete and rebuild the table in one
//! transaction, which takes over whatever an earlier agent left with no moment of open or
//! closed traffic), then only what changed. A change that is only elements of hash sets
//! (endpoint addresses coming and going, the common case) skips `nft` and goes to the kernel
//! as one nfnetlink batch ([`nfnl`]), about ten times faster; any failure there makes the
//! next write a full script, as a failed `nft` run does.
//!
//! ```text
//! forward (hook forward, priority filter, policy accept)
//!   ct state: invalid drop, established/related accept
//!   iifname "tb*" jump from_wl_dispatch     egress policy of the sending workload
//!   oifname "tb*" jump to_wl_dispatch       ingress policy of the receiving workload
//! input   (hook input)
//!   ct state ...; iifname "tb*" goto wl_to_host
//! wl_to_host: IPv6 neighbour discovery accept; jump from_wl_dispatch; endpoint-to-host action
//! output  (hook output)
//!   ct state ...; oifname "tb*" accept     host to workload is not policed, as in Calico
//! from_wl_dispatch: iifname vmap @from_wl (iface : goto fw_<iface>); else drop (fail closed)
//! to_wl_dispatch:   oifname vmap @to_wl   (iface : goto tw_<iface>); else drop (fail closed)
//! ```
//!
//! An endpoint chain (`fw_<iface>` for egress, `tw_<iface>` for ingress; an interface name
//! that is not a plain identifier is hashed) runs, in order:
//! 1. egress only, anti-spoofing: a source address that is not one of the endpoint's is
//!    dropped (and a family it has no address in);
//! 2. clear the accept and pass mark bits;
//! 3. per tier with policies in this direction: clear the pass bit (from the second tier on),
//!    jump to each policy's chain while the pass bit is clear, returning at once when the
//!    accept bit is set; then, unless the tier's default action is Pass, drop if the pass bit
//!    is still clear (end-of-tier default deny);
//! 4. per profile: jump to its chain, return if the accept bit is set;
//! 5. drop ("no profile allowed", or the missing profile named in the comment).
//!
//! Policy chains (`pi_<hash>`/`po_<hash>`) and profile chains (`pri_<hash>`/`pro_<hash>`) hold
//! the rules in order, each with a counter and a comment naming tier, policy, direction and
//! rule index. Allow sets the accept bit and returns; Pass sets the pass bit and returns (in a
//! profile: returns, so the next profile runs); Deny drops; Log logs and goes on. Marks rather
//! than `accept` carry an Allow back because a forwarded packet between two local workloads
//! must pass the sender's egress and then the receiver's ingress in the same base chain, and
//! workload-to-host traffic still meets the endpoint-to-host action after its egress policy.
//!
//! Mark bits, as Calico's defaults: [`MARK_ACCEPT`] `0x10000`, [`MARK_PASS`] `0x20000`.
//!
//! IP sets are split per family, and address sets further into a hash set of single
//! addresses (`s4_`/`s6_`) and an interval set of wider networks (`p4_`/`p6_`, only while the
//! set has any); named-port sets are `n4_`/`n6_` of `addr . inet_proto . inet_service`. Names
//! are a hash of the calc ID; the ID is the set's comment. A rule that needs an OR (ports or
//! named ports, hosts or prefixes) becomes several nft rules with the same action and comment.
//!
//! # Other kernel state
//!
//! [`Netlink`] (real: [`RtNetlink`] on `rtnetlink`) programs links, addresses, routes (marked
//! with [`TABBY_ROUTE_PROTOCOL`]) and neighbours; [`netns`] creates, enters and deletes named
//! network namespaces with safe `setns`/`unshare` on helper threads.

mod apply;
pub mod netlink;
pub mod netns;
pub mod nfnl;
pub mod nft;
pub mod workload;

pub use crate::apply::{FakeNft, NftApply, NftCli, NftError, SetElementWriter};
pub use crate::netlink::{
    FakeNetlink, Netlink, NetlinkError, Route, RouteWrite, RtNetlink, TABBY_ROUTE_PROTOCOL,
    WORKLOAD_HOST_MAC,
};
pub use crate::netns::{NetNs, NetnsError};
pub use crate::nft::{Config, Counts, EndpointToHost, MARK_ACCEPT, MARK_PASS, NftTable, Script};
