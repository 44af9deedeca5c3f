//! `Client::handle_data` on arbitrary bytes from each state and TLS mode:
//! no panic, and a failed client stays failed.
#![no_main]

use dumdum_protocol::{Client, ClientConfig, ClientState, Error, HistoryQuery, TlsMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, data)) = data.split_first() else {
        return;
    };
    let tls = match setup & 3 {
        0 => TlsMode::Disabled,
        1 => TlsMode::Optional,
        2 => TlsMode::Required,
        _ => TlsMode::Transparent,
    };
    let mut c = Client::new(ClientConfig {
        tls,
        buffer_limit: if setup & 0x80 != 0 { 64 } else { 1 << 20 },
    });
    let stage = (setup >> 2) & 7;
    if stage >= 1 {
        c.hello().unwrap();
    }
    // Stage 2: the server announced TLS (waiting for the upgrade); 3: plain
    // HELLO answered, AUTHENTICATE sent; 4+: authenticated, history pending.
    if stage >= 2
        && c.handle_data(&[0x00, u8::from(stage == 2)]).is_ok()
        && stage >= 3
        && c.authenticate("fuzz").is_ok()
        && stage >= 4
    {
        let _ = c.handle_data(&[0x02, 0x01]);
        let _ = c.list_messages("general", HistoryQuery::Newest);
    }
    for chunk in data.chunks(7) {
        if c.handle_data(chunk).is_err() {
            assert_eq!(c.state(), &ClientState::Failed);
            assert_eq!(c.handle_data(&[0]), Err(Error::Closed));
            break;
        }
    }
    while c.poll_event().is_some() {}
    while c.poll_transmit().is_some() {}
});
