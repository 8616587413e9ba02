//! The log channel: each delivery written as one structured line of the process log.

use crate::support::*;

#[tokio::test]
async fn an_incident_is_written_to_the_process_log_as_one_json_line() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(
        &smtp,
        "[channels.log]\nenabled = true\naudience = \"internal\"\nmin_severity = \"warning\"\n",
        &[],
    )
    .await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;

    let line = eventually(
        || async {
            app.logs()
                .lines()
                .find(|l| l.contains("banditore::delivery"))
                .map(str::to_owned)
        },
        Option::is_some,
    )
    .await
    .unwrap();
    let entry: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let fields = &entry["fields"];
    assert_eq!(entry["target"], "banditore::delivery", "{line}");
    assert_eq!(fields["channel"], "log", "{line}");
    assert_eq!(fields["attempt"], 1, "{line}");
    assert!(fields["incident_id"].as_i64().is_some(), "{line}");
    let text = fields["text"].as_str().unwrap();
    assert!(text.contains("CUP backend non risponde"), "{text}");
    assert!(text.contains("[apertura]"), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

#[tokio::test]
async fn the_log_channel_is_off_by_default() {
    let smtp = SmtpServer::start();
    let app = TestApp::spawn(&smtp, "", &[]).await;
    fire_alert(&app, "firing", "cup-backend", "CUP backend non risponde").await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!app.logs().contains("banditore::delivery"));
}
