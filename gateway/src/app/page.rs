//! Static files embedded in the binary and answered on the client listener like `/healthz`
//! (`GET` only, keep-alive): the chat page of `gateway/web/` (`/`, `/chat.css`, `/chat.js`) and
//! the JavaScript client library of `clients/js/` (`/client/gateway-client.js` and its `.d.ts`).
//!
//! Every file goes out with a Content-Security-Policy that allows nothing but the page's own
//! script and style files (no inline code, so injected markup cannot run) and WebSocket
//! connections back to the same origin; `no-cache` makes a browser ask again after an upgrade.
//! The library's files may also be loaded by pages of any origin (CORS `*`): they are public
//! and carry no credentials, and a module script from another origin needs that header.

use std::io::Write;

use crate::conn::http::{end_head, keeps_alive, write_head, HttpError};
use crate::conn::{Handling, Output};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Request path (without a query).
    pub path: &'static str,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// The file's bytes.
    pub body: &'static [u8],
    /// Sent with `Access-Control-Allow-Origin: *`, for pages of other origins to import.
    pub any_origin: bool,
}

/// The page's files (the HTML refers to the others by these paths), then the client library's.
pub const ASSETS: [Asset; 5] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/chat.html"),
        any_origin: false,
    },
    Asset {
        path: "/chat.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/chat.css"),
        any_origin: false,
    },
    Asset {
        path: "/chat.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/chat.js"),
        any_origin: false,
    },
    Asset {
        path: "/client/gateway-client.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../clients/js/gateway-client.js"),
        any_origin: true,
    },
    Asset {
        path: "/client/gateway-client.d.ts",
        content_type: "application/typescript; charset=utf-8",
        body: include_bytes!("../../../clients/js/gateway-client.d.ts"),
        any_origin: true,
    },
];

/// Sent with every file. `connect-src 'self'` covers `ws:`/`wss:` to the same host and port
/// (CSP Level 3); `img-src data:` is only for the empty favicon that stops a `/favicon.ico` fetch.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The embedded file served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// Write the complete `200` response for `asset`. With `close`, it says `Connection: close`.
pub fn write_asset(out: &mut Vec<u8>, asset: &Asset, close: bool) {
    write_head(out, (200, "OK"), &[], asset.content_type, asset.body.len());
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "Cache-Control: no-cache\r\nContent-Security-Policy: {CONTENT_SECURITY_POLICY}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Cross-Origin-Opener-Policy: same-origin\r\n",
    );
    if asset.any_origin {
        out.extend_from_slice(b"Access-Control-Allow-Origin: *\r\n");
    }
    end_head(out, close, asset.body);
}

/// Answer a request for one of the page's files: `GET` only; the connection waits for the next
/// request unless the client asked to close.
pub fn serve(asset: &Asset, req: &httparse::Request<'_, '_>, out: &mut Output) -> Handling {
    if req.method != Some("GET") {
        return Handling::Refuse(HttpError::MethodNotAllowed);
    }
    let keep_alive = keeps_alive(req);
    write_asset(&mut out.bytes, asset, !keep_alive);
    Handling::Answered { keep_alive }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("page files are UTF-8")
    }

    #[test]
    fn response_has_exact_length_and_security_headers() {
        let asset = find("/").expect("the page is at /");
        let mut out = Vec::new();
        write_asset(&mut out, asset, false);
        let s = String::from_utf8(out).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert!(head.contains("\r\nCache-Control: no-cache\r\n"));
        assert!(head.contains("\r\nX-Content-Type-Options: nosniff\r\n"));
        assert!(head.contains("\r\nContent-Security-Policy: default-src 'none'; "));
        assert!(!head.contains("Connection: close"));
        assert_eq!(body.as_bytes(), asset.body);

        let mut out = Vec::new();
        write_asset(&mut out, asset, true);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nConnection: close\r\n\r\n<!doctype html>"));
    }

    #[test]
    fn client_library_is_javascript_for_any_origin_and_the_page_is_not() {
        let lib = find("/client/gateway-client.js").expect("the library is served");
        assert_eq!(lib.content_type, "text/javascript; charset=utf-8");
        assert!(text(lib).contains("export class GatewayClient"));
        let types = find("/client/gateway-client.d.ts").expect("its types are served");
        assert!(text(types).contains("export class GatewayClient"));
        for (path, any_origin) in [
            ("/", false),
            ("/chat.js", false),
            ("/client/gateway-client.js", true),
            ("/client/gateway-client.d.ts", true),
        ] {
            let mut out = Vec::new();
            write_asset(&mut out, find(path).unwrap(), false);
            let head = String::from_utf8(out).unwrap();
            assert_eq!(
                head.contains("\r\nAccess-Control-Allow-Origin: *\r\n"),
                any_origin,
                "{path}"
            );
        }
    }

    #[test]
    fn policy_allows_no_inline_code_and_no_other_origin() {
        let csp = CONTENT_SECURITY_POLICY;
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(!csp.contains('*'), "{csp}");
        assert!(!csp.contains("http"), "{csp}");
        for directive in [
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
    }

    #[test]
    fn html_loads_only_embedded_files_and_no_inline_code() {
        let html = text(find("/").unwrap());
        // Every local reference is served; nothing is fetched from elsewhere.
        for attr in ["src=\"", "href=\""] {
            for (i, _) in html.match_indices(attr) {
                let rest = &html[i + attr.len()..];
                let url = &rest[..rest.find('"').unwrap()];
                assert!(
                    url == "data:," || find(url).is_some(),
                    "{attr}{url}\" is not an embedded file"
                );
            }
        }
        for inline in [
            "<script>",
            "<style",
            " style=\"",
            " onclick=",
            " onload=",
            "javascript:",
        ] {
            assert!(
                !html.contains(inline),
                "inline code {inline:?} would be blocked by the CSP"
            );
        }
    }

    #[test]
    fn script_never_parses_peer_text_as_markup() {
        let js = text(find("/chat.js").unwrap());
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(sink), "chat.js uses {sink}");
        }
        assert!(js.contains("textContent"));
    }
}
