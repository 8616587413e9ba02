//! What a request says about who sent it, read the same way by every page: the client's
//! address (behind a reverse proxy too, when the deployment says one sets `X-Forwarded-For`) and
//! the language the browser prefers among those the pages are written in.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::ACCEPT_LANGUAGE;

use super::AppState;
use crate::citizen::Citizens;

/// The page language: the browser's first choice we have words for, else the deployment's.
pub fn language(state: &AppState, headers: &HeaderMap) -> String {
    let ours = ["it", "en"];
    headers
        .get(ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|l| {
            l.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .map(|l| l.split('-').next().unwrap_or("").to_owned())
        .find(|l| ours.contains(&l.as_str()))
        .unwrap_or_else(|| {
            let d = state.default_language.primary();
            if ours.contains(&d) {
                d.to_owned()
            } else {
                "en".to_owned()
            }
        })
}

/// The client's address: the connection's, or the last `X-Forwarded-For` entry when the
/// deployment says a reverse proxy sets it.
pub fn client(c: &Citizens, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    if c.settings().forwarded_for
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|v| v.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return ip;
    }
    peer.ip()
}
