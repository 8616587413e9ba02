//! Affected lists against the `Store` trait, so that SQLite and PostgreSQL run the same cases:
//! an upload staged in batches and merged once (a person repeated in it kept once, the last
//! detail winning), a repeated upload changing only details (and the detail of what is still to
//! send), the deliveries of a published statement written once per row, nothing written before
//! a statement is published, and a list deleted with its deliveries once its incident has been
//! over for the retention, staging left by an unfinished upload with it.

use std::sync::Arc;

use banditore::domain::IncidentStatus;
use banditore::domain::subscriber::ChannelKind;
use banditore::store::*;
use jiff::SignedDuration;

use crate::store_acks::{at, opening};
use crate::support::suite;

fn row(digest: &str, channel: ChannelKind, recipient: &str, detail: &str) -> NewAffected {
    NewAffected {
        digest: digest.into(),
        fiscal_code: None,
        mobile: (channel == ChannelKind::Sms).then(|| recipient.to_owned()),
        email: (channel == ChannelKind::Email).then(|| recipient.to_owned()),
        language: "it".into(),
        detail: detail.into(),
        channel,
        recipient: recipient.into(),
    }
}

/// Writes every due batch of every published statement, as the writer does.
async fn write_all(store: &Arc<dyn Store>, auto: bool) -> u64 {
    let mut written = 0;
    for work in store
        .affected_work(auto, &[ChannelKind::Sms, ChannelKind::Email])
        .await
        .unwrap()
    {
        let message = match store.affected_message(&work).await.unwrap() {
            Some(id) => id,
            None => {
                let mut tx = store.begin().await.unwrap();
                let id = tx
                    .insert_message(&NewMessage {
                        update_id: work.update_id,
                        channel: work.channel,
                        language: work.language.clone(),
                        audience: "affected".into(),
                        subject: None,
                        body: "Il suo appuntamento: @@BANDITORE_DETAIL@@.".into(),
                        html: None,
                        created_at: at(1),
                    })
                    .await
                    .unwrap()
                    .id;
                tx.commit().await.unwrap();
                id
            }
        };
        loop {
            let n = store
                .write_affected_batch(&work, message, 1, None, at(1))
                .await
                .unwrap();
            written += n;
            if n == 0 {
                break;
            }
        }
    }
    written
}

async fn claim(store: &Arc<dyn Store>, channel: ChannelKind) -> Vec<ClaimedDelivery> {
    store
        .claim_deliveries(
            channel,
            100,
            at(2),
            at(2) + SignedDuration::from_secs(60),
            "w",
        )
        .await
        .unwrap()
}

pub async fn an_upload_is_merged_once_and_a_repeat_changes_only_details(store: Arc<dyn Store>) {
    let incident = opening(&store, &[]).await;
    let sms = ChannelKind::Sms;
    let email = ChannelKind::Email;
    // Staged in two batches; the first person appears twice, the later detail kept.
    store
        .stage_affected("u1", &[(1, row("a", sms, "+393470000001", "ore 9"))], at(1))
        .await
        .unwrap();
    store
        .stage_affected(
            "u1",
            &[
                (2, row("b", email, "paziente@example.org", "ore 10")),
                (3, row("a", sms, "+393470000001", "ore 9:30")),
            ],
            at(1),
        )
        .await
        .unwrap();
    assert!(
        store
            .affected_rows(incident, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let merged = store
        .merge_affected("u1", incident, true, at(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        merged,
        Merged {
            new: 2,
            updated: 0,
            duplicates: 1
        }
    );
    let rows = store.affected_rows(incident, 0, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    let first = rows.iter().find(|r| r.channel == sms).unwrap();
    assert_eq!(first.detail, "ore 9:30");
    assert_eq!(first.mobile.as_deref(), Some("+393470000001"));
    assert_eq!(first.state, None);
    // The opening is published (`auto`): each row gets it once, however often the writer runs.
    assert_eq!(write_all(&store, true).await, 2);
    assert_eq!(write_all(&store, true).await, 0);
    assert!(
        store
            .affected_work(true, &[ChannelKind::Sms, ChannelKind::Email])
            .await
            .unwrap()
            .is_empty()
    );
    // The same people again: one detail changed, which what is still to send carries.
    store
        .stage_affected(
            "u2",
            &[
                (1, row("a", sms, "+393470000001", "ore 11")),
                (2, row("b", email, "paziente@example.org", "ore 10")),
            ],
            at(3),
        )
        .await
        .unwrap();
    let merged = store
        .merge_affected("u2", incident, true, at(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        merged,
        Merged {
            new: 0,
            updated: 1,
            duplicates: 1
        }
    );
    assert_eq!(
        write_all(&store, true).await,
        0,
        "nobody is sent anything twice"
    );
    let claimed = claim(&store, sms).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].detail.as_deref(), Some("ore 11"));
    assert_eq!(claimed[0].address_id, None);
    assert!(claimed[0].affected_id.is_some());
    let counts = store.affected_counts(incident).await.unwrap();
    assert_eq!(counts.rows, 2);
    assert_eq!(
        counts.deliveries,
        vec![("pending".to_owned(), 1), ("sending".to_owned(), 1)]
    );
    // Another incident's list, and an unknown incident.
    store
        .stage_affected("u3", &[(1, row("a", sms, "+393470000001", "x"))], at(3))
        .await
        .unwrap();
    assert_eq!(
        store
            .merge_affected("u3", 999_999, true, at(3))
            .await
            .unwrap(),
        None
    );
}

pub async fn nothing_is_written_before_a_statement_is_published(store: Arc<dyn Store>) {
    let incident = opening(&store, &[]).await;
    store
        .stage_affected(
            "u1",
            &[(1, row("a", ChannelKind::Sms, "+393470000001", "ore 9"))],
            at(1),
        )
        .await
        .unwrap();
    store
        .merge_affected("u1", incident, false, at(1))
        .await
        .unwrap()
        .unwrap();
    // Held for approval, and none approved: nothing to write.
    assert!(
        store
            .affected_work(false, &[ChannelKind::Sms, ChannelKind::Email])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(write_all(&store, false).await, 0);
    let before = store.affected_fingerprint(false).await.unwrap();
    assert_eq!(before, store.affected_fingerprint(false).await.unwrap());
    assert_eq!(write_all(&store, true).await, 1);
}

pub async fn a_list_goes_with_its_deliveries_once_its_incident_is_over_for_the_retention(
    store: Arc<dyn Store>,
) {
    let incident = opening(&store, &[]).await;
    let kept = opening(&store, &[]).await;
    for (id, upload) in [(incident, "u1"), (kept, "u2")] {
        store
            .stage_affected(
                upload,
                &[
                    (1, row("a", ChannelKind::Sms, "+393470000001", "ore 9")),
                    (2, row("b", ChannelKind::Email, "p@example.org", "ore 10")),
                ],
                at(1),
            )
            .await
            .unwrap();
        store
            .merge_affected(upload, id, true, at(1))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(write_all(&store, true).await, 4);
    // The first incident ends at 100 s.
    let mut tx = store.begin().await.unwrap();
    let mut row = tx.incident(incident).await.unwrap().unwrap();
    row.resolved_at = Some(at(100));
    row.status = IncidentStatus::Resolved;
    tx.save_incident(&row).await.unwrap();
    tx.commit().await.unwrap();
    // A resolved incident's list no longer grows.
    store
        .stage_affected("u3", &[(1, row_c())], at(150))
        .await
        .unwrap();
    assert!(matches!(
        store.merge_affected("u3", incident, true, at(150)).await,
        Err(StoreError::Conflict(_))
    ));
    // An unfinished upload's staging, left behind.
    store
        .stage_affected("u4", &[(1, row_c())], at(1))
        .await
        .unwrap();
    assert_eq!(store.prune_affected(at(50), at(0)).await.unwrap(), 0);
    assert_eq!(store.prune_affected(at(200), at(10)).await.unwrap(), 2);
    assert!(
        store
            .affected_rows(incident, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .affected_counts(incident)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
    assert_eq!(store.affected_rows(kept, 0, 10).await.unwrap().len(), 2);
    // What the deliveries held of the list went with it: only the open incident's are claimed.
    let claimed = [
        claim(&store, ChannelKind::Sms).await,
        claim(&store, ChannelKind::Email).await,
    ];
    assert!(claimed.iter().flatten().all(|d| d.incident_id == kept));
    assert_eq!(claimed.iter().flatten().count(), 2);
    // The staging went too: merging it now adds nobody.
    assert_eq!(
        store
            .merge_affected("u4", kept, true, at(300))
            .await
            .unwrap()
            .unwrap(),
        Merged::default()
    );
    assert_eq!(store.delete_affected(kept).await.unwrap(), 2);
    assert!(claim(&store, ChannelKind::Sms).await.is_empty());
}

/// The general prune (`store.retention`) leaves a list's deliveries to the list's retention:
/// whether a row already had a statement is read from them, so pruning them would send it again.
pub async fn the_general_prune_leaves_a_lists_deliveries_to_the_list(store: Arc<dyn Store>) {
    let incident = opening(&store, &[]).await;
    store
        .stage_affected(
            "u1",
            &[(1, row("a", ChannelKind::Sms, "+393470000001", "ore 9"))],
            at(1),
        )
        .await
        .unwrap();
    store
        .merge_affected("u1", incident, true, at(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(write_all(&store, true).await, 1);
    crate::store_acks::send_all(&store, ChannelKind::Sms, at(2)).await;
    let mut tx = store.begin().await.unwrap();
    let mut resolved = tx.incident(incident).await.unwrap().unwrap();
    resolved.resolved_at = Some(at(100));
    resolved.status = IncidentStatus::Resolved;
    tx.save_incident(&resolved).await.unwrap();
    tx.commit().await.unwrap();
    store.prune(at(10_000)).await.unwrap();
    assert_eq!(
        store.affected_counts(incident).await.unwrap().deliveries,
        vec![("sent".to_owned(), 1)]
    );
    assert_eq!(write_all(&store, true).await, 0, "nobody hears it twice");
    // The list's own retention takes them, with the list.
    assert_eq!(store.prune_affected(at(10_000), at(0)).await.unwrap(), 1);
    assert!(
        store
            .affected_counts(incident)
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
}

/// Two uploads to one list at once: both land, each person once (on PostgreSQL the second
/// merge would otherwise find a new person absent too and fail on the list's unique rule).
pub async fn two_uploads_at_once_both_land(store: Arc<dyn Store>) {
    let incident = opening(&store, &[]).await;
    for upload in ["u1", "u2"] {
        let rows: Vec<(i64, NewAffected)> = (0..200)
            .map(|i| {
                let r = row(
                    &format!("p{i}"),
                    ChannelKind::Email,
                    &format!("p{i}@example.org"),
                    upload,
                );
                (i + 1, r)
            })
            .collect();
        store.stage_affected(upload, &rows, at(1)).await.unwrap();
    }
    let (a, b) = tokio::join!(
        store.merge_affected("u1", incident, true, at(1)),
        store.merge_affected("u2", incident, true, at(1)),
    );
    let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
    assert_eq!(a.new + b.new, 200);
    assert_eq!(
        a.updated + b.updated,
        200,
        "the later upload's detail replaces"
    );
    assert_eq!(store.affected_counts(incident).await.unwrap().rows, 200);
}

/// Rows on a channel turned off since their upload wait without taking the writer's page.
pub async fn rows_on_a_channel_turned_off_take_no_room_from_the_others(store: Arc<dyn Store>) {
    let incident = opening(&store, &[]).await;
    let rows: Vec<(i64, NewAffected)> = (0..150)
        .map(|i| {
            let mut r = row(&format!("s{i}"), ChannelKind::Sms, "+393470000001", "x");
            // Each its own language: one piece of work each, more than the writer's page.
            r.language = format!("l{i}");
            (i + 1, r)
        })
        .chain([(151, row_c())])
        .collect();
    store.stage_affected("u1", &rows, at(1)).await.unwrap();
    store
        .merge_affected("u1", incident, true, at(1))
        .await
        .unwrap()
        .unwrap();
    let work = store
        .affected_work(true, &[ChannelKind::Email])
        .await
        .unwrap();
    assert_eq!(work.len(), 1);
    assert_eq!(work[0].channel, ChannelKind::Email);
    assert!(store.affected_work(true, &[]).await.unwrap().is_empty());
    assert_eq!(
        store
            .affected_work(true, &[ChannelKind::Sms])
            .await
            .unwrap()
            .len(),
        100
    );
}

fn row_c() -> NewAffected {
    row("c", ChannelKind::Email, "c@example.org", "ore 12")
}

suite!(
    an_upload_is_merged_once_and_a_repeat_changes_only_details,
    nothing_is_written_before_a_statement_is_published,
    a_list_goes_with_its_deliveries_once_its_incident_is_over_for_the_retention,
    the_general_prune_leaves_a_lists_deliveries_to_the_list,
    two_uploads_at_once_both_land,
    rows_on_a_channel_turned_off_take_no_room_from_the_others,
);
