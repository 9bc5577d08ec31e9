//! A client of the backend API for the socket suites: one keep-alive connection, requests with
//! the suites' API key, and the JSON of a response.

use serde_json::{json, Value};

use super::*;

/// The API key the suites start gateways with (`--api-key`).
pub const API_KEY: &str = "test-api-key";

/// One API connection (keep-alive: every request goes over the same socket).
pub struct Api {
    pub c: Client,
}

impl Api {
    pub fn connect(gw: &Gateway) -> Api {
        Api {
            c: Client::connect(gw.api_addr()),
        }
    }

    pub fn raw(&mut self, req: &[u8]) -> Response {
        self.c.send_raw(req);
        self.c.read_response()
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        key: &str,
    ) -> Response {
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.raw(req.as_bytes())
    }

    pub fn post(&mut self, path: &str, body: Value) -> Response {
        self.request("POST", path, Some(&body), API_KEY)
    }

    pub fn get(&mut self, path: &str) -> Response {
        self.request("GET", path, None, API_KEY)
    }

    /// POST and expect 202 `{"ok":true}`.
    pub fn accepted(&mut self, path: &str, body: Value) {
        let r = self.post(path, body.clone());
        assert_eq!(r.status, 202, "{path} {body} -> {}", text(&r));
        assert_eq!(json_of(&r), json!({"ok":true}));
    }
}

pub fn text(r: &Response) -> String {
    format!("{} {}", r.status, String::from_utf8_lossy(&r.body))
}

pub fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", text(r)))
}
