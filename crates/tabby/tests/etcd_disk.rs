//! One member of a real 3-member etcd cluster keeps its data on a disk that fills up or turns
//! read-only (a small tmpfs, or ext4 on a loop device forced read-only as a disk error does;
//! mounted in a private mount namespace so nothing leaks to the machine): that member stops, its exit and log name the cause, the other two
//! keep serving tabby's writes, no acknowledged write is lost, the member cannot come back
//! while the disk is broken, and once space is freed (or the disk is writable again) it
//! restarts and catches up with every write made meanwhile.
//!
//! Needs root (mounts). Without it the test says it was skipped; under `CI=true` that is a
//! failure.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tabby_store::etcd::server::{ClusterSpec, EtcdCluster, ServerError};
use tabby_store::{Datastore, Key, Op};
use tabby_test_util::ScratchDir;

/// Room for etcd's two preallocated 64 MB WAL segments and a small database.
const TMPFS_SIZE: &str = "160M";
const DEADLINE: Duration = Duration::from_secs(40);

/// A private mount namespace held open by a sleeping process; mounts made in it vanish with
/// it and every process started in it.
struct MountNs(Child);

impl MountNs {
    fn new() -> Self {
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare -m");
        // Wait until the namespace exists (unshare execs sleep in it).
        let ours = std::fs::read_link("/proc/self/ns/mnt").expect("own mount namespace");
        let path = format!("/proc/{}/ns/mnt", child.id());
        let start = Instant::now();
        while std::fs::read_link(&path).is_ok_and(|ns| ns == ours) {
            assert!(start.elapsed() < DEADLINE, "unshare never made a namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self(child)
    }

    fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// Runs `script` with sh inside the namespace; it must succeed.
    fn sh(&self, script: &str) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid(), "-m", "sh", "-ec", script])
            .output()
            .expect("nsenter");
        assert!(out.status.success(), "{script}: {}", text(&out));
        text(&out)
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A cluster whose member e1 keeps its data under `disk` (a mount point in `ns`), the
/// others on the scratch folder; every member runs in `ns`.
fn cluster(ns: &MountNs, dir: &Path, disk: &Path) -> EtcdCluster {
    let data = dir.join("cluster");
    std::fs::create_dir_all(&data).expect("data folder");
    ns.sh(&format!("mkdir -m 700 {}/e1", disk.display()));
    std::os::unix::fs::symlink(disk.join("e1"), data.join("e1")).expect("symlink e1");
    let pid = ns.pid();
    let spec = ClusterSpec::on_loopback(&data, 3)
        .expect("ports")
        .with_command(move || {
            let mut c = Command::new("nsenter");
            c.args(["-t", &pid, "-m", "etcd"]);
            c
        });
    EtcdCluster::start(spec).expect("a 3-member cluster")
}

/// Writes through every member and remembers what etcd acknowledged.
struct Writer {
    store: Box<dyn Datastore>,
    acked: BTreeMap<Key, String>,
    next: usize,
    unknown: usize,
    /// A write whose outcome is unknown, to repeat.
    pending: Option<(Key, String)>,
}

impl Writer {
    fn write(&mut self) -> bool {
        let (key, value) = self.pending.take().unwrap_or_else(|| {
            let n = self.next;
            self.next += 1;
            (
                Key::new("WorkloadEndpoint", "disk", format!("wep-{}", n % 40)),
                format!("{{\"n\":{n}}}"),
            )
        });
        match self.store.commit(&[Op::Put {
            key: key.clone(),
            value: value.clone(),
        }]) {
            Ok(_) => {
                self.acked.insert(key, value);
                true
            }
            // A member dying under a request leaves its outcome unknown: it may have been
            // applied. The same put again settles it (a put is idempotent), so the next write
            // repeats it.
            Err(_) => {
                self.unknown += 1;
                self.pending = Some((key, value));
                false
            }
        }
    }

    /// Writes until `n` more were acknowledged.
    fn write_acked(&mut self, n: usize) {
        let start = Instant::now();
        let mut done = 0;
        while done < n {
            assert!(
                start.elapsed() < DEADLINE,
                "only {done} of {n} writes acknowledged"
            );
            if self.write() {
                done += 1;
            }
        }
    }

    /// Writes until member `i` exits; its log's last lines.
    fn until_member_exits(&mut self, cluster: &mut EtcdCluster, i: usize) -> String {
        let start = Instant::now();
        loop {
            assert!(
                start.elapsed() < DEADLINE,
                "member {i} kept running on the broken disk"
            );
            self.write();
            match cluster.wait_ready(Duration::ZERO) {
                Err(ServerError::Exited { name, log, .. }) if name == format!("e{}", i + 1) => {
                    return log;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

fn listing(store: &dyn Datastore) -> Option<BTreeMap<Key, String>> {
    let l = store.list(None, None).ok()?;
    Some(l.entries.into_iter().map(|e| (e.key, e.value)).collect())
}

/// Breaks member e1's disk with `break_disk`, checks what the cluster and tabby do, repairs it
/// with `repair_disk` and checks the member catches up.
fn one_member_on_a_broken_disk(
    tag: &str,
    disk_setup: &str,
    break_disk: &str,
    repair_disk: &str,
    causes: &[&str],
) {
    let dir = ScratchDir::new(tag);
    let disk = dir.path().join("disk");
    std::fs::create_dir_all(&disk).expect("mount point");
    let ns = MountNs::new();
    let image = dir.path().join("disk.img");
    let shell = |s: &str| {
        s.replace("DISK", &disk.display().to_string())
            .replace("IMAGE", &image.display().to_string())
    };
    let names_the_cause = |log: &str| causes.iter().any(|c| log.contains(c));
    ns.sh(&shell(disk_setup));
    let mut cluster = cluster(&ns, dir.path(), &disk);
    let url = cluster.url("/disk");
    let mut writer = Writer {
        store: tabby_store::open(&url).expect("open the cluster"),
        acked: BTreeMap::new(),
        next: 0,
        unknown: 0,
        pending: None,
    };
    writer.write_acked(20);

    ns.sh(&shell(break_disk));
    let log = writer.until_member_exits(&mut cluster, 0);
    assert!(
        names_the_cause(&log),
        "e1's log names one of {causes:?}:\n{log}"
    );
    // Two of three members: quorum remains, tabby's writes go on.
    writer.write_acked(30);
    assert_eq!(
        listing(&*writer.store).as_ref(),
        Some(&writer.acked),
        "every acknowledged write is there"
    );

    // While the disk is still broken the member cannot come back; it says why again.
    cluster.restart(0).expect("restart e1");
    let log = writer.until_member_exits(&mut cluster, 0);
    assert!(
        names_the_cause(&log),
        "e1 restarted on the broken disk:\n{log}"
    );

    // Repaired: the member restarts and catches up with every write made without it.
    ns.sh(&shell(repair_disk));
    cluster.restart(0).expect("restart e1");
    cluster
        .wait_ready(DEADLINE)
        .expect("e1 back after the repair");
    writer.write_acked(5);
    let alone = tabby_store::open(&cluster.member_url(0, "/disk")).expect("open e1 alone");
    let start = Instant::now();
    while listing(&*alone).as_ref() != Some(&writer.acked) {
        assert!(
            start.elapsed() < DEADLINE,
            "e1 never caught up: {} keys acknowledged, e1 has {:?}",
            writer.acked.len(),
            listing(&*alone).map(|l| l.len())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(listing(&*writer.store), Some(writer.acked.clone()));
    drop(cluster);
}

#[test]
fn a_member_on_a_full_disk_stops_the_others_serve_and_it_recovers_when_space_is_freed() {
    if !tabby_test_util::root_or_skip("a_member_on_a_full_disk") {
        return;
    }
    one_member_on_a_broken_disk(
        "etcd-full",
        &format!("mount -t tmpfs -o size={TMPFS_SIZE} tabby-full DISK"),
        // Everything left on the disk, taken by something else.
        "dd if=/dev/zero of=DISK/filler bs=1M 2>/dev/null || true",
        "rm DISK/filler",
        &["no space left on device"],
    );
}

/// The disk is an ext4 image on a loop device (detached when the namespace goes).
#[test]
fn a_member_on_a_read_only_disk_stops_the_others_serve_and_it_recovers_when_writable() {
    if !tabby_test_util::root_or_skip("a_member_on_a_read_only_disk") {
        return;
    }
    one_member_on_a_broken_disk(
        "etcd-ro",
        "truncate -s 200M IMAGE; mkfs.ext4 -q IMAGE; mount -o loop,errors=remount-ro IMAGE DISK",
        // What the kernel does when the disk fails under ext4: the filesystem turns
        // read-only at once, with files open for writing (a plain read-only remount would be
        // refused while etcd writes).
        "echo 1 > /sys/fs/ext4/$(basename $(findmnt -no SOURCE DISK))/trigger_fs_error",
        // What an operator does: check the filesystem and mount it again.
        "umount DISK; e2fsck -fy IMAGE >/dev/null || [ $? -le 1 ]; mount -o loop,errors=remount-ro IMAGE DISK",
        &["read-only file system", "input/output error"],
    );
}

/// etcd's own guard against a full disk, its space quota: once the database reaches
/// `--quota-backend-bytes`, tabby's writes (the library's and `tabby apply`'s) fail with an
/// error naming the cause and what to do, reads go on, nothing acknowledged is lost, and
/// after compaction, defragmentation and disarming the alarm writes succeed again.
#[test]
fn etcd_out_of_its_space_quota_refuses_writes_by_name_and_recovers() {
    let dir = ScratchDir::new("etcd-quota");
    let mut spec = ClusterSpec::on_loopback(dir.path().join("cluster"), 1).expect("ports");
    spec.extra_args
        .push("--quota-backend-bytes=2097152".to_owned());
    let cluster = EtcdCluster::start(spec).expect("one member");
    let url = cluster.url("/quota");
    let mut writer = Writer {
        store: tabby_store::open(&url).expect("open"),
        acked: BTreeMap::new(),
        next: 0,
        unknown: 0,
        pending: None,
    };
    let big = "x".repeat(20_000);
    let start = Instant::now();
    let err = loop {
        assert!(start.elapsed() < DEADLINE, "the quota was never reached");
        let key = Key::new(
            "WorkloadEndpoint",
            "quota",
            format!("wep-{}", writer.next % 10),
        );
        let value = format!("{{\"n\":{},\"pad\":\"{big}\"}}", writer.next);
        writer.next += 1;
        match writer.store.commit(&[Op::Put {
            key: key.clone(),
            value: value.clone(),
        }]) {
            Ok(_) => {
                writer.acked.insert(key, value);
            }
            Err(err) => break err.to_string(),
        }
    };
    assert!(
        err.contains("database space exceeded") && err.contains("compact and defragment"),
        "{err}"
    );
    assert_eq!(listing(&*writer.store), Some(writer.acked.clone()));

    let apply = tabby_test_util::run_with_stdin(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_tabby"));
            c.args(["--datastore", &url, "apply", "-f", "-"]);
            c
        },
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: late}\nspec: {selector: all()}\n",
    );
    assert!(!apply.status.success(), "apply must fail: {}", text(&apply));
    assert!(
        text(&apply).contains("database space exceeded"),
        "{}",
        text(&apply)
    );

    // The operator's way out: compact the history, defragment, disarm the alarm. etcd
    // compacts without space; tabby's own mark of it waits for the space.
    let head = writer.store.revision().expect("revision");
    let err = writer
        .store
        .compact(head)
        .expect_err("no room for tabby's compaction mark")
        .to_string();
    assert!(
        err.contains(&format!("etcd compacted up to revision {head}"))
            && err.contains("database space exceeded"),
        "{err}"
    );
    let endpoint = format!("http://{}", cluster.members()[0].client);
    for args in [&["defrag"][..], &["alarm", "disarm"][..]] {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoint])
            .args(args)
            .output()
            .expect("etcdctl");
        assert!(out.status.success(), "etcdctl {args:?}: {}", text(&out));
    }
    writer.store.compact(head).expect("compaction recorded");
    writer.write_acked(5);
    assert_eq!(listing(&*writer.store), Some(writer.acked.clone()));
}
