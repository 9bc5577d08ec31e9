//! The API's routes: method and path to a [`Route`], or 404 / 405.

use super::admin::AdminFile;
use super::error::ApiError;

/// One endpoint of the API listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz` (no key).
    Healthz,
    /// `GET /metrics` (no key).
    Metrics,
    /// `POST /api/publish`.
    Publish,
    /// `POST /api/publish/user`.
    PublishUser,
    /// `POST /api/send`.
    Send,
    /// `POST /api/disconnect`.
    Disconnect,
    /// `GET /api/channels`.
    Channels,
    /// `GET /api/presence?channel=c`.
    Presence,
    /// `GET /api/history?channel=c&limit=N`.
    History,
    /// `GET /api/stats`.
    Stats,
    /// `GET /api/connections?conn=ID` or `?user=U`.
    Connections,
    /// `GET /admin...`: one of the admin page's files (routed by `super::admin`).
    Admin(AdminFile),
    /// `POST /api/socketio/emit`.
    SocketIoEmit,
}

impl Route {
    /// The route for `path` (without the query), whatever the method.
    fn from_path(path: &str) -> Option<Route> {
        Some(match path {
            "/healthz" => Route::Healthz,
            "/metrics" => Route::Metrics,
            "/api/publish" => Route::Publish,
            "/api/publish/user" => Route::PublishUser,
            "/api/send" => Route::Send,
            "/api/disconnect" => Route::Disconnect,
            "/api/channels" => Route::Channels,
            "/api/presence" => Route::Presence,
            "/api/history" => Route::History,
            "/api/stats" => Route::Stats,
            "/api/connections" => Route::Connections,
            "/api/socketio/emit" => Route::SocketIoEmit,
            _ => return None,
        })
    }

    /// The one method this route answers.
    pub fn method(self) -> &'static str {
        match self {
            Route::Publish
            | Route::PublishUser
            | Route::Send
            | Route::Disconnect
            | Route::SocketIoEmit => "POST",
            Route::Healthz
            | Route::Metrics
            | Route::Channels
            | Route::Presence
            | Route::History
            | Route::Stats
            | Route::Connections
            | Route::Admin(_) => "GET",
        }
    }

    /// True when the route needs the API key.
    pub fn needs_key(self) -> bool {
        !matches!(self, Route::Healthz | Route::Metrics | Route::Admin(_))
    }
}

/// Route a request. Paths under `/api/` need the key before anything about them is told, so an
/// unauthenticated caller learns nothing about which routes exist; `authorized` says whether the
/// request carried the right key.
pub fn route(method: &str, path: &str, authorized: bool) -> Result<Route, ApiError> {
    let under_api = path == "/api" || path.starts_with("/api/");
    if under_api && !authorized {
        return Err(ApiError::Unauthorized);
    }
    let route = Route::from_path(path).ok_or(ApiError::NotFound)?;
    let allowed = route.method();
    // HEAD is not served: a GET route refuses it like any other method.
    if method != allowed {
        return Err(ApiError::MethodNotAllowed(allowed));
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_one_method() {
        let cases = [
            ("GET", "/healthz", Route::Healthz),
            ("GET", "/metrics", Route::Metrics),
            ("POST", "/api/publish", Route::Publish),
            ("POST", "/api/publish/user", Route::PublishUser),
            ("POST", "/api/send", Route::Send),
            ("POST", "/api/disconnect", Route::Disconnect),
            ("GET", "/api/channels", Route::Channels),
            ("GET", "/api/presence", Route::Presence),
            ("GET", "/api/history", Route::History),
            ("GET", "/api/stats", Route::Stats),
            ("GET", "/api/connections", Route::Connections),
            ("POST", "/api/socketio/emit", Route::SocketIoEmit),
        ];
        for (method, path, r) in cases {
            assert_eq!(route(method, path, true), Ok(r), "{method} {path}");
            let other = if method == "GET" { "POST" } else { "GET" };
            assert_eq!(
                route(other, path, true),
                Err(ApiError::MethodNotAllowed(method)),
                "{other} {path}"
            );
        }
    }

    #[test]
    fn unknown_paths_are_404_and_api_paths_need_the_key_first() {
        assert_eq!(route("GET", "/nope", true), Err(ApiError::NotFound));
        assert_eq!(route("GET", "/nope", false), Err(ApiError::NotFound));
        assert_eq!(route("GET", "/api/nope", true), Err(ApiError::NotFound));
        assert_eq!(
            route("GET", "/api/nope", false),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            route("POST", "/api/publish", false),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(route("GET", "/metrics", false), Ok(Route::Metrics));
        assert_eq!(route("GET", "/healthz", false), Ok(Route::Healthz));
        assert_eq!(route("GET", "/apifoo", false), Err(ApiError::NotFound));
    }
}
