//! Running the bot: over long polling on the leading replica only (Telegram allows one poller
//! per bot), handed over when leadership moves, or over the updates the webhook endpoint passes
//! in, on every replica.

use std::sync::Arc;
use std::time::Duration;

use teloxide::dispatching::Dispatcher;
use teloxide::payloads::SetWebhookSetters;
use teloxide::prelude::{Requester, dptree};
use teloxide::stop::{StopToken, mk_stop_token};
use teloxide::types::Update;
use teloxide::update_listeners::{Polling, StatefulListener, UpdateListener};
use teloxide::{Bot, RequestError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::commands::publish_commands;
use super::{BotContext, schema};
use crate::cluster::Leadership;

/// How long one `getUpdates` long poll waits for updates.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(25);

/// Updates received on the webhook, on their way to the dispatcher.
pub type UpdateSender = mpsc::UnboundedSender<Update>;
pub type UpdateReceiver = mpsc::UnboundedReceiver<Update>;

/// A teloxide listener fed by the webhook endpoint.
fn webhook_listener(
    rx: UpdateReceiver,
) -> impl UpdateListener<Err = std::convert::Infallible> + Send {
    let (stop_token, stop_flag) = mk_stop_token();
    let stream = futures_util::StreamExt::take_until(
        futures_util::StreamExt::map(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
            Ok::<Update, std::convert::Infallible>,
        ),
        stop_flag,
    );
    StatefulListener::new(
        (stream, stop_token),
        first_mut,
        |state: &mut (_, StopToken)| state.1.clone(),
    )
}

fn first_mut<A, B>(pair: &mut (A, B)) -> &mut A {
    &mut pair.0
}

/// Runs the bot until `shutdown`: in polling mode while this replica leads, in webhook mode
/// (`webhook` given: the URL to register, its secret, and the updates the endpoint receives)
/// all the time.
pub async fn run_bot(
    bot: Bot,
    ctx: Arc<BotContext>,
    webhook: Option<(url::Url, String, UpdateReceiver)>,
    mut leadership: Leadership,
    shutdown: CancellationToken,
) {
    let errors = Arc::new(|e: RequestError| async move {
        tracing::warn!(error = %e, "Telegram bot request failed");
    });
    let mut delay = Duration::from_secs(1);
    if let Some((url, secret, updates)) = webhook {
        // Every replica sets the same webhook; Telegram keeps the last, which is the same.
        loop {
            match bot
                .set_webhook(url.clone())
                .secret_token(secret.clone())
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot set the Telegram webhook; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        }
        // The dispatcher asks getMe once and gives up if that fails: ask until it answers.
        delay = Duration::from_secs(1);
        while let Err(e) = bot.get_me().await {
            tracing::warn!(error = %e, "Telegram does not answer getMe; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        }
        publish_commands(&bot, &ctx.renderer).await;
        let mut dispatcher = Dispatcher::builder(bot.clone(), schema())
            .dependencies(dptree::deps![ctx.clone()])
            .error_handler(errors.clone())
            .build();
        let token = dispatcher.shutdown_token();
        let listener_errors = Arc::new(|_: std::convert::Infallible| async {});
        let run = dispatcher.try_dispatch_with_listener(webhook_listener(updates), listener_errors);
        tokio::pin!(run);
        tokio::select! {
            result = &mut run => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "the Telegram bot stopped: Telegram refused getMe");
                }
                return;
            }
            _ = shutdown.cancelled() => {}
        }
        stop_dispatching(token, run).await;
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = leadership.wait() => {}
        }
        tracing::info!("leading: polling Telegram for bot updates");
        publish_commands(&bot, &ctx.renderer).await;
        let polling = Polling::builder(bot.clone())
            .timeout(POLL_TIMEOUT)
            .delete_webhook()
            .await
            .build();
        let mut dispatcher = Dispatcher::builder(bot.clone(), schema())
            .dependencies(dptree::deps![ctx.clone()])
            .error_handler(errors.clone())
            .build();
        let token = dispatcher.shutdown_token();
        let listener_errors = Arc::new(|e: RequestError| async move {
            tracing::warn!(error = %e, "polling Telegram for updates failed");
        });
        let run = dispatcher.try_dispatch_with_listener(polling, listener_errors);
        tokio::pin!(run);
        // Some(failed) when the dispatcher ended by itself; None on shutdown or lost leadership.
        let ended = tokio::select! {
            result = &mut run => Some(result.is_err()),
            _ = shutdown.cancelled() => None,
            _ = leadership.lost() => {
                tracing::info!("no longer leading: another replica polls Telegram");
                None
            }
        };
        stop_dispatching(token, run).await;
        if shutdown.is_cancelled() {
            return;
        }
        if ended == Some(true) {
            tracing::warn!("cannot start polling Telegram; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(60));
        } else {
            delay = Duration::from_secs(1);
        }
    }
}

/// Asks the dispatcher to finish the updates it is handling, for a moment; then drops it, with
/// the long poll it may be waiting on (Telegram answers that only after 25 s).
async fn stop_dispatching<F: std::future::Future>(
    token: teloxide::dispatching::ShutdownToken,
    run: std::pin::Pin<&mut F>,
) {
    let _ = tokio::time::timeout(STOP_GRACE, async {
        if let Ok(done) = token.shutdown() {
            done.await;
        }
        run.await;
    })
    .await;
}

const STOP_GRACE: Duration = Duration::from_secs(2);
