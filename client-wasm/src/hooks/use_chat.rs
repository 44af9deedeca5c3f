//! `use_chat`: owns the WebSocket to the bridge and the session [`Engine`],
//! feeds the reducer, and reconnects with backoff. The socket is closed in
//! the effect's cleanup (when the app unmounts).
//!
//! The bridge session of the tab is kept in `sessionStorage`: its small
//! state after every event ([`Engine::saved`]), its unconfirmed outgoing
//! frames only when they change ([`Persisted`]); on load, a stored session
//! is restored and resumed at once, so a reload of the tab keeps the nick and the channel
//! without a new AUTHENTICATE. "Sign out" closes with 1000 (the bridge ends
//! the session at once) and forgets the stored session.
//!
//! All protocol decisions are in [`crate::engine`]; this file moves bytes
//! and timers only.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use dumdum_protocol::Snowflake;
use dumdum_protocol::session::SUBPROTOCOL;
use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use yew::prelude::*;

use crate::backoff::Backoff;
use crate::engine::{
    Engine, Memory, NICK_RETRY_DELAY_MS, Output, Persisted, Saved, SavedFrames, Write,
};
use crate::format::BridgeAddr;
use crate::problem::{Probe, Problem};
use crate::socket::{Socket, SocketEvent};
use crate::state::{Action, ChatState, ServerInfo};
use crate::storage::{self, NICK_KEY, SERVER_KEY, SESSION_FRAMES_KEY, SESSION_KEY, channel_key};

/// What the page asks of the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Connect with this nick (or, after a refused nick, ask for it on the
    /// same connection).
    Join {
        /// The server name (`None`: the bridge's default).
        server: Option<String>,
        /// The nick.
        nick: String,
    },
    /// Post to a channel.
    Send {
        /// The channel.
        channel: String,
        /// The text.
        text: String,
    },
    /// Show a channel.
    Select(String),
    /// Fetch an older page of a channel.
    LoadOlder {
        /// The channel.
        channel: String,
        /// The oldest message shown (the page ends before it).
        before: Option<Snowflake>,
    },
    /// Page back through a channel's history until a message matches
    /// `query` ("Search older", see [`Engine::search_older`]).
    SearchOlder {
        /// The channel.
        channel: String,
        /// The term, as typed.
        query: String,
        /// The oldest message shown (the search starts before it).
        before: Option<Snowflake>,
    },
    /// Stop the "search older" under way, if any.
    StopSearch,
    /// Reconnect now instead of waiting.
    RetryNow,
    /// Leave: close the connection and go back to the connect screen.
    SignOut,
}

/// The chat's state and the way to command it, shared through a context.
#[derive(Clone, PartialEq)]
pub struct ChatContext {
    /// The view state.
    pub state: UseReducerHandle<ChatState>,
    /// Commands.
    pub cmd: Callback<Command>,
}

fn now_ms() -> u64 {
    js_sys::Date::now().max(0.0) as u64
}

fn browser_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

/// The page's origin (`location.origin`).
fn page_origin() -> String {
    web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default()
}

/// The bridge of this page: its own origin, or the one its
/// `<meta name="dumdum-bridge">` names (see [`BridgeAddr`]).
fn locate_bridge() -> Result<BridgeAddr, String> {
    let window = web_sys::window().ok_or("no window")?;
    let loc = window.location();
    let configured = window
        .document()
        .and_then(|d| {
            d.query_selector(r#"meta[name="dumdum-bridge"]"#)
                .ok()
                .flatten()
        })
        .and_then(|m| m.get_attribute("content"));
    BridgeAddr::locate(
        &loc.protocol().unwrap_or_default(),
        &loc.host().unwrap_or_default(),
        configured.as_deref(),
    )
}

/// GETs `url` (never from the cache) with `mode`; the response, or `None`
/// when `fetch` fails (network error, or a CORS refusal).
async fn get(url: &str, mode: web_sys::RequestMode) -> Option<web_sys::Response> {
    let window = web_sys::window()?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_mode(mode);
    init.set_cache(web_sys::RequestCache::NoStore);
    let resp = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .ok()?;
    resp.dyn_into().ok()
}

/// Asks the bridge's `/healthz` what is wrong after a WebSocket failed
/// before opening: first as this page (the bridge answers its own and its
/// allowed origins), then, if that fails, without CORS, which tells a
/// server that answers other origins only from no server at all.
async fn probe(bridge: &BridgeAddr) -> Probe {
    let url = bridge.url("/healthz");
    if let Some(resp) = get(&url, web_sys::RequestMode::Cors).await {
        let body = match resp.text() {
            Ok(p) => JsFuture::from(p)
                .await
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        return Probe::Health {
            status: resp.status(),
            body,
        };
    }
    match get(&url, web_sys::RequestMode::NoCors).await {
        Some(_) => Probe::AnsweredWithoutCors,
        None => Probe::NoAnswer,
    }
}

struct Driver {
    dispatch: UseReducerDispatcher<ChatState>,
    /// Where the bridge is (or why its configured address is unusable).
    bridge: Result<BridgeAddr, String>,
    me: Weak<RefCell<Driver>>,
    engine: Option<Engine>,
    socket: Option<Socket>,
    generation: u64,
    backoff: Backoff,
    retry: Option<Timeout>,
    /// When `retry` fires (ms since the epoch).
    retry_at_ms: Option<u64>,
    online: Option<EventListener>,
    /// The running acknowledgement's timer ([`Output::AckAfter`]).
    ack_timer: Option<Timeout>,
    /// The next look for a quiet moment to leave a draining bridge.
    move_timer: Option<Timeout>,
    pending: Vec<Action>,
    /// The session as last written to `sessionStorage`.
    persisted: Persisted,
    /// Tells new messages from a resume's replay (which notifies nothing).
    replay: crate::notify::Replay,
}

type Shared = Rc<RefCell<Driver>>;

/// Runs `f` on the driver, performs the engine's output (sending while
/// borrowed is fine: sockets never call back synchronously), then
/// dispatches the view actions after the borrow ends (a dispatch may render
/// synchronously, and rendering may send commands). The actions of one step
/// go as one [`Action::Batch`]: one new state and one render per step.
fn with_driver(rc: &Shared, f: impl FnOnce(&mut Driver)) {
    let (acts, dispatch) = {
        let Ok(mut d) = rc.try_borrow_mut() else {
            crate::log("dumdum: re-entrant chat command ignored");
            return;
        };
        f(&mut d);
        let acts = d.flush();
        d.persist();
        (acts, d.dispatch.clone())
    };
    if let Some(a) = Action::batch(acts) {
        dispatch.dispatch(a);
    }
}

impl Driver {
    fn flush(&mut self) -> Vec<Action> {
        let mut acts = Vec::new();
        let outputs = self.engine.as_mut().map(Engine::drain).unwrap_or_default();
        for out in outputs {
            match out {
                Output::Text(t) => {
                    if let Some(s) = &self.socket
                        && let Err(e) = s.send_text(&t)
                    {
                        crate::log(&format!("dumdum: {e}"));
                    }
                }
                Output::Binary(b) => {
                    if let Some(s) = &self.socket
                        && let Err(e) = s.send_binary(&b)
                    {
                        crate::log(&format!("dumdum: {e}"));
                    }
                }
                Output::Close { code, reason } => {
                    if let Some(s) = &self.socket {
                        s.close(code, &reason);
                    }
                }
                Output::Remember(Memory::Nick(n)) => storage::save(NICK_KEY, &n),
                Output::Remember(Memory::Channel { server, channel }) => {
                    storage::save(&channel_key(server.as_deref()), &channel);
                }
                Output::Log(l) => crate::log(&format!("dumdum: {l}")),
                Output::AckAfter { ms } => {
                    let me = self.me.clone();
                    let generation = self.generation;
                    self.ack_timer = Some(Timeout::new(
                        u32::try_from(ms).unwrap_or(u32::MAX),
                        move || {
                            if let Some(rc) = me.upgrade() {
                                with_driver(&rc, |d| {
                                    if d.generation == generation
                                        && let Some(e) = d.engine.as_mut()
                                    {
                                        e.ack_due();
                                    }
                                });
                            }
                        },
                    ));
                }
                Output::Draining { deadline_s } => {
                    let deadline_ms = deadline_s.saturating_mul(1000);
                    acts.push(Action::Draining {
                        until_ms: now_ms().saturating_add(deadline_ms),
                    });
                    // A random moment in the first half of the deadline:
                    // the sessions of a draining bridge do not all move at
                    // once (see `Engine::move_if_quiet`).
                    let first = (js_sys::Math::random() * (deadline_ms / 2) as f64) as u64;
                    self.plan_move_check(first);
                }
                Output::Act(a) => {
                    if matches!(a, Action::Authenticated { .. } | Action::Resumed { .. }) {
                        self.backoff.connected(now_ms());
                    }
                    acts.push(a);
                }
            }
        }
        acts.append(&mut self.pending);
        for a in &acts {
            self.watch(a);
        }
        acts
    }

    /// Notifications (see [`crate::alerts`]): who is signed in, and each
    /// new broadcast message, except a resume's replay.
    fn watch(&mut self, a: &Action) {
        let live = self.replay.observe(a);
        match a {
            Action::Authenticated { nick } | Action::Restored { nick, .. } => {
                let server = self.engine.as_ref().and_then(Engine::server);
                crate::alerts::signed_in(server, nick);
            }
            Action::Message(m) => {
                let Some(engine) = self.engine.as_ref() else {
                    return;
                };
                let own = engine.nick() == m.nick;
                let in_view = engine.active() == Some(m.channel.as_str());
                let me = self.me.clone();
                let live = live.unwrap_or(true);
                crate::alerts::on_live_message(m, own, live, in_view, move |channel| {
                    if let Some(rc) = me.upgrade() {
                        with_driver(&rc, |d| d.command(Command::Select(channel)));
                    }
                });
            }
            _ => {}
        }
    }

    /// In `delay_ms`, leaves a draining bridge if the moment is quiet, else
    /// looks again a second later, while this connection lasts.
    fn plan_move_check(&mut self, delay_ms: u64) {
        let me = self.me.clone();
        let generation = self.generation;
        self.move_timer = Some(Timeout::new(
            u32::try_from(delay_ms).unwrap_or(u32::MAX),
            move || {
                if let Some(rc) = me.upgrade() {
                    with_driver(&rc, |d| {
                        if d.generation != generation || d.socket.is_none() {
                            return;
                        }
                        let moved = d.engine.as_mut().is_some_and(Engine::move_if_quiet);
                        if !moved {
                            d.plan_move_check(1_000);
                        }
                    });
                }
            },
        ));
    }

    /// Keeps the session in `sessionStorage` (or forgets it): what changed
    /// only, the frames first (see [`Persisted::update`]).
    fn persist(&mut self) {
        let (state, frames) = self.persisted.update(self.engine.as_ref());
        let mut ok = true;
        for (key, write) in [(SESSION_FRAMES_KEY, frames), (SESSION_KEY, state)] {
            match write {
                Write::Keep => {}
                Write::Set(j) => ok &= storage::session_save(key, &j),
                Write::Remove => storage::session_remove(key),
            }
        }
        if !ok {
            // Write everything again after the next event.
            self.persisted = Persisted::default();
        }
    }

    /// After a reload: resume the session this tab kept.
    fn restore(&mut self, stored: String) {
        let frames = storage::session_load(SESSION_FRAMES_KEY).and_then(|j| {
            SavedFrames::from_json(&j)
                .map_err(|e| crate::log(&format!("dumdum: the stored frames are unusable: {e}")))
                .ok()
        });
        let engine = Saved::from_json(&stored)
            .map_err(|e| e.to_string())
            .and_then(|saved| Engine::restore(saved, frames));
        match engine {
            Ok(engine) => {
                self.persisted = Persisted::restored(stored, &engine);
                self.push(Action::Restored {
                    nick: engine.nick().to_owned(),
                    active: engine.active().map(str::to_owned),
                });
                self.engine = Some(engine);
                self.connect();
            }
            Err(e) => {
                crate::log(&format!("dumdum: the stored session is unusable: {e}"));
                storage::session_remove(SESSION_KEY);
                storage::session_remove(SESSION_FRAMES_KEY);
            }
        }
    }

    /// Opens a new WebSocket for the current engine.
    fn connect(&mut self) {
        self.retry = None;
        self.retry_at_ms = None;
        self.socket = None;
        self.ack_timer = None;
        self.move_timer = None;
        let bridge = match &self.bridge {
            Ok(bridge) => bridge,
            Err(e) => {
                let problem = Problem::BadBridgeAddress(e.clone());
                self.plan_retry(problem, false);
                return;
            }
        };
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        engine.begin_connection();
        // `/ws?node=NAME` when resuming a session on a named node.
        let url = bridge.ws_url_at(engine.ws_node());
        self.generation += 1;
        let generation = self.generation;
        let me = self.me.clone();
        let opened = Socket::open(&url, SUBPROTOCOL, move |ev| {
            if let Some(rc) = me.upgrade() {
                on_socket(&rc, generation, ev);
            }
        });
        match opened {
            Ok(s) => self.socket = Some(s),
            Err(e) => {
                crate::log(&format!("dumdum: {e}"));
                self.closed(1006, "");
            }
        }
    }

    /// The socket ended: explain why and plan the next attempt.
    fn closed(&mut self, code: u16, reason: &str) {
        self.socket = None;
        self.ack_timer = None;
        self.move_timer = None;
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let problem = engine.on_close(code, reason);
        let at_once = engine.reconnect_now();
        self.backoff.disconnected(now_ms());
        if problem == Problem::NotOpened {
            self.probe_bridge();
        }
        self.plan_retry(problem, at_once);
    }

    /// Schedules the next attempt after `problem`: `at_once` when the
    /// session moves to another bridge (see [`Engine::reconnect_now`]).
    fn plan_retry(&mut self, problem: Problem, at_once: bool) {
        self.retry = None;
        self.retry_at_ms = None;
        if !problem.retryable() {
            self.push(Action::Disconnected {
                problem,
                retry_at_ms: None,
            });
            return;
        }
        if !browser_online() {
            self.push(Action::Offline);
            return;
        }
        let delay = match problem {
            _ if at_once => 0,
            // A few quick retries: the old session may be ending.
            Problem::NickInUse(_) => NICK_RETRY_DELAY_MS,
            // A full bridge: longer, more spread out.
            Problem::Busy => self.backoff.next_busy_delay_ms(js_sys::Math::random()),
            _ => self.backoff.next_delay_ms(js_sys::Math::random()),
        };
        let me = self.me.clone();
        self.retry = Some(Timeout::new(
            u32::try_from(delay).unwrap_or(u32::MAX),
            move || {
                if let Some(rc) = me.upgrade() {
                    with_driver(&rc, Driver::connect);
                }
            },
        ));
        let at = now_ms() + delay;
        self.retry_at_ms = Some(at);
        self.push(Action::Disconnected {
            problem,
            retry_at_ms: Some(at),
        });
    }

    /// Queues a view action after the engine's (dispatched by [`with_driver`]).
    fn push(&mut self, a: Action) {
        self.pending.push(a);
    }

    /// After a WebSocket failed before opening: finds out why from the
    /// bridge's `/healthz` (see [`Problem::after_failed_open`]) and says
    /// so while the retry waits; a hopeless problem cancels the retry.
    fn probe_bridge(&self) {
        let Ok(bridge) = self.bridge.clone() else {
            return;
        };
        let me = self.me.clone();
        let generation = self.generation;
        wasm_bindgen_futures::spawn_local(async move {
            let found = probe(&bridge).await;
            let problem = Problem::after_failed_open(&bridge, &page_origin(), &found);
            crate::log(&format!(
                "dumdum: probe of {}: {}",
                bridge.origin(),
                found.describe()
            ));
            let Some(rc) = me.upgrade() else {
                return;
            };
            with_driver(&rc, |d| {
                // Only while this attempt's retry is still waiting.
                if d.generation != generation || d.socket.is_some() || d.retry.is_none() {
                    return;
                }
                if !problem.retryable() {
                    d.retry = None;
                    d.retry_at_ms = None;
                }
                let retry_at_ms = d.retry_at_ms;
                d.push(Action::Disconnected {
                    problem,
                    retry_at_ms,
                });
            });
        });
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Join { server, nick } => {
                if let Some(engine) = self.engine.as_mut()
                    && engine.server() == server.as_deref()
                    && engine.awaiting_nick()
                {
                    if let Err(e) = engine.authenticate(&nick) {
                        crate::log(&format!("dumdum: {e}"));
                    }
                    return;
                }
                if let Some(s) = &server {
                    storage::save(SERVER_KEY, s);
                }
                let preferred = storage::load(&channel_key(server.as_deref()));
                let keep = self
                    .engine
                    .as_ref()
                    .is_some_and(|e| e.server() == server.as_deref());
                match self.engine.as_mut() {
                    // A reconnect with a new nick keeps what is known of the channels.
                    Some(e) if keep => *e = Engine::new(server, nick, preferred),
                    _ => self.engine = Some(Engine::new(server, nick, preferred)),
                }
                self.backoff.reset();
                self.connect();
            }
            Command::Send { channel, text } => {
                if let Some(e) = self.engine.as_mut()
                    && let Err(err) = e.send_message(&channel, &text)
                {
                    crate::log(&format!("dumdum: message not sent: {err}"));
                }
            }
            Command::Select(channel) => {
                if let Some(e) = self.engine.as_mut() {
                    e.select(&channel);
                }
            }
            Command::LoadOlder { channel, before } => {
                if let Some(e) = self.engine.as_mut() {
                    e.load_older(&channel, before);
                }
            }
            Command::SearchOlder {
                channel,
                query,
                before,
            } => {
                if let Some(e) = self.engine.as_mut() {
                    e.search_older(&channel, &query, before);
                }
            }
            Command::StopSearch => {
                if let Some(e) = self.engine.as_mut() {
                    e.stop_search();
                }
            }
            Command::RetryNow => {
                if self.engine.is_some() && self.socket.is_none() {
                    self.connect();
                }
            }
            Command::SignOut => {
                self.retry = None;
                self.ack_timer = None;
                self.move_timer = None;
                self.generation += 1;
                if let Some(s) = self.socket.take() {
                    s.close(1000, "signed out");
                }
                // `persist` forgets the stored session.
                self.engine = None;
                self.backoff.reset();
                self.push(Action::SignedOut);
            }
        }
    }

    fn came_online(&mut self) {
        if self.engine.is_some() && self.socket.is_none() {
            self.backoff.reset();
            self.connect();
        }
    }

    fn shutdown(&mut self) {
        self.retry = None;
        self.ack_timer = None;
        self.move_timer = None;
        self.online = None;
        self.generation += 1;
        if let Some(s) = self.socket.take() {
            s.close(1000, "page closed");
        }
        // The close ended the session at the bridge.
        self.engine = None;
    }
}

fn on_socket(rc: &Shared, generation: u64, ev: SocketEvent) {
    with_driver(rc, |d| {
        if d.generation != generation {
            return;
        }
        let Some(engine) = d.engine.as_mut() else {
            return;
        };
        match ev {
            SocketEvent::Open => engine.on_open(),
            SocketEvent::Text(t) => engine.on_text(&t),
            SocketEvent::Binary(b) => engine.on_binary(&b),
            SocketEvent::Closed { code, reason, .. } => {
                // Outputs queued before the close (for example the view's
                // last actions) still apply.
                d.closed(code, &reason);
            }
        }
    });
}

/// The bridge's server list, as the action that records it: loaded,
/// failed, or unreachable (no answer at all: offline, or the bridge is
/// down, while the page came from the service worker's saved copy).
async fn fetch_servers(bridge: Result<BridgeAddr, String>) -> Action {
    let bridge = match bridge {
        Ok(b) => b,
        Err(e) => return Action::ServersFailed(e),
    };
    let url = bridge.url("/api/servers");
    let Some(resp) = get(&url, web_sys::RequestMode::Cors).await else {
        return Action::ServersUnreachable(format!("{url} did not answer this page"));
    };
    if !resp.ok() {
        return Action::ServersFailed(format!("HTTP {}", resp.status()));
    }
    let text = match resp.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_string()),
        Err(_) => None,
    };
    let Some(text) = text else {
        return Action::ServersFailed("the body could not be read".to_owned());
    };
    match ServerInfo::list_from_json(&text) {
        Ok(list) => Action::ServersLoaded(list),
        Err(e) => Action::ServersFailed(format!("unexpected answer: {e}")),
    }
}

/// The chat: state, commands, and the connection behind them.
#[hook]
pub fn use_chat() -> ChatContext {
    let state = use_reducer(ChatState::default);
    let dispatch = state.dispatcher();
    let driver: Rc<RefCell<Option<Shared>>> = use_mut_ref(|| None);

    {
        let driver = driver.clone();
        use_effect_with((), move |_| {
            let bridge = locate_bridge();
            if let Err(e) = &bridge {
                crate::log(&format!("dumdum: unusable bridge address: {e}"));
            }
            let shared: Shared = Rc::new_cyclic(|me| {
                RefCell::new(Driver {
                    dispatch: dispatch.clone(),
                    bridge: bridge.clone(),
                    me: me.clone(),
                    engine: None,
                    socket: None,
                    generation: 0,
                    backoff: Backoff::default(),
                    retry: None,
                    retry_at_ms: None,
                    online: None,
                    ack_timer: None,
                    move_timer: None,
                    pending: Vec::new(),
                    persisted: Persisted::default(),
                    replay: crate::notify::Replay::default(),
                })
            });
            if let Some(window) = web_sys::window() {
                let me = Rc::downgrade(&shared);
                let listener = EventListener::new(&window, "online", move |_| {
                    if let Some(rc) = me.upgrade() {
                        with_driver(&rc, Driver::came_online);
                    }
                });
                shared.borrow_mut().online = Some(listener);
            }
            *driver.borrow_mut() = Some(shared.clone());
            if let Some(stored) = storage::session_load(SESSION_KEY) {
                with_driver(&shared, |d| d.restore(stored));
            }
            {
                let dispatch = dispatch.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    dispatch.dispatch(fetch_servers(bridge).await);
                });
            }
            move || {
                with_driver(&shared, Driver::shutdown);
                *driver.borrow_mut() = None;
            }
        });
    }

    let cmd = {
        let driver = driver.clone();
        use_memo((), move |_| {
            Callback::from(move |c: Command| {
                let shared = driver.borrow().clone();
                if let Some(rc) = shared {
                    with_driver(&rc, |d| d.command(c));
                }
            })
        })
    };

    ChatContext {
        state,
        cmd: (*cmd).clone(),
    }
}
