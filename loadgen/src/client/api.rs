//! A sans-IO client of the gateway's backend HTTP API, for publishing through it: keep-alive
//! HTTP/1.1, `POST /api/publish` with a bearer key, responses parsed (status and Content-Length
//! body) and reported by status. Requests are pipelined; the server answers them in order.

use super::{ConnError, Event, State};

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One keep-alive API connection.
#[derive(Debug)]
pub struct ApiConn {
    state: State,
    head: String,
    rx: Vec<u8>,
    tx: Vec<u8>,
    tx_at: usize,
}

impl ApiConn {
    /// A connection to the API at `host` (the `Host` header) with `key` as bearer token.
    pub fn new(host: &str, key: &str) -> ApiConn {
        ApiConn::post(host, "/api/publish", Some(key))
    }

    /// A connection POSTing JSON to `path` at `host`, with `key` as bearer token if given.
    pub fn post(host: &str, path: &str, key: Option<&str>) -> ApiConn {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        ApiConn {
            state: State::AwaitResponse,
            head: format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\
                 Content-Type: application/json\r\nContent-Length: "
            ),
            rx: Vec::new(),
            tx: Vec::new(),
            tx_at: 0,
        }
    }

    /// TCP is up: the connection is usable (HTTP has no handshake of its own).
    pub fn on_connected(&mut self) {
        self.state = State::Open;
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Queue one publish request with this JSON body.
    pub fn publish(&mut self, body: &[u8]) {
        self.tx.extend_from_slice(self.head.as_bytes());
        self.tx.extend_from_slice(body.len().to_string().as_bytes());
        self.tx.extend_from_slice(b"\r\n\r\n");
        self.tx.extend_from_slice(body);
    }

    /// Bytes to write.
    pub fn tx_pending(&self) -> &[u8] {
        &self.tx[self.tx_at..]
    }

    /// `n` bytes were written.
    pub fn on_written(&mut self, n: usize) {
        self.tx_at += n;
        if self.tx_at >= self.tx.len() {
            self.tx.clear();
            self.tx_at = 0;
        }
    }

    /// Stop sending (the socket is closed right after).
    pub fn close(&mut self) {
        self.state = State::Closed;
    }

    /// Feed bytes read; every complete response is reported as [`Event::Status`].
    pub fn on_read(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(Event<'_>),
    ) -> Result<(), ConnError> {
        self.rx.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            let head_len = match resp.parse(&self.rx[at..]) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if self.rx.len() - at > MAX_HEAD => {
                    return Err(ConnError::Frame("API response head too long".into()))
                }
                Ok(httparse::Status::Partial) => break,
                Err(e) => return Err(ConnError::Frame(format!("bad API response: {e}"))),
            };
            let body_len = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let code = resp.code.unwrap_or(0);
            let Some(end) = (at + head_len).checked_add(body_len) else {
                return Err(ConnError::Frame("API response body too long".into()));
            };
            if end > self.rx.len() {
                break;
            }
            at = end;
            on_event(Event::Status(code));
        }
        self.rx.drain(..at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_responses_are_reported_in_order() {
        let mut c = ApiConn::new("h:1", "k");
        c.on_connected();
        c.publish(br#"{"channel":"c","data":"x"}"#);
        let req = String::from_utf8(c.tx_pending().to_vec()).unwrap();
        assert!(req
            .starts_with("POST /api/publish HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer k\r\n"));
        assert!(req.ends_with("Content-Length: 26\r\n\r\n{\"channel\":\"c\",\"data\":\"x\"}"));
        let wire = b"HTTP/1.1 202 Accepted\r\nContent-Length: 11\r\n\r\n{\"ok\":true}HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n";
        let mut codes = Vec::new();
        for chunk in wire.chunks(7) {
            c.on_read(chunk, |e| {
                if let Event::Status(code) = e {
                    codes.push(code);
                }
            })
            .unwrap();
        }
        assert_eq!(codes, vec![202, 429]);
    }
}
