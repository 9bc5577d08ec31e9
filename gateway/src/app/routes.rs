//! The client listener's URL table: which path is a plain response (`/healthz`, the chat page's
//! files), which upgrades and to what [`Route`], and what is not found. The one place a path
//! is matched.

use crate::conn::http::{keeps_alive, write_response, HttpError};
use crate::conn::{Handling, Output};

use super::page;

/// What an upgraded connection speaks, chosen by the request path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Route {
    /// `/echo`: every data message is sent back (conformance tools and benchmarks drive it).
    #[default]
    Echo,
    /// `/ws`: the JSON client protocol ([`super::ws`]).
    Ws,
    /// `/raw`: bare deliveries of the channels named in the query; client frames are ignored.
    Raw,
    /// `/broadcast`: the bench protocol (`pub:<text>` publishes to every other subscriber).
    Broadcast,
    /// `/socket.io/`: Engine.IO 4 and Socket.IO 5 ([`super::sio`]).
    SocketIo,
}

impl Route {
    /// The route upgrading on `path` (without the query), if any.
    pub fn from_path(path: &str) -> Option<Route> {
        match path {
            "/echo" => Some(Route::Echo),
            "/ws" => Some(Route::Ws),
            "/raw" => Some(Route::Raw),
            "/broadcast" => Some(Route::Broadcast),
            _ => None,
        }
    }
}

/// What a request for `target` (path and query) gets: `Ok(route)` to upgrade, or the handling
/// of a plain request (its response already in `out`).
pub fn route(req: &httparse::Request<'_, '_>, out: &mut Output) -> Result<Route, Handling> {
    let target = req.path.unwrap_or("/");
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if let Some(route) = Route::from_path(path) {
        return Ok(route);
    }
    if path == super::sio::PATH || path == "/socket.io" {
        return super::sio::on_request(req, out).map(|()| Route::SocketIo);
    }
    Err(match path {
        "/healthz" => healthz(req, out),
        _ => match page::find(path) {
            Some(asset) => page::serve(asset, req, out),
            None => Handling::Refuse(HttpError::NotFound),
        },
    })
}

/// `GET /healthz`: `200 ok`, keep-alive honoured.
fn healthz(req: &httparse::Request<'_, '_>, out: &mut Output) -> Handling {
    if req.method != Some("GET") {
        return Handling::Refuse(HttpError::MethodNotAllowed);
    }
    let keep_alive = keeps_alive(req);
    write_response(&mut out.bytes, (200, "OK"), &[], "ok\n", !keep_alive);
    Handling::Answered { keep_alive }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(raw: &str) -> (Result<Route, Handling>, String) {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).expect("a valid request");
        let mut out = Output::new();
        let r = route(&req, &mut out);
        (r, String::from_utf8(out.bytes).expect("text"))
    }

    #[test]
    fn upgrade_paths_name_their_route_whatever_the_query() {
        for (path, want) in [
            ("/echo", Route::Echo),
            ("/ws?user=a", Route::Ws),
            ("/raw?channel=x", Route::Raw),
            ("/broadcast", Route::Broadcast),
        ] {
            let (r, out) = handle(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
            assert_eq!(r, Ok(want), "{path}");
            assert!(out.is_empty(), "an upgrade path writes nothing itself");
        }
    }

    #[test]
    fn healthz_and_page_are_answered_and_other_paths_are_404() {
        let (r, out) = handle("GET /healthz?x HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r, Err(Handling::Answered { keep_alive: true }));
        assert!(
            out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("ok\n"),
            "{out}"
        );
        let (r, out) = handle("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        assert_eq!(r, Err(Handling::Answered { keep_alive: false }));
        assert!(out.contains("text/html"), "{out}");
        let (r, _) = handle("POST /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r, Err(Handling::Refuse(HttpError::MethodNotAllowed)));
        let (r, out) = handle("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(r, Err(Handling::Refuse(HttpError::NotFound)));
        assert!(out.is_empty());
    }
}
