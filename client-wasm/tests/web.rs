//! Browser-only pieces, in headless Chromium:
//!
//! ```text
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! cargo test -p dumdum-client-wasm --target wasm32-unknown-unknown
//! ```

#![cfg(target_arch = "wasm32")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use dumdum_client_wasm::components::App;
use dumdum_client_wasm::socket::{Socket, SocketError, SocketEvent};
use dumdum_client_wasm::storage::{
    self, NICK_KEY, SESSION_FRAMES_KEY, SESSION_KEY, Store, channel_key,
};
use gloo_timers::future::sleep;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Waits (at most 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[wasm_bindgen_test]
fn storage_round_trips_and_forgets() {
    let s = Store::local().expect("localStorage in Chromium");
    s.set("dumdum.test", "x ✓").unwrap();
    assert_eq!(s.get("dumdum.test").as_deref(), Some("x ✓"));
    s.remove("dumdum.test").unwrap();
    assert_eq!(s.get("dumdum.test"), None);
}

#[wasm_bindgen_test]
fn remembered_values_survive_a_new_handle() {
    storage::save(NICK_KEY, "alice");
    storage::save(&channel_key(Some("local")), "random");
    assert_eq!(storage::load(NICK_KEY).as_deref(), Some("alice"));
    assert_eq!(
        Store::local()
            .unwrap()
            .get(&channel_key(Some("local")))
            .as_deref(),
        Some("random")
    );
    assert_eq!(storage::load(&channel_key(Some("other"))), None);
    Store::local().unwrap().remove(NICK_KEY).unwrap();
}

#[wasm_bindgen_test]
fn a_bad_url_is_an_error_not_a_panic() {
    // Chromium resolves relative URLs, but refuses other schemes.
    let err = Socket::open("ftp://127.0.0.1/ws", "dumdum.v2", |_| {}).unwrap_err();
    assert!(matches!(err, SocketError::Open { .. }), "{err:?}");
}

fn recorder() -> (
    Rc<RefCell<Vec<SocketEvent>>>,
    impl Fn(SocketEvent) + 'static,
) {
    let events = Rc::new(RefCell::new(Vec::new()));
    let sink = events.clone();
    (events, move |e| sink.borrow_mut().push(e))
}

#[wasm_bindgen_test]
async fn an_unreachable_bridge_reports_an_abnormal_close() {
    let (events, handler) = recorder();
    // Nothing listens on this loopback port.
    let socket =
        Socket::open("ws://127.0.0.1:1/ws", "dumdum.v2", handler).expect("a socket object");
    assert_eq!(socket.send_text("early"), Err(SocketError::NotOpen));
    assert_eq!(socket.send_binary(&[0, 2]), Err(SocketError::NotOpen));
    until("the close event", || !events.borrow().is_empty()).await;
    let got = events.borrow().clone();
    assert!(
        matches!(
            got.as_slice(),
            [SocketEvent::Closed {
                code: 1006,
                clean: false,
                ..
            }]
        ),
        "{got:?}"
    );
    assert!(!socket.is_open());
}

#[wasm_bindgen_test]
async fn a_dropped_socket_calls_nobody() {
    let (events, handler) = recorder();
    let socket = Socket::open("ws://127.0.0.1:1/ws", "dumdum.v2", handler).unwrap();
    drop(socket);
    sleep(Duration::from_millis(500)).await;
    assert!(events.borrow().is_empty(), "{:?}", events.borrow());
}

#[wasm_bindgen_test]
async fn the_app_renders_the_connect_screen() {
    let document = web_sys::window().unwrap().document().unwrap();
    let root = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&root).unwrap();
    storage::save(NICK_KEY, "remembered");
    let handle = yew::Renderer::<App>::with_root(root.clone()).render();
    let find = |css: &str| document.query_selector(css).ok().flatten();
    until("the nick field", || find("#nick").is_some()).await;
    let nick: web_sys::HtmlInputElement =
        wasm_bindgen::JsCast::dyn_into(find("#nick").unwrap()).unwrap();
    assert_eq!(
        nick.value(),
        "remembered",
        "the remembered nick is filled in"
    );
    assert!(find("label[for=nick]").is_some(), "the field has a label");
    // The test server has no /api/servers: the page says so and goes on.
    until("the server-list note", || {
        find(".banner.info")
            .and_then(|e| e.text_content())
            .is_some_and(|t| t.contains("Could not load the server list"))
    })
    .await;
    assert!(find("#server").is_none(), "no picker without a list");
    handle.destroy();
    Store::local().unwrap().remove(NICK_KEY).unwrap();
}

#[wasm_bindgen_test]
fn session_storage_is_separate_from_local_storage() {
    let session = Store::session().expect("sessionStorage in Chromium");
    let local = Store::local().unwrap();
    assert!(storage::session_save(SESSION_KEY, "{\"key\":\"k\"}"));
    assert_eq!(
        storage::session_load(SESSION_KEY).as_deref(),
        Some("{\"key\":\"k\"}")
    );
    assert_eq!(session.get(SESSION_KEY).as_deref(), Some("{\"key\":\"k\"}"));
    assert_eq!(
        local.get(SESSION_KEY),
        None,
        "the key never reaches localStorage"
    );
    storage::session_remove(SESSION_KEY);
    assert_eq!(storage::session_load(SESSION_KEY), None);
    session.set("dumdum.test", "x ✓").unwrap();
    assert_eq!(session.get("dumdum.test").as_deref(), Some("x ✓"));
    session.remove("dumdum.test").unwrap();
    assert_eq!(session.get("dumdum.test"), None);
}

#[wasm_bindgen_test]
async fn an_unusable_stored_session_is_forgotten_and_the_connect_screen_shown() {
    let document = web_sys::window().unwrap().document().unwrap();
    let root = document.create_element("div").unwrap();
    document.body().unwrap().append_child(&root).unwrap();
    storage::session_save(SESSION_KEY, "not a session");
    storage::session_save(SESSION_FRAMES_KEY, "not frames either");
    let handle = yew::Renderer::<App>::with_root(root.clone()).render();
    let find = |css: &str| root.query_selector(css).ok().flatten();
    until("the nick field", || find("#nick").is_some()).await;
    assert_eq!(storage::session_load(SESSION_KEY), None);
    assert_eq!(storage::session_load(SESSION_FRAMES_KEY), None);
    handle.destroy();
}
