//! Where connections go and where they come from: `ws://` and `wss://` target URLs (a cluster is several of
//! them) and source address ranges (`127.0.0.2-127.0.0.60`) bound before connect so connection
//! counts can pass one address's ephemeral port range. Both are spread round robin.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

/// One `ws://host[:port][/path]` target, resolved once at start.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Value of the `Host` header.
    pub host_header: String,
    /// Request target, starting with `/`.
    pub path: String,
    /// Resolved socket address (the first the resolver returned).
    pub addr: SocketAddr,
    /// `wss://`: the TLS server name (the host, without port or brackets).
    pub tls: Option<String>,
}

impl Target {
    /// Parse and resolve `url`; the errors say what a valid URL looks like.
    pub fn parse(url: &str) -> Result<Target> {
        let (scheme, rest) = url
            .split_once("://")
            .with_context(|| format!("invalid URL '{url}': expected ws://host[:port][/path]"))?;
        let (tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "ws" => (false, 80),
            "wss" => (true, 443),
            other => bail!("invalid URL '{url}': scheme '{other}' is not ws:// or wss://"),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'/' => (&rest[..at], rest[at..].to_string()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("invalid URL '{url}': expected ws://host[:port][/path]");
        }
        let with_port = if authority.starts_with('[') {
            if authority.ends_with(']') {
                format!("{authority}:{default_port}")
            } else {
                authority.to_string()
            }
        } else if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:{default_port}")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("invalid URL '{url}': cannot resolve '{authority}'"))?
            .next()
            .with_context(|| format!("invalid URL '{url}': '{authority}' has no address"))?;
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        Ok(Target {
            url: url.to_string(),
            host_header: authority.to_string(),
            path,
            addr,
            tls: tls.then(|| host.to_string()),
        })
    }

    /// Parse and resolve an `http://host:port` address (the backend API).
    pub fn parse_http(url: &str) -> Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("invalid API URL '{url}': expected http://host:port"))?;
        let mut t = Target::parse(&format!("ws://{rest}"))
            .with_context(|| format!("invalid API URL '{url}'"))?;
        t.url = url.to_string();
        Ok(t)
    }

    /// This target with `{name}` in its path replaced by `value` (room and channel templates).
    pub fn with_param(&self, name: &str, value: u32) -> Target {
        let key = format!("{{{name}}}");
        let mut t = self.clone();
        t.path = t.path.replace(&key, &value.to_string());
        t.url = t.url.replace(&key, &value.to_string());
        t
    }

    /// True when the path holds the `{name}` template.
    pub fn has_param(&self, name: &str) -> bool {
        self.path.contains(&format!("{{{name}}}"))
    }
}

/// Parse `--source` values: single addresses or inclusive IPv4 ranges `a.b.c.d-a.b.c.e`.
pub fn parse_sources(specs: &[String]) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for spec in specs {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((lo, hi)) = part.split_once('-') {
                let lo: std::net::Ipv4Addr = lo
                    .parse()
                    .with_context(|| format!("bad --source range '{part}'"))?;
                let hi: std::net::Ipv4Addr = hi
                    .parse()
                    .with_context(|| format!("bad --source range '{part}'"))?;
                let (lo, hi) = (u32::from(lo), u32::from(hi));
                if hi < lo || hi - lo > 65_535 {
                    bail!("bad --source range '{part}': empty or longer than 65536 addresses");
                }
                out.extend((lo..=hi).map(|a| IpAddr::V4(a.into())));
            } else {
                out.push(
                    part.parse()
                        .with_context(|| format!("bad --source address '{part}'"))?,
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_port_and_path_parses() {
        let t = Target::parse("ws://127.0.0.1:9001/echo?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(t.path, "/echo?x=1");
        assert_eq!(t.host_header, "127.0.0.1:9001");
    }

    #[test]
    fn url_without_path_gets_slash_and_ipv6_works() {
        let t = Target::parse("ws://[::1]:81").unwrap();
        assert_eq!(t.path, "/");
        assert_eq!(t.addr, "[::1]:81".parse().unwrap());
    }

    #[test]
    fn bad_urls_say_what_is_expected() {
        for bad in ["127.0.0.1:80", "http://x/", "wss:///echo", "ws:///echo"] {
            let err = Target::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn wss_urls_carry_the_tls_server_name_and_port_443() {
        let t = Target::parse("wss://localhost:9443/echo").unwrap();
        assert_eq!(t.tls.as_deref(), Some("localhost"));
        assert_eq!(t.addr.port(), 9443);
        let t = Target::parse("wss://127.0.0.1").unwrap();
        assert_eq!((t.tls.as_deref(), t.addr.port()), (Some("127.0.0.1"), 443));
        let t = Target::parse("wss://[::1]:9/x").unwrap();
        assert_eq!(t.tls.as_deref(), Some("::1"));
        assert!(Target::parse("ws://localhost:1/").unwrap().tls.is_none());
    }

    #[test]
    fn source_ranges_expand_inclusively() {
        let s = parse_sources(&["127.0.0.2-127.0.0.4".into(), "10.0.0.1".into()]).unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[2], "127.0.0.4".parse::<IpAddr>().unwrap());
        assert!(parse_sources(&["127.0.0.9-127.0.0.1".into()]).is_err());
    }

    #[test]
    fn room_template_is_replaced() {
        let t = Target::parse("ws://127.0.0.1:1/room/{room}").unwrap();
        assert!(t.has_param("room"));
        assert_eq!(t.with_param("room", 7).path, "/room/7");
    }
}
