//! The listeners of a component's endpoint on /proc/net/tcp{,6}-format text and a proc
//! file system in a directory; the decision of old and new.

use super::*;
use std::os::unix::fs::symlink;

const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0A00000A:0993 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3003 1 0000000000000000 20 4 30 10 -1
   3: 0200007F:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5005 1 0000000000000000 100 0 0 10 0
";
const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:192B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4004 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:2811 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6006 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000001000000:2812 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7007 1 0000000000000000 100 0 0 10 0
";

fn on(table: &str, host: &str, port: u16) -> Vec<u64> {
    listening_inodes(table, Some(&Wanted::new(host, port)))
}

#[test]
fn listening_sockets_by_address_and_port() {
    // 0x1F90 = 8080, 0x0993 = 2451; the established connection on 8080 is not one.
    assert_eq!(on(TCP, "127.0.0.1", 8080), [1001]);
    assert_eq!(on(TCP, "localhost", 8080), [1001]);
    assert_eq!(on(TCP, "10.0.0.10", 2451), [2002]);
    // Not the same address: another endpoint.
    assert_eq!(on(TCP, "127.0.0.1", 2451), Vec::<u64>::new());
    assert_eq!(on(TCP, "::1", 8080), Vec::<u64>::new());
    // A host name is matched by its port (resolving it here could wait on DNS).
    assert_eq!(on(TCP, "cp-1.example", 2451), [2002]);
    assert_eq!(listening_inodes(TCP, None), [1001, 2002, 5005]);
    assert_eq!(on(TCP, "127.0.0.1", 6000), Vec::<u64>::new());
    assert_eq!(
        listening_inodes("garbage\nmore garbage", None),
        Vec::<u64>::new()
    );
}

#[test]
fn another_address_on_the_same_port_is_not_the_component() {
    // 0x192B = 6443: a process on 127.0.0.2:6443 (5005) beside the apiserver on the
    // dual-stack [::]:6443 (4004). The endpoint 127.0.0.1:6443 is the apiserver's.
    assert_eq!(on(TCP, "127.0.0.1", 6443), Vec::<u64>::new());
    assert_eq!(on(TCP6, "127.0.0.1", 6443), [4004]);
    assert_eq!(on(TCP6, "::1", 6443), [4004]);
    assert_eq!(on(TCP6, "[::1]", 6443), [4004]);
    assert_eq!(on(TCP, "127.0.0.2", 6443), [5005]);
    // 0x2811 = 10257 on ::ffff:127.0.0.1: that IPv4 address only.
    assert_eq!(on(TCP6, "127.0.0.1", 10257), [6006]);
    assert_eq!(on(TCP6, "::ffff:127.0.0.1", 10257), [6006]);
    assert_eq!(on(TCP6, "127.0.0.3", 10257), Vec::<u64>::new());
    // 0x2812 = 10258 on ::1: not an IPv4 endpoint's.
    assert_eq!(on(TCP6, "::1", 10258), [7007]);
    assert_eq!(on(TCP6, "127.0.0.1", 10258), Vec::<u64>::new());
    assert_eq!(on(TCP6, "localhost", 10258), [7007]);
}

#[test]
fn which_bound_address_serves_which_endpoint() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let yes = [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),
        ("0.0.0.0", "::ffff:10.0.0.1"),
        ("::", "::1"),
        ("::", "10.0.0.1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("fd00::1", "fd00::1"),
    ];
    let no = [
        ("127.0.0.2", "127.0.0.1"),
        ("0.0.0.0", "::1"),
        ("::1", "127.0.0.1"),
        ("::ffff:10.0.0.2", "10.0.0.1"),
        ("fd00::2", "fd00::1"),
        ("10.0.0.1", "0.0.0.0"),
    ];
    for (local, endpoint) in yes {
        assert!(serves(ip(local), ip(endpoint)), "{local} serves {endpoint}");
    }
    for (local, endpoint) in no {
        assert!(
            !serves(ip(local), ip(endpoint)),
            "{local} does not serve {endpoint}"
        );
    }
}

#[test]
fn table_addresses() {
    let at = |s: &str| table_address(s).map(|(a, p)| (a.to_string(), p));
    assert_eq!(at("0100007F:1F90"), Some(("127.0.0.1".into(), 8080)));
    assert_eq!(
        at("0000000000000000FFFF00000100007F:2811"),
        Some(("::ffff:127.0.0.1".into(), 10257))
    );
    assert_eq!(
        at("00000000000000000000000001000000:2812"),
        Some(("::1".into(), 10258))
    );
    for bad in [
        "",
        ":",
        "0100007F",
        "0100007G:1F90",
        "01007F:1F90",
        "0100007F:XYZ",
    ] {
        assert_eq!(at(bad), None, "{bad}");
    }
}

/// A proc file system in a directory: `uptime`, the socket tables, and processes
/// with their start time and socket descriptors.
fn fake_proc(procs: &[(u32, u64, &[u64])]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir_all(d.path().join("self/net")).unwrap();
    fs::write(d.path().join("self/net/tcp"), TCP).unwrap();
    fs::write(d.path().join("self/net/tcp6"), TCP6).unwrap();
    for (pid, started, sockets) in procs {
        let p = d.path().join(pid.to_string());
        fs::create_dir_all(p.join("fd")).unwrap();
        fs::write(
            p.join("stat"),
            format!("{pid} (kube-apiserver) S 1 {pid} {pid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 9 0 {started} 1 1\n"),
        )
        .unwrap();
        symlink("/dev/null", p.join("fd/0")).unwrap();
        for (n, s) in sockets.iter().enumerate() {
            symlink(format!("socket:[{s}]"), p.join(format!("fd/{}", n + 3))).unwrap();
        }
    }
    d
}

fn found(inode: u64, process: Option<(u32, u64)>) -> Listeners {
    Listeners::Found(vec![Listener {
        inode,
        process: process.map(|(pid, started)| Process { pid, started }),
    }])
}

#[test]
fn the_process_holding_the_listening_socket() {
    let d = fake_proc(&[
        (10, 500, &[3003]),
        (42, 4000, &[1001, 9]),
        (43, 4100, &[4004]),
    ]);
    let p = ProcListeners::new(d.path());
    assert_eq!(
        p.on_endpoint("127.0.0.1", 8080),
        found(1001, Some((42, 4000)))
    );
    assert_eq!(
        p.on_endpoint("127.0.0.1", 6443),
        found(4004, Some((43, 4100)))
    );
    assert_eq!(p.on_endpoint("127.0.0.1", 10250), Listeners::None);
    // A socket whose process is not visible here (ProtectProc, a pid namespace).
    assert_eq!(p.on_endpoint("10.0.0.10", 2451), found(2002, None));
    let mark = p.mark().unwrap();
    assert_eq!(
        mark.listening,
        BTreeSet::from([1001, 2002, 4004, 5005, 6006, 7007])
    );
    // Now: since boot, after this test process started.
    let me = procfs::process_start_ticks(Path::new("/proc"), std::process::id()).unwrap();
    assert!(mark.at >= me);
    let none = ProcListeners::new(d.path().join("nope"));
    assert!(
        matches!(none.on_endpoint("127.0.0.1", 8080), Listeners::Unknown(why) if why.contains("self/net/tcp cannot be read"))
    );
    assert_eq!(none.mark(), None);
}

#[test]
fn the_live_proc_shows_our_own_listener() {
    let p = ProcListeners::default();
    // The clock ticks at 10 ms: a test process that started within the tick of the mark
    // would count as started after it (flaky when this test runs first).
    std::thread::sleep(std::time::Duration::from_millis(25));
    let before = p.mark();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    match (p.on_endpoint("127.0.0.1", port), before) {
        (Listeners::Found(ls), Some(before)) => {
            assert_eq!(ls.len(), 1);
            assert!(!before.listening.contains(&ls[0].inode));
            let me = ls[0].process.unwrap();
            assert_eq!(me.pid, std::process::id());
            assert!(matches!(
                judge(&Listeners::Found(ls.clone()), &before),
                Answerer::Old(_)
            ));
            let after = p.mark().unwrap();
            assert!(after.listening.contains(&ls[0].inode));
        }
        // The socket tables readable but not the clock: the listener is still ours.
        (Listeners::Found(ls), None) => {
            assert_eq!(ls.len(), 1, "{ls:?}");
            if let Some(me) = ls[0].process {
                assert_eq!(me.pid, std::process::id());
            }
            eprintln!("live /proc: no clock to mark a restart with");
        }
        // A sandbox without /proc/self/net (then no mark either): nothing to prove here.
        (Listeners::Unknown(why), None) => eprintln!("live /proc not usable here: {why}"),
        // The tables were read (or the mark could not have been made), yet our own
        // listener is not found in them: a misparse of the real /proc/net/tcp.
        other => panic!("our listener on 127.0.0.1:{port} not found in the live /proc: {other:?}"),
    }
}

#[test]
fn only_sockets_and_processes_of_after_the_request_are_new() {
    let req = RestartRequested {
        at: 1000,
        listening: BTreeSet::from([55, 66]),
    };
    let l = |inode, process: Option<(u32, u64)>| Listener {
        inode,
        process: process.map(|(pid, started)| Process { pid, started }),
    };
    let judge = |f: Listeners| judge(&f, &req);
    assert_eq!(
        judge(found(77, Some((7, 1000)))),
        Answerer::New(l(77, Some((7, 1000))))
    );
    assert_eq!(judge(found(77, None)), Answerer::New(l(77, None)));
    // A socket of before the request, whatever its process.
    assert_eq!(judge(found(55, None)), Answerer::Old(l(55, None)));
    assert_eq!(
        judge(found(66, Some((7, 1200)))),
        Answerer::Old(l(66, Some((7, 1200))))
    );
    // A new socket of a process of before (it opened another one).
    assert_eq!(
        judge(found(77, Some((6, 999)))),
        Answerer::Old(l(77, Some((6, 999))))
    );
    // Old and new both on the port (SO_REUSEPORT): the old one may still answer.
    assert_eq!(
        judge(Listeners::Found(vec![l(78, Some((8, 1200))), l(55, None)])),
        Answerer::Old(l(55, None))
    );
    assert_eq!(judge(Listeners::None), Answerer::NotListening);
    assert_eq!(judge(Listeners::Found(vec![])), Answerer::NotListening);
    assert_eq!(
        judge(Listeners::Unknown("why".into())),
        Answerer::Unknown("why".into())
    );
    assert_eq!(ticks_between(1000, 1234), "2.34");
    assert_eq!(ticks_between(1000, 1005), "0.05");
    assert_eq!(ticks_between(1000, 900), "0.00");
}
