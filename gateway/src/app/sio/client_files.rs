//! `/socket.io/socket.io.js` (and `.min.js`, `.esm.min.js`): the browser builds of the npm
//! package `socket.io-client`, which pages load with `<script src="/socket.io/socket.io.js">`.
//! The gateway ships none of them: `--socketio-client-dir` names the package's `dist` folder
//! (read once at start); without it these paths answer 404 with a hint saying how to serve them.

use std::io::Write as _;
use std::path::Path;

use crate::conn::http::{end_head, keeps_alive, write_head, HttpError};
use crate::conn::{Handling, Output};

/// The files served, by name under `/socket.io/`.
pub const NAMES: [&str; 3] = ["socket.io.js", "socket.io.min.js", "socket.io.esm.min.js"];

/// The hint a request gets when no folder is configured.
const NOT_CONFIGURED: &str = "socket.io.js is not served: start the gateway with \
    --socketio-client-dir naming the dist folder of the npm package socket.io-client \
    (npm install socket.io-client, then node_modules/socket.io-client/dist)\n";

/// The files, read at start.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientFiles {
    files: Vec<(&'static str, Box<[u8]>)>,
}

impl ClientFiles {
    /// Read every file of [`NAMES`] from `dir`; a missing one is an error naming it.
    pub fn read(dir: &Path) -> Result<ClientFiles, String> {
        let mut files = Vec::new();
        for name in NAMES {
            let path = dir.join(name);
            let body = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read {}: {e} (want the dist folder of socket.io-client)",
                    path.display()
                )
            })?;
            files.push((name, body.into_boxed_slice()));
        }
        Ok(ClientFiles { files })
    }

    fn find(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| &**b)
    }
}

/// Answer `path` if it is one of the client files: `None` for any other path.
pub fn serve(
    path: &str,
    files: Option<&ClientFiles>,
    req: &httparse::Request<'_, '_>,
    out: &mut Output,
) -> Option<Handling> {
    let name = path.strip_prefix(super::PATH)?;
    if !NAMES.contains(&name) {
        return None;
    }
    if req.method != Some("GET") {
        return Some(Handling::Refuse(HttpError::MethodNotAllowed));
    }
    let keep_alive = keeps_alive(req);
    let close = !keep_alive;
    match files.and_then(|f| f.find(name)) {
        Some(body) => {
            let ct = "text/javascript; charset=utf-8";
            write_head(&mut out.bytes, (200, "OK"), &[], ct, body.len());
            let _ = write!(
                out.bytes,
                "Cache-Control: public, max-age=3600\r\nX-Content-Type-Options: nosniff\r\n\
                 Access-Control-Allow-Origin: *\r\n"
            );
            end_head(&mut out.bytes, close, body);
        }
        None => {
            let body = NOT_CONFIGURED.as_bytes();
            write_head(
                &mut out.bytes,
                (404, "Not Found"),
                &[],
                "text/plain",
                body.len(),
            );
            end_head(&mut out.bytes, close, body);
        }
    }
    Some(Handling::Answered { keep_alive })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, files: Option<&ClientFiles>) -> (Option<Handling>, String) {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(raw.as_bytes()).unwrap();
        let mut out = Output::new();
        let h = serve(path, files, &req, &mut out);
        (h, String::from_utf8_lossy(&out.bytes).into_owned())
    }

    #[test]
    fn files_are_served_when_read_and_a_hint_otherwise() {
        let dir = std::env::temp_dir().join(format!("sio-client-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(ClientFiles::read(&dir)
            .unwrap_err()
            .contains("socket.io.js"));
        for name in NAMES {
            std::fs::write(dir.join(name), format!("/* {name} */")).unwrap();
        }
        let files = ClientFiles::read(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for name in NAMES {
            let (h, out) = get(&format!("/socket.io/{name}"), Some(&files));
            assert_eq!(h, Some(Handling::Answered { keep_alive: true }));
            assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
            assert!(out.contains("text/javascript"), "{out}");
            assert!(out.ends_with(&format!("/* {name} */")), "{out}");
        }
        let (h, out) = get("/socket.io/socket.io.js", None);
        assert_eq!(h, Some(Handling::Answered { keep_alive: true }));
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
        assert!(out.contains("--socketio-client-dir"), "{out}");
        assert_eq!(get("/socket.io/other.js", Some(&files)).0, None);
        assert_eq!(get("/socket.io/", Some(&files)).0, None);
    }
}
