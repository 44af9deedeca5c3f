//! The dumdum browser chat client: a Yew app compiled to WebAssembly that
//! talks to the dumdum bridge over a WebSocket (`/ws`, subprotocol
//! `dumdum.v2`).
//!
//! - [`engine`], [`state`], [`format`], [`backoff`], [`problem`], [`search`]: the
//!   session logic, the view state with its reducer, and every formatting and
//!   validation rule: plain Rust, tested natively with `cargo test`;
//! - [`storage`], [`socket`]: thin wrappers over browser APIs, tested in
//!   headless Chromium with `wasm-bindgen-test`;
//! - [`hooks`] and [`components`]: the Yew app.

// Talc instead of the default dlmalloc: smaller (the bundle has a budget)
// and faster. The page is single-threaded (no `atomics`).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

pub mod alerts;
pub mod backoff;
pub mod components;
pub mod engine;
pub mod format;
pub mod hooks;
pub mod messages;
pub mod notify;
pub mod paste;
pub mod permalink;
pub mod problem;
pub mod search;
pub mod small;
pub mod socket;
pub mod state;
pub mod storage;
pub mod stored;
pub mod window;

/// A line in the browser console (stderr natively, for tests).
pub fn log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::log_1(&line.into());
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
}

/// What a JavaScript error or thrown value says: the string itself, an
/// `Error`'s message (a `DOMException` is one), else its JSON, else
/// "unknown error". (Not `Debug`, whose glue adds to the page.)
pub fn js_text(v: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast;
    v.as_string()
        .or_else(|| {
            v.dyn_ref::<js_sys::Error>()
                .map(|e| String::from(e.message()))
        })
        .or_else(|| js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()))
        .unwrap_or_else(|| "unknown error".into())
}

/// Starts the app in `#app` when the wasm module is instantiated.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    let root = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id("app"));
    match root {
        Some(root) => {
            root.set_inner_html("");
            yew::Renderer::<components::App>::with_root(root).render();
        }
        None => {
            yew::Renderer::<components::App>::new().render();
        }
    }
}
