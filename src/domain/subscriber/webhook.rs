//! Where a webhook goes: a URL, with an optional preset that shapes the body for a chat tool
//! (`slack+https://…`, `mattermost+https://…`, `teams+https://…`), and which network addresses a
//! webhook may reach. An administrator types the URL, so Banditore must not become a way into its
//! own network: private, loopback, link-local and every other special-purpose address is refused
//! unless the configuration allows that network by name (`channels.webhook.allow_networks`). The
//! address is checked here when it is saved (an IP written in the URL); the channel checks every
//! address a name resolves to again at each send, with the same [`WebhookRules::refusal`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// How the body of a webhook is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Banditore's own versioned JSON event (docs: channels/webhook.md).
    Event,
    /// A Slack incoming webhook: `{"text": …}` in Slack's mrkdwn.
    Slack,
    /// A Mattermost incoming webhook: `{"text": …}` in Markdown.
    Mattermost,
    /// A Microsoft Teams Workflows webhook: an Adaptive Card in a `message`.
    Teams,
}

impl Preset {
    const NAMED: [Preset; 3] = [Preset::Slack, Preset::Mattermost, Preset::Teams];

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Event => "event",
            Preset::Slack => "slack",
            Preset::Mattermost => "mattermost",
            Preset::Teams => "teams",
        }
    }
}

/// A network in CIDR notation, `10.20.0.0/16` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let whole = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a network in CIDR notation (e.g. `10.20.0.0/16`)");
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        let net = Network { addr, prefix };
        // The address must be the network's first: `10.20.1.0/16` is a typo for something.
        if !net.contains(addr) || first_of(addr, prefix) != addr {
            return Err(format!(
                "`{s}` has host bits set: the network is `{}/{prefix}`",
                first_of(addr, prefix)
            ));
        }
        Ok(net)
    }
}

fn first_of(addr: IpAddr, prefix: u8) -> IpAddr {
    fn mask(octets: &mut [u8], prefix: u8) {
        for (i, o) in octets.iter_mut().enumerate() {
            let bits = u32::from(prefix).saturating_sub(i as u32 * 8).min(8);
            *o &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        }
    }
    match addr {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            mask(&mut o, prefix);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            mask(&mut o, prefix);
            IpAddr::V6(Ipv6Addr::from(o))
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// What webhook addresses may be, from `channels.webhook`.
#[derive(Debug, Clone, Default)]
pub struct WebhookRules {
    /// Networks a webhook may reach although they are special-purpose (an intranet's).
    pub allow_networks: Vec<Network>,
    /// Whether `http://` is accepted; otherwise only `https://`.
    pub allow_http: bool,
}

/// Special-purpose IPv4 networks (IANA's registry, RFC 6890 and its updates): none is a
/// destination on the public Internet, several are the deployment's own.
const SPECIAL_V4: &[(&str, [u8; 4], u8)] = &[
    ("\"this\" network", [0, 0, 0, 0], 8),
    ("private", [10, 0, 0, 0], 8),
    ("shared address space (CGNAT)", [100, 64, 0, 0], 10),
    ("loopback", [127, 0, 0, 0], 8),
    ("link-local (cloud metadata)", [169, 254, 0, 0], 16),
    ("private", [172, 16, 0, 0], 12),
    ("IETF protocol assignments", [192, 0, 0, 0], 24),
    ("documentation", [192, 0, 2, 0], 24),
    ("6to4 relay anycast", [192, 88, 99, 0], 24),
    ("private", [192, 168, 0, 0], 16),
    ("benchmarking", [198, 18, 0, 0], 15),
    ("documentation", [198, 51, 100, 0], 24),
    ("documentation", [203, 0, 113, 0], 24),
    ("multicast", [224, 0, 0, 0], 4),
    ("reserved (and broadcast)", [240, 0, 0, 0], 4),
];

/// Why `ip` is not a public destination, or `None` when it is.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => SPECIAL_V4
            .iter()
            .find(|(_, net, prefix)| prefix_eq(net, &v4.octets(), *prefix))
            .map(|(why, _, _)| *why),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let seg = v6.segments();
            // NAT64's well-known prefix carries an IPv4 address: judge that one.
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return special_purpose(IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15])));
            }
            let nets: &[(&str, [u16; 2], u8)] = &[
                // Unspecified, loopback, IPv4-mapped and -compatible addresses all start here.
                ("reserved (loopback, unspecified, IPv4-mapped)", [0, 0], 8),
                ("local-use NAT64", [0x64, 0xff9b], 32),
                ("discard-only", [0x100, 0], 16),
                ("IETF protocol assignments (Teredo)", [0x2001, 0], 23),
                ("documentation", [0x2001, 0x0db8], 32),
                ("6to4", [0x2002, 0], 16),
                ("documentation", [0x3fff, 0], 20),
                ("unique local (private)", [0xfc00, 0], 7),
                ("link-local", [0xfe80, 0], 10),
                ("site-local", [0xfec0, 0], 10),
                ("multicast", [0xff00, 0], 8),
            ];
            nets.iter()
                .find(|(_, net, prefix)| {
                    let mut n = [0u8; 4];
                    n[..2].copy_from_slice(&net[0].to_be_bytes());
                    n[2..].copy_from_slice(&net[1].to_be_bytes());
                    prefix_eq(&n, &o[..4], (*prefix).min(32))
                })
                .map(|(why, _, _)| *why)
        }
    }
}

impl WebhookRules {
    /// Why a webhook may not reach `ip`, or `None` when it may: a special-purpose address is
    /// refused unless one of `allow_networks` holds it.
    pub fn refusal(&self, ip: IpAddr) -> Option<String> {
        let why = special_purpose(ip)?;
        if self.allow_networks.iter().any(|n| n.contains(ip)) {
            return None;
        }
        Some(format!(
            "{ip} is a {why} address; a webhook reaches it only when channels.webhook.allow_networks holds it"
        ))
    }
}

/// A checked webhook address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAddress {
    pub preset: Preset,
    pub url: url::Url,
}

impl WebhookAddress {
    /// Reads an address as stored or typed: `https://…`, or a preset and `+` before it.
    pub fn parse(raw: &str, rules: &WebhookRules) -> Result<WebhookAddress, String> {
        let raw = raw.trim();
        let shown: String = raw.chars().take(200).collect();
        let (preset, rest) = match raw.split_once('+') {
            Some((name, rest)) if !name.contains([':', '/']) => {
                let preset = Preset::NAMED
                    .into_iter()
                    .find(|p| p.as_str().eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        format!(
                            "`{}` is not a webhook preset (known: slack, mattermost, teams)",
                            name.chars().take(40).collect::<String>()
                        )
                    })?;
                (preset, rest)
            }
            _ => (Preset::Event, raw),
        };
        // What someone who may not read the URL was shown, sent back as it was read (a
        // subscriber read, changed and written whole): saved, it would replace the real URL.
        if rest.contains('•') {
            return Err(format!(
                "`{shown}` is a webhook address as shown masked, not the URL: write the whole URL (administrators read it), or leave the webhook out of the edit to keep it"
            ));
        }
        let url =
            url::Url::parse(rest).map_err(|e| format!("`{shown}` is not a webhook URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if rules.allow_http => {}
            "http" => {
                return Err(format!(
                    "`{shown}` is not https: a webhook carries incidents in clear text over http only when channels.webhook.allow_http is true"
                ));
            }
            other => return Err(format!("a webhook URL is https, not `{other}`")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "a webhook URL carries no user name or password: the signature proves the sender"
                    .into(),
            );
        }
        if url.fragment().is_some() {
            return Err("a webhook URL has no `#fragment`: it is never sent".into());
        }
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(format!("`{shown}` names no host")),
        };
        if let Some(why) = ip.and_then(|ip| rules.refusal(ip)) {
            return Err(why);
        }
        if url.as_str().len() > 2000 {
            return Err("a webhook URL is at most 2,000 characters".into());
        }
        Ok(WebhookAddress { preset, url })
    }
}

/// A webhook address as whoever is not an administrator reads it: the scheme and the host, the
/// rest hidden. A chat tool's URL is its credential (Slack's path is the token), so the path,
/// the query, the port and the preset are left out, in the API, the console and every error
/// that quotes the address.
pub fn masked(raw: &str) -> String {
    let raw = raw.trim();
    let url = match raw.split_once('+') {
        Some((name, rest)) if !name.contains([':', '/']) => rest,
        _ => raw,
    };
    match url::Url::parse(url) {
        Ok(u) => format!("{}://{}/••••••••", u.scheme(), u.host_str().unwrap_or("")),
        Err(_) => "••••••••".to_owned(),
    }
}

impl fmt::Display for WebhookAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.preset {
            Preset::Event => write!(f, "{}", self.url),
            p => write!(f, "{}+{}", p.as_str(), self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rules() -> WebhookRules {
        WebhookRules::default()
    }

    #[test]
    fn public_addresses_pass_and_special_ones_are_named() {
        for public in [
            "8.8.8.8",
            "93.184.216.34",
            "2a00:1450:4002::200e",
            "64:ff9b::808:808",
        ] {
            assert_eq!(special_purpose(public.parse().unwrap()), None, "{public}");
        }
        for (ip, why) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("0.0.0.0", "\"this\" network"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved (and broadcast)"),
            ("::1", "reserved (loopback, unspecified, IPv4-mapped)"),
            ("::", "reserved (loopback, unspecified, IPv4-mapped)"),
            (
                "::ffff:8.8.8.8",
                "reserved (loopback, unspecified, IPv4-mapped)",
            ),
            (
                "::ffff:127.0.0.1",
                "reserved (loopback, unspecified, IPv4-mapped)",
            ),
            ("64:ff9b::7f00:1", "loopback"),
            ("fd12:3456::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
        ] {
            assert_eq!(special_purpose(ip.parse().unwrap()), Some(why), "{ip}");
        }
    }

    #[test]
    fn a_masked_address_keeps_the_scheme_and_host_alone() {
        for (raw, shown) in [
            (
                "slack+https://hooks.slack.com/services/T0/B0/SEGRETO",
                "https://hooks.slack.com/••••••••",
            ),
            (
                "https://cup.example:8443/a+b?k=SEGRETO",
                "https://cup.example/••••••••",
            ),
            (
                "teams+https://x.example/SEGRETO#f",
                "https://x.example/••••••••",
            ),
            ("not a url SEGRETO", "••••••••"),
        ] {
            assert_eq!(masked(raw), shown, "{raw}");
        }
    }

    #[test]
    fn an_allowed_network_lets_its_addresses_through_and_no_other() {
        let rules = WebhookRules {
            allow_networks: vec!["10.20.0.0/16".parse().unwrap()],
            allow_http: false,
        };
        assert_eq!(rules.refusal("10.20.3.4".parse().unwrap()), None);
        assert!(rules.refusal("10.21.0.1".parse().unwrap()).is_some());
        assert!(rules.refusal("127.0.0.1".parse().unwrap()).is_some());
        assert!("10.20.1.0/16".parse::<Network>().is_err());
        assert!("10.20.0.0/33".parse::<Network>().is_err());
        assert!("fd00::/8".parse::<Network>().is_ok());
        assert!("nonsense".parse::<Network>().is_err());
    }

    #[test]
    fn addresses_read_with_their_preset_and_refuse_what_a_webhook_cannot_be() {
        let a = WebhookAddress::parse(" https://Cup.Example.org/hook?x=1 ", &rules()).unwrap();
        assert_eq!(a.preset, Preset::Event);
        assert_eq!(a.to_string(), "https://cup.example.org/hook?x=1");
        let s = WebhookAddress::parse("Slack+https://hooks.slack.com/services/T/B/X", &rules())
            .unwrap();
        assert_eq!(s.preset, Preset::Slack);
        assert_eq!(
            s.to_string(),
            "slack+https://hooks.slack.com/services/T/B/X"
        );
        for bad in [
            "http://cup.example.org/",
            "ftp://cup.example.org/",
            "https://user:pw@cup.example.org/",
            "https://cup.example.org/#x",
            "https://127.0.0.1/",
            "https://[::1]:8080/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:10.0.0.1]/",
            "discord+https://discord.com/api/webhooks/1",
            "https://hooks.slack.com/••••••••",
            "not a url",
            "",
        ] {
            assert!(WebhookAddress::parse(bad, &rules()).is_err(), "{bad}");
        }
        let open = WebhookRules {
            allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
            allow_http: true,
        };
        assert!(WebhookAddress::parse("http://127.0.0.1:9/", &open).is_ok());
    }

    proptest! {
        /// An address inside a special network is refused unless an allowed network holds it,
        /// and every IPv4 address says the same as its NAT64 form.
        #[test]
        fn the_classifier_agrees_with_the_allowed_networks(bits in any::<u32>(), v6 in any::<u128>()) {
            let v4 = Ipv4Addr::from(bits);
            let nat64 = Ipv6Addr::from((0x0064_ff9b_u128 << 96) | u128::from(bits));
            prop_assert_eq!(special_purpose(IpAddr::V4(v4)), special_purpose(IpAddr::V6(nat64)));
            let std_says_special = v4.is_private() || v4.is_loopback() || v4.is_link_local()
                || v4.is_multicast() || v4.is_broadcast() || v4.is_documentation()
                || v4.is_unspecified();
            if std_says_special {
                prop_assert!(special_purpose(IpAddr::V4(v4)).is_some());
            }
            let v6 = Ipv6Addr::from(v6);
            if v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()
                || v6.to_ipv4_mapped().is_some() {
                prop_assert!(special_purpose(IpAddr::V6(v6)).is_some());
            }
            for ip in [IpAddr::V4(v4), IpAddr::V6(v6)] {
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let net: Network = format!("{}/{max}", ip).parse().unwrap();
                let allowed = WebhookRules { allow_networks: vec![net], allow_http: false };
                prop_assert_eq!(allowed.refusal(ip), None);
                prop_assert_eq!(rules().refusal(ip).is_some(), special_purpose(ip).is_some());
            }
        }

        /// Whatever a stranger types, reading it answers, and what it accepts reads back the same.
        #[test]
        fn any_text_is_read_or_refused_and_accepted_addresses_are_stable(
            text in crate::hostile::text(),
            path in "[a-zA-Z0-9/._~-]{0,40}",
        ) {
            for raw in [text.clone(), format!("https://{text}"), format!("slack+https://a.example/{path}{text}")] {
                if let Ok(a) = WebhookAddress::parse(&raw, &rules()) {
                    let again = WebhookAddress::parse(&a.to_string(), &rules());
                    prop_assert_eq!(again, Ok(a.clone()));
                    prop_assert!(a.url.scheme() == "https");
                }
            }
        }
    }
}
