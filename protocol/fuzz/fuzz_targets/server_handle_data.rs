//! `Server::handle_data` on arbitrary bytes from each state, answering every
//! request: no panic, and a failed server stays failed.
#![no_main]

use dumdum_protocol::{Error, Server, ServerEvent, ServerState};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, data)) = data.split_first() else {
        return;
    };
    let mut s = Server::new(if setup & 0x80 != 0 { 64 } else { 1 << 20 });
    let stage = setup & 3;
    let tls = setup & 4 != 0;
    if stage >= 1 {
        s.handle_data(&[0x00, 0x02]).unwrap();
    }
    if stage >= 2 {
        s.accept_hello(tls).unwrap();
        if tls {
            s.handle_tls_established().unwrap();
        }
    }
    if stage >= 3 {
        s.handle_data(&[0x02, 0x01, b'f']).unwrap();
        s.authenticate(setup & 8 == 0).unwrap();
    }
    for chunk in data.chunks(5) {
        if s.handle_data(chunk).is_err() {
            assert_eq!(s.state(), &ServerState::Failed);
            assert_eq!(s.handle_data(&[0x04]), Err(Error::Closed));
            break;
        }
        while let Some(ev) = s.poll_event() {
            let _ = match ev {
                ServerEvent::Hello => s.accept_hello(false),
                ServerEvent::Authenticate { nick } => s.authenticate(nick.len() % 2 == 0),
                ServerEvent::ListChannels => s.list_channels(&["general".into()]),
                ServerEvent::ListMessages { .. } => s.list_messages(&[]),
                _ => Ok(()),
            };
        }
    }
    while s.poll_transmit().is_some() {}
});
