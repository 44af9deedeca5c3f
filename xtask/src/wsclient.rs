//! The bench's WebSocket client (RFC 6455, client side, no extensions):
//! the upgrade, masked frames out, and the bridge's frames parsed in place
//! from one read buffer. It does per message what the direct client does
//! with its dumdum decoder, so that on a machine whose cores the clients
//! share with the bridge, the two paths are charged the same client cost:
//! a general WebSocket library allocates and copies every message and
//! registers wakers on each poll, which a browser on another machine never
//! charges to the bridge.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail, ensure};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The upgrade's key and the answer it must get (RFC 6455, section 1.3).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The most a response head may take.
const MAX_HEAD: usize = 16 * 1024;
/// Bytes read at once (as the direct client).
const READ: usize = 4096;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A message from the bridge.
#[derive(Debug)]
pub(crate) enum Frame {
    Text(Bytes),
    Binary(Bytes),
    /// Its code (if any) and reason.
    Close(Option<u16>, String),
}

/// One WebSocket to the bridge.
pub(crate) struct WsClient {
    tcp: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
    /// xorshift state for the masking keys.
    seed: u64,
}

impl WsClient {
    /// Upgrades `tcp` (connected to `addr`) on `/ws`, asking for
    /// `protocol`; bytes after the response head stay buffered.
    pub(crate) async fn connect(
        mut tcp: TcpStream,
        addr: SocketAddr,
        protocol: &str,
    ) -> Result<Self> {
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        tcp.write_all(req.as_bytes())
            .await
            .context("sending the upgrade")?;
        let mut buf = BytesMut::with_capacity(READ);
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            ensure!(
                buf.len() < MAX_HEAD,
                "the upgrade response head is too long"
            );
            buf.reserve(READ);
            let n = tcp
                .read_buf(&mut buf)
                .await
                .context("reading the upgrade")?;
            ensure!(n > 0, "the bridge closed during the upgrade");
        };
        let head = buf.split_to(end);
        let head = String::from_utf8_lossy(&head);
        let mut lines = head.lines();
        let status = lines.next().unwrap_or_default();
        ensure!(
            status.split_whitespace().nth(1) == Some("101"),
            "the upgrade was refused: {status}"
        );
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        ensure!(
            header("sec-websocket-accept").as_deref() == Some(ACCEPT),
            "the upgrade answered a wrong Sec-WebSocket-Accept"
        );
        ensure!(
            header("sec-websocket-protocol").as_deref() == Some(protocol),
            "the bridge did not select the subprotocol {protocol}"
        );
        let seed = u64::from(addr.port()) << 32 | u64::from(std::process::id()) | 1;
        Ok(WsClient {
            tcp,
            buf,
            out: Vec::with_capacity(256),
            seed,
        })
    }

    fn mask_key(&mut self) -> [u8; 4] {
        let mut x = self.seed;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        (x as u32).to_le_bytes()
    }

    /// Sends one frame (FIN set), masked.
    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        let key = self.mask_key();
        self.out.clear();
        self.out.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => self.out.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                self.out.push(0x80 | 126);
                self.out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                self.out.push(0x80 | 127);
                self.out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        self.out.extend_from_slice(&key);
        self.out
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.tcp
            .write_all(&self.out)
            .await
            .context("writing to the bridge")
    }

    pub(crate) async fn send_binary(&mut self, payload: &[u8]) -> Result<()> {
        self.send_frame(BINARY, payload).await
    }

    pub(crate) async fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_frame(TEXT, text.as_bytes()).await
    }

    /// Sends a close frame with `code` and `reason`.
    pub(crate) async fn send_close(&mut self, code: u16, reason: &str) -> Result<()> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.send_frame(CLOSE, &payload).await
    }

    /// A whole frame from the buffer: (opcode, payload), if there is one.
    fn parse(&mut self) -> Result<Option<(u8, Bytes)>> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        ensure!(b[0] & 0x80 != 0, "a fragmented message from the bridge");
        ensure!(b[0] & 0x70 == 0, "reserved bits set by the bridge");
        ensure!(b[1] & 0x80 == 0, "a masked frame from the bridge");
        let (len, head) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut n = [0; 8];
                n.copy_from_slice(&b[2..10]);
                (
                    usize::try_from(u64::from_be_bytes(n)).context("a frame too large")?,
                    10,
                )
            }
            126 | 127 => return Ok(None),
            n => (usize::from(n), 2),
        };
        if b.len() < head + len {
            return Ok(None);
        }
        let opcode = b[0] & 0x0F;
        self.buf.advance(head);
        Ok(Some((opcode, self.buf.split_to(len).freeze())))
    }

    /// The next text, binary or close frame; answers pings, skips pongs.
    pub(crate) async fn next(&mut self) -> Result<Frame> {
        loop {
            while let Some((opcode, payload)) = self.parse()? {
                match opcode {
                    BINARY => return Ok(Frame::Binary(payload)),
                    TEXT => return Ok(Frame::Text(payload)),
                    CLOSE => {
                        let code = (payload.len() >= 2)
                            .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                        let reason =
                            String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into();
                        return Ok(Frame::Close(code, reason));
                    }
                    PING => self.send_frame(PONG, &payload).await?,
                    PONG => {}
                    other => bail!("an unknown opcode {other:#x} from the bridge"),
                }
            }
            self.buf.reserve(READ);
            let n = self
                .tcp
                .read_buf(&mut self.buf)
                .await
                .context("reading from the bridge")?;
            ensure!(n > 0, "the bridge closed the connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Frames as a server sends them: unmasked, with each length form.
    use dumdum_protocol::websocket::server_frame;

    #[tokio::test]
    async fn upgrades_then_parses_split_frames_and_answers_pings() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = Vec::new();
            while !req.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1];
                s.read_exact(&mut b).await.unwrap();
                req.push(b[0]);
            }
            let req = String::from_utf8(req).unwrap();
            assert!(req.contains(&format!("Sec-WebSocket-Key: {KEY}")));
            let big = vec![7u8; 70_000];
            let mut bytes = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: p\r\n\r\n"
            )
            .into_bytes();
            // A frame right behind the head, then one in two writes.
            bytes.extend(server_frame(TEXT, b"hello"));
            bytes.extend(server_frame(PING, b"p1"));
            let medium = server_frame(BINARY, &[1u8; 300]);
            bytes.extend_from_slice(&medium[..3]);
            s.write_all(&bytes).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            s.write_all(&medium[3..]).await.unwrap();
            s.write_all(&server_frame(BINARY, &big)).await.unwrap();
            s.write_all(&server_frame(CLOSE, b"\x03\xe8bye"))
                .await
                .unwrap();
            // The pong, masked, and the client's binary frame.
            let mut got = vec![0u8; 2 + 4 + 2];
            s.read_exact(&mut got).await.unwrap();
            let key = [got[2], got[3], got[4], got[5]];
            assert_eq!(got[0], 0x80 | PONG);
            assert_eq!(got[1], 0x80 | 2);
            assert_eq!([got[6] ^ key[0], got[7] ^ key[1]], *b"p1");
            let mut got = vec![0u8; 2 + 4 + 3];
            s.read_exact(&mut got).await.unwrap();
            let key = [got[2], got[3], got[4], got[5]];
            let payload: Vec<u8> = got[6..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(payload, b"abc");
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut ws = WsClient::connect(tcp, addr, "p").await.unwrap();
        assert!(matches!(ws.next().await.unwrap(), Frame::Text(t) if &t[..] == b"hello"));
        assert!(matches!(ws.next().await.unwrap(), Frame::Binary(b) if b.len() == 300));
        assert!(matches!(ws.next().await.unwrap(), Frame::Binary(b) if b.len() == 70_000));
        match ws.next().await.unwrap() {
            Frame::Close(code, reason) => assert_eq!((code, reason.as_str()), (Some(1000), "bye")),
            other => panic!("expected the close, got {other:?}"),
        }
        ws.send_binary(b"abc").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_refused_upgrade_says_so() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut b = [0u8; 512];
            let _ = s.read(&mut b).await;
            s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = WsClient::connect(tcp, addr, "p").await.err().unwrap();
        assert!(format!("{err:#}").contains("403"), "{err:#}");
    }
}
