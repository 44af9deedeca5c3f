//! The test peers themselves work: two reference clients chat through the
//! real server, plain and over TLS.

use std::time::Duration;

use dumdum_testkit::{DumdumServer, PyPeer, TestCert};

#[test]
fn reference_clients_chat_plain_and_tls() {
    let cert = TestCert::localhost();
    for tls in [false, true] {
        let server = DumdumServer::start_with(&["general"], tls.then_some(&cert));
        let ca = tls.then_some(cert.cert_path.as_path());
        let mut a = PyPeer::connect(server.addr(), "alice", ca);
        assert!(a.expect_auth(), "alice authenticates (tls={tls})");
        let mut b = PyPeer::connect(server.addr(), "alice", ca);
        assert!(!b.expect_auth(), "a taken nick is refused");
        b.auth("bob");
        assert!(
            b.expect_auth(),
            "another nick on the same connection is accepted"
        );
        a.send("general", "hello from alice");
        let got = b.expect_message("hello from alice");
        assert_eq!(got["nick"], "alice");
        a.expect(Duration::from_secs(10), "own echo", |v| {
            v["content"] == "hello from alice"
        });
    }
}
