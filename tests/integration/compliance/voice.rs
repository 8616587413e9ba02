//! Voice calls in the compliance suite: one provider configured alone, the desk's phone letting
//! it ring (what happens after the call is placed is the voice tests' matter). A throttle
//! (`429`) is waited out, a `503` retried, refused credentials pause the channel, and with
//! Twilio an invalid number (21211) is gone. No lost-reply case: the double cannot place a call
//! and lose its answer; a timeout is retried, which may place a second call, as for SMS.

use std::cell::Cell;
use std::marker::PhantomData;

use super::Harness;
use super::direct::{fire_new, recipient};
use crate::support::voice::*;
use crate::support::*;

const PHONE: &str = "+390742123456";

/// One call provider, configured alone.
pub(crate) trait Provider {
    const DOUBLE: Voice;
    /// Words of the reason a gone number is marked with, after scripting it gone.
    fn make_gone(_double: &VoiceDouble) -> &'static str {
        unreachable!("this provider names no gone number")
    }
    fn config(double: &VoiceDouble) -> String;
}

pub(crate) struct Twilio;
pub(crate) struct Vonage;

impl Provider for Twilio {
    const DOUBLE: Voice = Voice::Twilio;
    fn make_gone(double: &VoiceDouble) -> &'static str {
        double.twilio_refuse_number(PHONE, 21211);
        "21211"
    }
    fn config(double: &VoiceDouble) -> String {
        format!(
            "[[channels.voice.providers]]\nname = \"twilio\"\nkind = \"twilio\"\nbase_url = \"{}\"\nusername = \"{TWILIO_SID}\"\npassword = \"{TWILIO_TOKEN}\"\ncaller = \"+390612345678\"\n",
            double.base_url()
        )
    }
}

impl Provider for Vonage {
    const DOUBLE: Voice = Voice::Vonage;
    fn config(double: &VoiceDouble) -> String {
        format!(
            "[[channels.voice.providers]]\nname = \"vonage\"\nkind = \"vonage\"\nbase_url = \"{}\"\nusername = \"{VONAGE_APPLICATION}\"\npassword_file = \"{}\"\ncaller = \"+390612345679\"\n",
            double.base_url(),
            vonage_key_path().display()
        )
    }
}

pub(crate) struct Call<P> {
    double: VoiceDouble,
    app: TestApp,
    subscriber: i64,
    fired: Cell<u32>,
    provider: PhantomData<P>,
}

impl<P: Provider> Harness for Call<P> {
    const CHANNEL: &'static str = "voice";
    const IDEMPOTENT: bool = false;

    async fn start() -> Call<P> {
        let double = VoiceDouble::start().await;
        double.pickup(PHONE, Pickup::NoAnswer);
        let smtp = SmtpServer::start();
        let env = [
            ("BANDITORE__CHANNELS__VOICE__ENABLED", "true"),
            ("BANDITORE__CHANNELS__VOICE__TIMEOUT", "2s"),
        ];
        let app = TestApp::spawn(&smtp, &P::config(&double), &env).await;
        double.deliver_callbacks_to(&app.base);
        let subscriber = recipient(&app, "voice", PHONE).await;
        Call {
            double,
            app,
            subscriber,
            fired: Cell::new(0),
            provider: PhantomData,
        }
    }

    fn app(&self) -> &TestApp {
        &self.app
    }

    async fn send(&self) -> i64 {
        fire_new(&self.app, &self.fired).await
    }

    fn arrived(&self) -> usize {
        let digits = PHONE.trim_start_matches('+');
        let calls = self.double.calls().into_iter();
        calls
            .filter(|c| c.to.trim_start_matches('+') == digits)
            .count()
    }

    fn subscriber(&self) -> Option<i64> {
        Some(self.subscriber)
    }

    fn throttle_next(&self) {
        self.double.fail_next(P::DOUBLE, 1, 429);
    }

    fn fail_next(&self) {
        self.double.fail_next(P::DOUBLE, 1, 503);
    }

    fn make_gone(&self) -> &'static str {
        P::make_gone(&self.double)
    }

    fn tries(&self) -> usize {
        let requests = self.double.requests().into_iter();
        requests.filter(|r| r.0 == P::DOUBLE).count()
    }

    fn refuse_credentials(&self, refused: bool) {
        self.double.refuse_credentials(P::DOUBLE, refused);
    }
}
