//! The admin page on the API listener: its routes under `/admin`, its password, and its three
//! files (`gateway/web/admin/`), embedded in the binary.
//!
//! Everything under `/admin` needs the admin password (`--admin-secret`, else the API key) as
//! HTTP Basic credentials, so a browser asks for it once and sends it with every later request.
//! `/admin/api/...` are the `/api/...` routes answered for the page; because a browser would
//! also send those credentials with a request another site makes it send, they additionally need
//! the `X-Gateway-Admin` header, which a cross-origin page cannot add without a CORS preflight
//! the API never grants. The client listener serves nothing of this.

use super::error::ApiError;
use super::routes::Route;

/// The path prefix of the admin page and its data.
pub const PREFIX: &str = "/admin";
/// The header every `/admin/api/...` request carries (any value).
pub const ADMIN_HEADER: &str = "x-gateway-admin";

/// One of the page's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminFile {
    /// `/admin`: the page.
    Page,
    /// `/admin/admin.js`.
    Script,
    /// `/admin/admin.css`.
    Style,
}

impl AdminFile {
    /// `Content-Type` and bytes.
    pub fn content(self) -> (&'static str, &'static [u8]) {
        match self {
            AdminFile::Page => (
                "text/html; charset=utf-8",
                include_bytes!("../../web/admin/admin.html"),
            ),
            AdminFile::Script => (
                "text/javascript; charset=utf-8",
                include_bytes!("../../web/admin/admin.js"),
            ),
            AdminFile::Style => (
                "text/css; charset=utf-8",
                include_bytes!("../../web/admin/admin.css"),
            ),
        }
    }
}

/// Sent with the page's files: only the page's own script and style run (no inline code, no
/// other origin), data is fetched from the same origin only, and Trusted Types forbid writing
/// markup from strings, so text from channels, users or messages can never become code.
/// `img-src data:` is only for the empty favicon that stops a `/favicon.ico` fetch.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'; require-trusted-types-for 'script'";

/// Headers of every page file.
pub const FILE_HEADERS: [(&str, &str); 4] = [
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
];

/// What the request carried, as far as the admin routes care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The admin password, as Basic credentials (or `Bearer`).
    pub password: bool,
    /// The `X-Gateway-Admin` header.
    pub admin_header: bool,
}

/// The part of `path` after [`PREFIX`], if the path is the admin page's.
pub fn strip(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(PREFIX)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// Route a request under `/admin` (`rest` is the path after it). The password comes first, so a
/// caller without it learns nothing about what exists.
pub fn route(method: &str, rest: &str, creds: Credentials) -> Result<Route, ApiError> {
    if !creds.password {
        return Err(ApiError::AdminUnauthorized);
    }
    let file = match rest {
        "" | "/" => Some(AdminFile::Page),
        "/admin.js" => Some(AdminFile::Script),
        "/admin.css" => Some(AdminFile::Style),
        _ => None,
    };
    if let Some(file) = file {
        if method != "GET" {
            return Err(ApiError::MethodNotAllowed("GET"));
        }
        return Ok(Route::Admin(file));
    }
    if !rest.starts_with("/api/") {
        return Err(ApiError::NotFound);
    }
    if !creds.admin_header {
        return Err(ApiError::AdminHeaderMissing);
    }
    // The API's own routes, with the admin password standing in for the key.
    let route = super::routes::route(method, rest, true)?;
    match route {
        Route::Healthz | Route::Metrics | Route::Admin(_) => Err(ApiError::NotFound),
        r => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Credentials = Credentials {
        password: true,
        admin_header: true,
    };

    #[test]
    fn files_and_api_routes_need_the_password() {
        assert_eq!(route("GET", "", ALL), Ok(Route::Admin(AdminFile::Page)));
        assert_eq!(route("GET", "/", ALL), Ok(Route::Admin(AdminFile::Page)));
        assert_eq!(
            route("GET", "/admin.js", ALL),
            Ok(Route::Admin(AdminFile::Script))
        );
        assert_eq!(route("GET", "/api/stats", ALL), Ok(Route::Stats));
        assert_eq!(route("POST", "/api/disconnect", ALL), Ok(Route::Disconnect));
        let none = Credentials::default();
        for path in ["", "/admin.js", "/api/stats", "/nope"] {
            assert_eq!(
                route("GET", path, none),
                Err(ApiError::AdminUnauthorized),
                "{path}"
            );
        }
        let no_header = Credentials {
            password: true,
            admin_header: false,
        };
        assert_eq!(
            route("POST", "/api/publish", no_header),
            Err(ApiError::AdminHeaderMissing)
        );
        assert_eq!(
            route("GET", "", no_header),
            Ok(Route::Admin(AdminFile::Page))
        );
        assert_eq!(route("GET", "/nope", ALL), Err(ApiError::NotFound));
        assert_eq!(route("GET", "/api/metrics", ALL), Err(ApiError::NotFound));
        assert_eq!(
            route("POST", "/admin.css", ALL),
            Err(ApiError::MethodNotAllowed("GET"))
        );
    }

    #[test]
    fn only_the_admin_prefix_is_stripped() {
        assert_eq!(strip("/admin"), Some(""));
        assert_eq!(strip("/admin/api/stats"), Some("/api/stats"));
        assert_eq!(strip("/administrator"), None);
        assert_eq!(strip("/api/stats"), None);
    }

    #[test]
    fn the_page_refers_only_to_its_own_files() {
        let page = std::str::from_utf8(AdminFile::Page.content().1).expect("UTF-8");
        assert!(page.contains(r#"src="/admin/admin.js""#));
        assert!(page.contains(r#"href="/admin/admin.css""#));
        assert!(!page.contains("<script>"), "no inline script");
        assert!(!page.contains("style="), "no inline style");
        assert!(!page.contains("http://") && !page.contains("https://"));
        let script = std::str::from_utf8(AdminFile::Script.content().1).expect("UTF-8");
        assert!(!script.contains("innerHTML") && !script.contains("eval("));
    }
}
