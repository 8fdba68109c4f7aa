//! `bandsync-cli mint-token`, and `--token` on `lead`, `follow` and `listen`, against a
//! server in the authenticated mode: the real CLI binary as a child process.

mod cli_support;
mod common;

use bandsync_client::protocol::{ErrorCode, Role};
use bandsync_client::{ClientError, Credentials, WsClient};
use cli_support::cli;
use common::TestServer;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "the cli test's secret, 32+ bytes long";
/// Bound of one CLI run; a run that hangs fails the test instead of the whole suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the CLI to completion (killing it if it outlives [`RUN_TIMEOUT`]) without
/// blocking the runtime that serves it.
async fn run(args: &[&str]) -> Output {
    let mut child = Command::new(cli())
        .args(args)
        .env_remove("JWT_SECRET")
        .env_remove("BANDSYNC_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning bandsync-cli");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > RUN_TIMEOUT {
            child.kill().unwrap();
            panic!("bandsync-cli {args:?} did not finish within {RUN_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.wait_with_output().unwrap()
}

async fn mint(session: &str, role: &str) -> String {
    let out = run(&[
        "mint-token",
        "--secret",
        SECRET,
        "--session",
        session,
        "--role",
        role,
        "--ttl-secs",
        "120",
        "--sub",
        "ada",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_open_their_session_with_their_role() {
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.into())).await;
    let follower = mint("band", "follower").await;
    assert_eq!(follower.split('.').count(), 3, "{follower}");
    let mut client = WsClient::connect(&server.ws_url()).await.unwrap();
    let credentials = Credentials::token(follower.clone());
    match client
        .join_as("band", Some(Role::Leader), None, &credentials)
        .await
    {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::Unauthorized),
        other => panic!("a follower token led: {other:?}"),
    }
    let snapshot = client
        .join_as("band", None, None, &credentials)
        .await
        .unwrap();
    assert_eq!(snapshot.role, Role::Follower);
    let leader = mint("*", "leader").await;
    let snapshot = WsClient::connect(&server.ws_url())
        .await
        .unwrap()
        .join_as(
            "anywhere",
            Some(Role::Leader),
            None,
            &Credentials::token(leader),
        )
        .await
        .unwrap();
    assert_eq!(snapshot.role, Role::Leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_listen_and_lead_present_the_token() {
    let server = TestServer::start_with(|c| c.jwt_secret = Some(SECRET.into())).await;
    let ws = server.ws_url();
    let base = server.base_url();
    let follower = mint("band", "follower").await;
    let common = ["--session", "band", "--duration", "0.5", "--no-ticks"];

    let out = run(&[&["follow", "--url", &ws, "--token", &follower], &common[..]].concat()).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        &["listen", "--url", &base, "--token", &follower],
        &common[..],
    ]
    .concat())
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without a token, or leading with a follower token: refused, exit 1, and said why.
    let out = run(&[&["follow", "--url", &ws], &common[..]].concat()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UNAUTHORIZED"));
    let out = run(&[&["listen", "--url", &base], &common[..]].concat()).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let lead = [
        "lead",
        "--url",
        &ws,
        "--session",
        "band",
        "--token",
        &follower,
    ];
    let out = run(&lead).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("follower role only"));
}

#[tokio::test]
async fn mint_token_refuses_bad_arguments() {
    let bad_session = run(&[
        "mint-token",
        "--secret",
        SECRET,
        "--session",
        "no spaces",
        "--role",
        "leader",
    ])
    .await;
    assert_eq!(bad_session.status.code(), Some(1));
    let no_key = run(&["mint-token", "--session", "band", "--role", "leader"]).await;
    assert_eq!(no_key.status.code(), Some(2), "clap refuses a missing key");
    let bad_role = run(&[
        "mint-token",
        "--secret",
        SECRET,
        "--session",
        "band",
        "--role",
        "admin",
    ])
    .await;
    assert_eq!(bad_role.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_presents_the_session_token_over_ws_and_sse() {
    let server = TestServer::start_with(|c| {
        c.jwt_secret = Some(SECRET.into());
        c.share.bearer_token = Some("Bearer Token".into());
    })
    .await;
    let base = server.base_url();
    let jwt = mint("123456", "follower").await;
    for transport in ["ws", "sse"] {
        let receive = [
            "receive",
            "--url",
            &base,
            "--session",
            "123456",
            "--token",
            "Bearer Token",
            "--transport",
            transport,
            "--duration",
            "0.5",
        ];
        let out = run(&[&receive[..], &["--session-token", &jwt]].concat()).await;
        assert!(
            out.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&receive).await;
        assert_eq!(
            out.status.code(),
            Some(1),
            "{transport} without a session token"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("UNAUTHORIZED") || stderr.contains("401"),
            "{stderr}"
        );
    }
}
