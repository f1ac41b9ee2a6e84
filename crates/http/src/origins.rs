//! The two public origins of a deployment.
//!
//! Every explanation of a routing mistake names an origin ("set the redirect URI to
//! `http://127.0.0.1:3211/api/auth/callback/google`"), so the origins are a value of their
//! own, known once the listeners are bound (a port of 0 is only known then) or configured
//! explicitly when a proxy sits in front.

use std::fmt;
use std::net::SocketAddr;

/// Which of the two listeners a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The client API origin (default port 3210): function API, sync WebSocket, and the
    /// site routes again under `/http/`.
    Client,
    /// The site origin (default port 3211): HTTP actions and sign-in routes at root paths.
    Site,
}

impl Origin {
    /// How the origin is called in messages.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Client => "client API origin",
            Origin::Site => "site origin",
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The public base URLs of the two origins, without a trailing slash
/// (e.g. `http://127.0.0.1:3210` and `http://127.0.0.1:3211`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origins {
    /// The client API origin (`CONVEX_CLOUD_URL` in Convex terms).
    pub client: String,
    /// The site origin (`CONVEX_SITE_URL` in Convex terms).
    pub site: String,
}

impl Origins {
    /// Origins from explicit base URLs; a trailing slash is removed.
    pub fn new(client: impl Into<String>, site: impl Into<String>) -> Self {
        Origins {
            client: trim_slash(client.into()),
            site: trim_slash(site.into()),
        }
    }

    /// The `http://` origins of two bound listeners. An unspecified address (`0.0.0.0`,
    /// `::`) is shown as the loopback address, which is what a local browser can reach.
    pub fn from_addrs(client: SocketAddr, site: SocketAddr) -> Self {
        Origins {
            client: http_origin(client),
            site: http_origin(site),
        }
    }

    /// The base URL of `origin`.
    pub fn of(&self, origin: Origin) -> &str {
        match origin {
            Origin::Client => &self.client,
            Origin::Site => &self.site,
        }
    }

    /// The URL of a site route: `<site origin><path>`.
    pub fn site_url(&self, path: &str) -> String {
        format!("{}{}", self.site, path)
    }

    /// The URL of a site route through the client API origin: `<client origin>/http<path>`.
    pub fn site_url_via_client(&self, path: &str) -> String {
        format!("{}/http{}", self.client, path)
    }
}

fn trim_slash(mut url: String) -> String {
    while url.ends_with('/') {
        url.pop();
    }
    url
}

fn http_origin(addr: SocketAddr) -> String {
    let ip = addr.ip();
    let shown = if ip.is_unspecified() {
        match ip {
            std::net::IpAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::IpAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        ip
    };
    format!("http://{}", SocketAddr::new(shown, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_shown_as_loopback() {
        let origins = Origins::from_addrs(
            "0.0.0.0:3210".parse().expect("a literal address"),
            "[::]:3211".parse().expect("a literal address"),
        );
        assert_eq!(origins.client, "http://127.0.0.1:3210");
        assert_eq!(origins.site, "http://[::1]:3211");
        assert_eq!(
            Origins::new("https://a.example/", "https://b.example").site_url("/x"),
            "https://b.example/x"
        );
    }
}
