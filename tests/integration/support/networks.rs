//! The four social networks' doubles together, and the settings that point Banditore at them.

use super::bluesky::{BSKY_HANDLE, BSKY_PASSWORD, BlueskyDouble};
use super::facebook::{FB_PAGE_ID, FB_PAGE_TOKEN, FacebookDouble};
use super::mastodon::MastodonDouble;
use super::x::{X_ACCESS_SECRET, X_ACCESS_TOKEN, X_CONSUMER_KEY, X_CONSUMER_SECRET, XDouble};

pub struct Networks {
    pub mastodon: MastodonDouble,
    pub bluesky: BlueskyDouble,
    pub x: XDouble,
    pub facebook: FacebookDouble,
}

impl Networks {
    pub async fn start() -> Networks {
        Networks {
            mastodon: MastodonDouble::start().await,
            bluesky: BlueskyDouble::start().await,
            x: XDouble::start().await,
            facebook: FacebookDouble::start().await,
        }
    }

    /// Every account enabled, secrets given inline (the tests' own values).
    pub fn config(&self, mastodon_token: &str) -> String {
        format!(
            r#"
[channels.mastodon]
enabled = true
base_url = "{m}"
token = "{mastodon_token}"

[channels.bluesky]
enabled = true
base_url = "{b}"
identifier = "{BSKY_HANDLE}"
password = "{BSKY_PASSWORD}"

[channels.x]
enabled = true
base_url = "{x}"
consumer_key = "{X_CONSUMER_KEY}"
consumer_secret = "{X_CONSUMER_SECRET}"
access_token = "{X_ACCESS_TOKEN}"
access_token_secret = "{X_ACCESS_SECRET}"

[channels.facebook]
enabled = true
base_url = "{f}"
page_id = "{FB_PAGE_ID}"
page_token = "{FB_PAGE_TOKEN}"
"#,
            m = self.mastodon.url(),
            b = self.bluesky.url(),
            x = self.x.url(),
            f = self.facebook.url(),
        )
    }
}
