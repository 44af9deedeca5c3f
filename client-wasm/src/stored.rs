//! The JSON forms of what the page stores ([`Saved`], [`SavedFrames`] in
//! `sessionStorage`) and reads from the bridge (`/api/servers`), written
//! and read with [`dumdum_protocol::json`] rather than serde: the same
//! JSON serde's derives wrote (fields in declaration order, enums tagged by
//! `state` / `q` in snake case), for a smaller wasm.
//!
//! Reading follows serde's derives too: unknown fields are ignored, a
//! missing or `null` optional field is `None`, a missing required field or
//! a wrong type is an error.

use dumdum_protocol::json::{self, JsonError, Object, Value};

use crate::engine::{Saved, SavedClient, SavedFrames, SavedQuery};
use crate::state::{Security, ServerInfo};

/// Why stored or fetched JSON could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    /// Not JSON.
    #[error("{0}")]
    Json(#[from] JsonError),
    /// A field is missing or has the wrong type.
    #[error("field `{0}` is missing or has the wrong type")]
    Field(&'static str),
}

fn field<'a>(v: &'a Value, key: &'static str) -> Result<&'a Value, StoredError> {
    match v {
        Value::Object(_) => v.get(key).ok_or(StoredError::Field(key)),
        _ => Err(StoredError::Field(key)),
    }
}

fn req_str(v: &Value, key: &'static str) -> Result<String, StoredError> {
    field(v, key)?
        .as_str()
        .map(str::to_owned)
        .ok_or(StoredError::Field(key))
}

fn opt<'a>(v: &'a Value, key: &'static str) -> Option<&'a Value> {
    v.get(key).filter(|x| !matches!(x, Value::Null))
}

fn opt_str(v: &Value, key: &'static str) -> Result<Option<String>, StoredError> {
    opt(v, key)
        .map(|x| x.as_str().map(str::to_owned).ok_or(StoredError::Field(key)))
        .transpose()
}

fn req_u64(v: &Value, key: &'static str) -> Result<u64, StoredError> {
    field(v, key)?.as_u64().ok_or(StoredError::Field(key))
}

fn req_bool(v: &Value, key: &'static str) -> Result<bool, StoredError> {
    field(v, key)?.as_bool().ok_or(StoredError::Field(key))
}

fn opt_bool(v: &Value, key: &'static str) -> Result<bool, StoredError> {
    v.get(key)
        .map_or(Ok(false), |x| x.as_bool().ok_or(StoredError::Field(key)))
}

fn array<'a>(v: &'a Value, key: &'static str) -> Result<&'a [Value], StoredError> {
    v.as_array().ok_or(StoredError::Field(key))
}

/// Each item read with `read`; the first error ends it. (A loop: smaller
/// wasm than `collect::<Result<Vec<_>, _>>`.)
fn each<T>(
    items: &[Value],
    read: impl Fn(&Value) -> Result<T, StoredError>,
) -> Result<Vec<T>, StoredError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        out.push(read(item)?);
    }
    Ok(out)
}

impl SavedQuery {
    fn to_json(self) -> String {
        let o = Object::new();
        match self {
            SavedQuery::Newest => o.str("q", "newest"),
            SavedQuery::OlderThan { id } => o.str("q", "older_than").u64("id", id),
            SavedQuery::NewerThan { id } => o.str("q", "newer_than").u64("id", id),
            SavedQuery::Between { after, before } => o
                .str("q", "between")
                .u64("after", after)
                .u64("before", before),
        }
        .finish()
    }

    fn from_value(v: &Value) -> Result<SavedQuery, StoredError> {
        Ok(match req_str(v, "q")?.as_str() {
            "newest" => SavedQuery::Newest,
            "older_than" => SavedQuery::OlderThan {
                id: req_u64(v, "id")?,
            },
            "newer_than" => SavedQuery::NewerThan {
                id: req_u64(v, "id")?,
            },
            "between" => SavedQuery::Between {
                after: req_u64(v, "after")?,
                before: req_u64(v, "before")?,
            },
            _ => return Err(StoredError::Field("q")),
        })
    }
}

impl SavedClient {
    fn to_json(&self) -> String {
        let o = Object::new();
        match self {
            SavedClient::Start => o.str("state", "start"),
            SavedClient::AwaitingHello => o.str("state", "awaiting_hello"),
            SavedClient::Unauthenticated { tls } => {
                o.str("state", "unauthenticated").bool("tls", *tls)
            }
            SavedClient::Authenticating { nick, tls } => o
                .str("state", "authenticating")
                .str("nick", nick)
                .bool("tls", *tls),
            SavedClient::Ready { nick, tls } => {
                o.str("state", "ready").str("nick", nick).bool("tls", *tls)
            }
        }
        .finish()
    }

    fn from_value(v: &Value) -> Result<SavedClient, StoredError> {
        Ok(match req_str(v, "state")?.as_str() {
            "start" => SavedClient::Start,
            "awaiting_hello" => SavedClient::AwaitingHello,
            "unauthenticated" => SavedClient::Unauthenticated {
                tls: req_bool(v, "tls")?,
            },
            "authenticating" => SavedClient::Authenticating {
                nick: req_str(v, "nick")?,
                tls: req_bool(v, "tls")?,
            },
            "ready" => SavedClient::Ready {
                nick: req_str(v, "nick")?,
                tls: req_bool(v, "tls")?,
            },
            _ => return Err(StoredError::Field("state")),
        })
    }
}

impl Security {
    fn to_json(&self) -> String {
        Object::new()
            .str("tls_version", &self.tls_version)
            .str("peer", &self.peer)
            .str("fingerprint", &self.fingerprint)
            .finish()
    }

    fn from_value(v: &Value) -> Result<Security, StoredError> {
        Ok(Security {
            tls_version: req_str(v, "tls_version")?,
            peer: req_str(v, "peer")?,
            fingerprint: req_str(v, "fingerprint")?,
        })
    }
}

impl Saved {
    /// The JSON kept in `sessionStorage`.
    pub fn to_json(&self) -> String {
        let history = json::array(
            self.history
                .iter()
                .map(|(channel, q)| json::array([json::string(channel), q.to_json()])),
        );
        let o = Object::new()
            .opt_str("server", self.server.as_deref())
            .str("nick", &self.nick)
            .str("key", &self.key)
            .u64("received", self.received)
            .u64("sent", self.sent)
            .raw("client", self.client.to_json())
            .raw("history", history)
            .opt_str("active", self.active.as_deref())
            .opt_str("upstream", self.upstream.as_deref())
            .raw(
                "security",
                self.security
                    .as_ref()
                    .map_or_else(|| "null".to_owned(), Security::to_json),
            )
            .u64("sn", u64::from(self.sn));
        match &self.node {
            Some(node) => o.str("node", node),
            None => o,
        }
        .finish()
    }

    /// Reads what [`Saved::to_json`] wrote (or an older page did).
    pub fn from_json(text: &str) -> Result<Saved, StoredError> {
        let v = json::parse(text)?;
        let history = each(
            array(field(&v, "history")?, "history")?,
            |pair| match pair.as_array() {
                Some([channel, q]) => Ok((
                    channel
                        .as_str()
                        .ok_or(StoredError::Field("history"))?
                        .to_owned(),
                    SavedQuery::from_value(q)?,
                )),
                _ => Err(StoredError::Field("history")),
            },
        )?;
        Ok(Saved {
            server: opt_str(&v, "server")?,
            nick: req_str(&v, "nick")?,
            key: req_str(&v, "key")?,
            received: req_u64(&v, "received")?,
            sent: req_u64(&v, "sent")?,
            client: SavedClient::from_value(field(&v, "client")?)?,
            history,
            active: opt_str(&v, "active")?,
            upstream: opt_str(&v, "upstream")?,
            security: opt(&v, "security").map(Security::from_value).transpose()?,
            sn: u32::try_from(req_u64(&v, "sn")?).map_err(|_| StoredError::Field("sn"))?,
            node: opt_str(&v, "node")?,
        })
    }
}

impl SavedFrames {
    /// The JSON kept in `sessionStorage`.
    pub fn to_json(&self) -> String {
        Object::new()
            .str("key", &self.key)
            .u64("from", self.from)
            .raw(
                "frames",
                json::array(self.frames.iter().map(|f| json::string(f))),
            )
            .finish()
    }

    /// Reads what [`SavedFrames::to_json`] wrote.
    pub fn from_json(text: &str) -> Result<SavedFrames, StoredError> {
        let v = json::parse(text)?;
        Ok(SavedFrames {
            key: req_str(&v, "key")?,
            from: req_u64(&v, "from")?,
            frames: each(array(field(&v, "frames")?, "frames")?, |f| {
                f.as_str()
                    .map(str::to_owned)
                    .ok_or(StoredError::Field("frames"))
            })?,
        })
    }
}

impl ServerInfo {
    /// The bridge's `/api/servers` answer: `[{"name", "tls"?, "default"?}]`.
    pub fn list_from_json(text: &str) -> Result<Vec<ServerInfo>, StoredError> {
        let v = json::parse(text)?;
        each(array(&v, "servers")?, |s| {
            Ok(ServerInfo {
                name: req_str(s, "name")?,
                tls: opt_bool(s, "tls")?,
                default: opt_bool(s, "default")?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(client: SavedClient, node: Option<&str>, security: bool) -> Saved {
        Saved {
            server: Some("lo\"cal".into()),
            nick: "bob".into(),
            key: "ab".repeat(32),
            received: u64::MAX,
            sent: 3,
            client,
            history: vec![
                ("#général".into(), SavedQuery::Newest),
                ("b".into(), SavedQuery::OlderThan { id: 7 }),
                ("c".into(), SavedQuery::NewerThan { id: 8 }),
                (
                    "d".into(),
                    SavedQuery::Between {
                        after: 1,
                        before: 9,
                    },
                ),
            ],
            active: None,
            upstream: Some("x\n".into()),
            security: security.then(|| Security {
                tls_version: "TLSv1.3".into(),
                peer: "CN=a".into(),
                fingerprint: "00ff".into(),
            }),
            sn: u32::MAX,
            node: node.map(str::to_owned),
        }
    }

    fn all_saved() -> Vec<Saved> {
        let clients = [
            SavedClient::Start,
            SavedClient::AwaitingHello,
            SavedClient::Unauthenticated { tls: true },
            SavedClient::Authenticating {
                nick: "n".into(),
                tls: false,
            },
            SavedClient::Ready {
                nick: "m".into(),
                tls: true,
            },
        ];
        let mut out = Vec::new();
        for c in clients {
            out.push(saved(c.clone(), None, false));
            out.push(saved(c, Some("b1"), true));
        }
        out
    }

    #[test]
    fn saved_round_trips() {
        for s in all_saved() {
            let text = s.to_json();
            assert_eq!(Saved::from_json(&text), Ok(s), "{text}");
        }
        let f = SavedFrames {
            key: "k".into(),
            from: 4,
            frames: vec!["00ff".into(), String::new()],
        };
        assert_eq!(SavedFrames::from_json(&f.to_json()), Ok(f));
    }

    /// What serde's derives wrote, byte for byte (a tab reloaded into a
    /// newer page reads what the older one stored, and the other way
    /// round).
    #[test]
    fn saved_json_is_what_serde_wrote() {
        let s = saved(
            SavedClient::Ready {
                nick: "m".into(),
                tls: true,
            },
            Some("b1"),
            true,
        );
        let serde_text = concat!(
            r#"{"server":"lo\"cal","nick":"bob","key":"abababababababababababababababababababababababababababababababab","#,
            r#""received":18446744073709551615,"sent":3,"client":{"state":"ready","nick":"m","tls":true},"#,
            r##""history":[["#général",{"q":"newest"}],["b",{"q":"older_than","id":7}],["c",{"q":"newer_than","id":8}],["d",{"q":"between","after":1,"before":9}]],"##,
            r#""active":null,"upstream":"x\n","security":{"tls_version":"TLSv1.3","peer":"CN=a","fingerprint":"00ff"},"#,
            r#""sn":4294967295,"node":"b1"}"#
        );
        assert_eq!(s.to_json(), serde_text);
        let unauth = saved(SavedClient::Unauthenticated { tls: false }, None, false).to_json();
        assert!(unauth.contains(r#""client":{"state":"unauthenticated","tls":false}"#));
        assert!(
            unauth.contains(r#""security":null,"sn":4294967295}"#),
            "{unauth}"
        );
        assert!(
            saved(SavedClient::AwaitingHello, None, false)
                .to_json()
                .contains(r#""client":{"state":"awaiting_hello"}"#)
        );
        let frames = SavedFrames {
            key: "k".into(),
            from: 4,
            frames: vec!["00ff".into()],
        };
        assert_eq!(
            frames.to_json(),
            r#"{"key":"k","from":4,"frames":["00ff"]}"#
        );
    }

    #[test]
    fn reading_follows_serde() {
        // Unknown fields ignored; missing or null optional fields are None;
        // an older page's session without `node` loads.
        let old = r#"{"nick":"bob","key":"k","received":1,"sent":2,"client":{"state":"start","x":1},"history":[],"sn":3,"extra":[{}],"active":null}"#;
        let s = Saved::from_json(old).unwrap();
        assert_eq!(
            (s.server, s.node, s.active, s.security),
            (None, None, None, None)
        );
        // Missing required fields and wrong types are errors.
        for (bad, f) in [
            (
                r#"{"key":"k","received":1,"sent":2,"client":{"state":"start"},"history":[],"sn":3}"#,
                "nick",
            ),
            (
                r#"{"nick":"b","key":"k","received":-1,"sent":2,"client":{"state":"start"},"history":[],"sn":3}"#,
                "received",
            ),
            (
                r#"{"nick":"b","key":"k","received":1,"sent":2,"client":{"state":"start"},"history":[],"sn":4294967296}"#,
                "sn",
            ),
            (
                r#"{"nick":"b","key":"k","received":1,"sent":2,"client":{"state":"bye"},"history":[],"sn":3}"#,
                "state",
            ),
            (
                r#"{"nick":"b","key":"k","received":1,"sent":2,"client":{"state":"ready","nick":"x"},"history":[],"sn":3}"#,
                "tls",
            ),
            (
                r#"{"nick":"b","key":"k","received":1,"sent":2,"client":{"state":"start"},"history":[["a"]],"sn":3}"#,
                "history",
            ),
            (
                r#"{"nick":"b","key":"k","received":1,"sent":2,"client":{"state":"start"},"history":[["a",{"q":"older_than"}]],"sn":3}"#,
                "id",
            ),
            (
                r#"{"nick":"b","key":"k","received":1,"sent":2,"client":{"state":"start"},"history":[],"sn":3,"server":5}"#,
                "server",
            ),
        ] {
            assert_eq!(Saved::from_json(bad), Err(StoredError::Field(f)), "{bad}");
        }
        assert!(matches!(Saved::from_json("{"), Err(StoredError::Json(_))));
        assert_eq!(SavedFrames::from_json("[]"), Err(StoredError::Field("key")));
    }

    #[test]
    fn server_list_parses() {
        let list = ServerInfo::list_from_json(
            r#"[{"name":"local","tls":false,"default":true},{"name":"x","extra":1}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].default && !list[0].tls);
        assert!(!list[1].tls && !list[1].default && list[1].name == "x");
        assert_eq!(ServerInfo::list_from_json("[]"), Ok(vec![]));
        assert_eq!(
            ServerInfo::list_from_json(r#"{"name":"x"}"#),
            Err(StoredError::Field("servers"))
        );
        assert_eq!(
            ServerInfo::list_from_json(r#"[{"tls":true}]"#),
            Err(StoredError::Field("name"))
        );
        assert_eq!(
            ServerInfo::list_from_json(r#"[{"name":"x","tls":"yes"}]"#),
            Err(StoredError::Field("tls"))
        );
    }
}
