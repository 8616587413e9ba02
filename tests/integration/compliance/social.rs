//! The harnesses of the social networks: each account enabled alone against its double, each
//! message an incident opened by hand whose statement the communications office approves.

use std::cell::Cell;
use std::time::Duration;

use serde_json::{Value, json};

use super::Harness;
use super::edges::{self, Arrived, Edge};
use crate::support::bluesky::{BSKY_HANDLE, BSKY_PASSWORD, BlueskyDouble, BlueskyOptions};
use crate::support::double::{Double, Network, Scripted};
use crate::support::facebook::{FB_PAGE_ID, FB_PAGE_TOKEN, FacebookDouble};
use crate::support::mastodon::{MASTODON_TOKEN, MastodonDouble, MastodonOptions};
use crate::support::x::{
    X_ACCESS_SECRET, X_ACCESS_TOKEN, X_CONSUMER_KEY, X_CONSUMER_SECRET, XDouble,
};
use crate::support::*;

/// One network: its double, and the settings pointing the app at it.
pub(crate) trait Account: Network + Sized {
    const CHANNEL: &'static str;
    async fn double() -> Double<Self>;
    fn config(double: &Double<Self>) -> String;
    /// What else a lost reply leaves to check.
    fn after_lost_reply(_double: &Double<Self>) {}
    /// A post's text.
    fn text(post: &Self::Post) -> String;
    /// The network's limits, each at its edge.
    fn edges() -> Vec<Edge>;
}

pub(crate) struct Social<N: Network> {
    double: Double<N>,
    app: TestApp,
    opened: Cell<u32>,
    _smtp: SmtpServer,
}

pub(crate) type Mastodon = Social<crate::support::mastodon::Mastodon>;
pub(crate) type Bluesky = Social<crate::support::bluesky::Bluesky>;
pub(crate) type X = Social<crate::support::x::X>;
pub(crate) type Facebook = Social<crate::support::facebook::Facebook>;

impl<N: Account> Harness for Social<N> {
    const CHANNEL: &'static str = N::CHANNEL;
    /// Every network lets a retry find what a lost reply hid.
    const IDEMPOTENT: bool = true;

    async fn start() -> Social<N> {
        let double = N::double().await;
        let smtp = SmtpServer::start();
        let app = TestApp::spawn(&smtp, &N::config(&double), &[]).await;
        Social {
            double,
            app,
            opened: Cell::new(0),
            _smtp: smtp,
        }
    }

    fn app(&self) -> &TestApp {
        &self.app
    }

    /// Opens an incident by hand and approves its statement.
    async fn send(&self) -> i64 {
        self.opened.set(self.opened.get() + 1);
        let title = format!("Portale referti non raggiungibile ({})", self.opened.get());
        let req = json!({"title": title, "severity": "critical",
            "labels": {"service": "cup-prenotazioni"}, "body": "Verifiche in corso."});
        let resp = (self.app)
            .post_json("/api/v1/incidents", Some(OPERATOR_TOKEN), &req)
            .await;
        assert_eq!(resp.status(), 201);
        let incident = resp.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        let draft = self.app.next_draft().await;
        self.app.approve_draft(draft["id"].as_i64().unwrap()).await;
        incident
    }

    fn arrived(&self) -> usize {
        self.double.posts().len()
    }

    fn throttle_next(&self) {
        self.double.script(1, Scripted::Throttle);
    }

    fn fail_next(&self) {
        self.double.script(1, Scripted::Fail(503));
    }

    fn lose_reply_next(&self) {
        self.double.script(1, Scripted::PostThenFail(502));
    }

    fn after_lost_reply(&self) {
        N::after_lost_reply(&self.double);
    }

    fn refuse_credentials(&self, refused: bool) {
        self.double.refuse_credentials(refused);
    }

    fn edges() -> Vec<Edge> {
        N::edges()
    }

    /// The network's part of a public draft, edited and approved.
    async fn publish(&self, _edge: &Edge, text: &str) -> Result<Arrived, String> {
        let draft = edges::edit_draft(&self.app, N::CHANNEL, text).await?;
        let before = self.double.posts().len();
        self.app.approve_draft(draft).await;
        let post = edges::newest(before, || self.double.posts(), |_| true).await;
        Ok(Arrived::text(N::text(&post)))
    }
}

impl Account for crate::support::mastodon::Mastodon {
    const CHANNEL: &'static str = "mastodon";

    fn text(post: &Self::Post) -> String {
        post.text.clone()
    }

    fn edges() -> Vec<Edge> {
        edges::mastodon()
    }

    /// The posting window is 2 s, so that a 429's `X-RateLimit-Reset` comes within the case.
    async fn double() -> MastodonDouble {
        MastodonDouble::start_with(MastodonOptions {
            statuses_window: Duration::from_secs(2),
            ..MastodonOptions::default()
        })
        .await
    }

    fn config(double: &MastodonDouble) -> String {
        let url = double.url();
        format!(
            "[channels.mastodon]\nenabled = true\nbase_url = \"{url}\"\ntoken = \"{MASTODON_TOKEN}\"\n"
        )
    }

    /// The retry carried the first attempt's `Idempotency-Key`, and Mastodon answered with the
    /// status already made.
    fn after_lost_reply(double: &MastodonDouble) {
        let posts = double.requests().into_iter().filter(|r| r.method == "POST");
        let keys: Vec<String> = posts
            .map(|r| {
                let key = r.headers.iter().find(|(k, _)| k == "idempotency-key");
                key.map(|(_, v)| v.clone()).unwrap_or_default()
            })
            .collect();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(!keys[0].is_empty() && keys[0] == keys[1], "{keys:?}");
    }
}

impl Account for crate::support::bluesky::Bluesky {
    const CHANNEL: &'static str = "bluesky";

    fn text(post: &Self::Post) -> String {
        post.text.clone()
    }

    fn edges() -> Vec<Edge> {
        edges::bluesky()
    }

    /// The write window is 2 s, so that a 429's `ratelimit-reset` comes within the case.
    async fn double() -> BlueskyDouble {
        BlueskyDouble::start_with(BlueskyOptions {
            write_window: Duration::from_secs(2),
            ..BlueskyOptions::default()
        })
        .await
    }

    fn config(double: &BlueskyDouble) -> String {
        let url = double.url();
        format!(
            "[channels.bluesky]\nenabled = true\nbase_url = \"{url}\"\nidentifier = \"{BSKY_HANDLE}\"\npassword = \"{BSKY_PASSWORD}\"\n"
        )
    }

    /// The retry looked for its post among the account's latest records before posting.
    fn after_lost_reply(double: &BlueskyDouble) {
        let requests = double.requests();
        let looked = (requests.iter()).any(|r| r.path.contains("com.atproto.repo.listRecords"));
        assert!(looked, "{requests:?}");
    }
}

impl Account for crate::support::x::X {
    const CHANNEL: &'static str = "x";

    fn text(post: &Self::Post) -> String {
        post.text.clone()
    }

    fn edges() -> Vec<Edge> {
        edges::x()
    }

    async fn double() -> XDouble {
        XDouble::start().await
    }

    fn config(double: &XDouble) -> String {
        let url = double.url();
        format!(
            "[channels.x]\nenabled = true\nbase_url = \"{url}\"\nconsumer_key = \"{X_CONSUMER_KEY}\"\nconsumer_secret = \"{X_CONSUMER_SECRET}\"\naccess_token = \"{X_ACCESS_TOKEN}\"\naccess_token_secret = \"{X_ACCESS_SECRET}\"\n"
        )
    }

    /// The retry was refused as a duplicate (403), which says the first attempt posted.
    fn after_lost_reply(double: &XDouble) {
        let posts = double.requests().into_iter().filter(|r| r.method == "POST");
        let statuses: Vec<u16> = posts.map(|r| r.status).collect();
        assert_eq!(statuses, [502, 403], "answer lost, then duplicate");
    }
}

impl Account for crate::support::facebook::Facebook {
    const CHANNEL: &'static str = "facebook";

    fn text(post: &Self::Post) -> String {
        post.message.clone()
    }

    fn edges() -> Vec<Edge> {
        edges::facebook()
    }

    async fn double() -> FacebookDouble {
        FacebookDouble::start().await
    }

    fn config(double: &FacebookDouble) -> String {
        let url = double.url();
        format!(
            "[channels.facebook]\nenabled = true\nbase_url = \"{url}\"\npage_id = \"{FB_PAGE_ID}\"\npage_token = \"{FB_PAGE_TOKEN}\"\n"
        )
    }

    /// The retry was refused as the same message within a day (code 506), which says the first
    /// attempt posted.
    fn after_lost_reply(double: &FacebookDouble) {
        let posts = double.requests().into_iter().filter(|r| r.method == "POST");
        let statuses: Vec<u16> = posts.map(|r| r.status).collect();
        assert_eq!(statuses, [502, 400], "answer lost, then duplicate");
    }
}
