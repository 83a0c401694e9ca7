//! The one crate of tabby allowed to use `unsafe`: thin wrappers over Linux socket calls that
//! no maintained safe crate exposes, each behind a safe function that checks its inputs.
//!
//! Holds: TCP MD5 signatures (RFC 2385, `setsockopt(TCP_MD5SIG)`), which BGP sessions with a
//! password need ([`set_tcp_md5sig`]). The rest of the workspace forbids `unsafe_code`; keeping
//! the FFI here means one small file to review. Every unsafe block carries a `// SAFETY:`
//! comment (`clippy::undocumented_unsafe_blocks` is denied) and does one unsafe operation.
//!
//! Must not: hold policy or protocol logic, allocate long-lived state, or grow into a general
//! libc wrapper; add a call here only when no safe crate in the tree offers it.

mod md5;

pub use md5::{TCP_MD5SIG_MAXKEYLEN, set_tcp_md5sig};
