//! The floor, black-box: it must serve what `bandsync-bench`'s scenarios rely on, or the
//! figures measured against it would be of a broken server. The bench checks the same at
//! each spawn (`check_protocol`); this covers the broadcasts too.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tungstenite::{Message, WebSocket};

struct Floor {
    child: Child,
    port: u16,
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Floor {
    let mut child = Command::new(env!("CARGO_BIN_EXE_floor"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the floor");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: Value = serde_json::from_str(&line).expect("{\"port\":N}");
    let port = port["port"].as_u64().unwrap() as u16;
    Floor { child, port }
}

type Ws = WebSocket<TcpStream>;

fn connect(floor: &Floor) -> Ws {
    let stream = TcpStream::connect(("127.0.0.1", floor.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/ws", floor.port);
    tungstenite::client::client(url.as_str(), stream)
        .expect("the upgrade")
        .0
}

fn send(ws: &mut Ws, event: Value) {
    ws.send(Message::text(event.to_string())).unwrap();
}

/// The next event of type `kind`, skipping others (`room_stats` come and go).
fn next_of(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let message = match ws.read() {
            // A read with a timeout is not restarted after a signal (seen here once this
            // process had opened an io_uring): read again.
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                continue
            }
            other => other.expect("an event within 5 s"),
        };
        let Message::Text(text) = message else {
            continue;
        };
        let event: Value = serde_json::from_str(&text).unwrap();
        if event["type"] == kind {
            return event;
        }
    }
}

#[test]
fn health_answers_ok() {
    let floor = start(&[]);
    let mut stream = TcpStream::connect(("127.0.0.1", floor.port)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with(r#"{"status":"ok","server":"floor"}"#));
}

#[test]
fn the_leader_s_commands_and_ticks_reach_every_member() {
    commands_and_ticks_reach_every_member(&start(&[]));
}

#[test]
fn the_same_through_io_uring() {
    if let Err(e) = uring_send::SendBatch::new(8) {
        // Not a failure of the floor: this kernel or sandbox refuses io_uring, where the
        // floor refuses --io-uring and the bench reports it.
        eprintln!("skipped: no io_uring here ({e})");
        return;
    }
    commands_and_ticks_reach_every_member(&start(&["--io-uring"]));
}

fn commands_and_ticks_reach_every_member(floor: &Floor) {
    let mut leader = connect(floor);
    send(
        &mut leader,
        json!({"type": "join_session", "id": 1, "data": {"sessionId": "s", "role": "leader"}}),
    );
    let snapshot = next_of(&mut leader, "snapshot");
    assert_eq!(snapshot["id"], 1);
    assert_eq!(snapshot["data"]["role"], "leader");
    assert_eq!(snapshot["data"]["leaderId"], snapshot["data"]["clientId"]);

    let mut follower = connect(floor);
    send(
        &mut follower,
        json!({"type": "join_session", "id": "f", "data": {"sessionId": "s", "role": "leader"}}),
    );
    let snapshot = next_of(&mut follower, "snapshot");
    assert_eq!(snapshot["id"], "f");
    assert_eq!(snapshot["data"]["role"], "follower", "the seat is taken");
    assert_eq!(snapshot["data"]["members"].as_array().unwrap().len(), 2);

    send(
        &mut leader,
        json!({"type": "set_tempo", "data": {"tempo": 133.5}}),
    );
    for ws in [&mut follower, &mut leader] {
        let update = next_of(ws, "state_update");
        assert_eq!(update["data"]["transport"]["tempo"], 133.5);
        assert_eq!(update["data"]["version"], 2);
    }
    send(
        &mut follower,
        json!({"type": "set_tempo", "id": 9, "data": {"tempo": 90}}),
    );
    let refused = next_of(&mut follower, "error");
    assert_eq!(
        (refused["id"].clone(), refused["data"]["code"].clone()),
        (json!(9), json!("NOT_LEADER"))
    );

    send(&mut leader, json!({"type": "play", "data": {"beat": 0}}));
    assert_eq!(
        next_of(&mut follower, "state_update")["data"]["transport"]["playing"],
        true
    );
    let first = next_of(&mut follower, "scroll_tick")["data"]["seq"]
        .as_u64()
        .unwrap();
    let second = next_of(&mut follower, "scroll_tick")["data"]["seq"]
        .as_u64()
        .unwrap();
    // 1 and 2, unless this machine stalls the floor past a deadline, which leaves a gap.
    assert!(first >= 1 && second > first, "seq {first} then {second}");

    send(
        &mut follower,
        json!({"type": "heartbeat", "id": 3, "data": {"t0": 12.5}}),
    );
    let beat = next_of(&mut follower, "heartbeat_response");
    assert_eq!(
        (beat["id"].clone(), beat["data"]["t0"].clone()),
        (json!(3), json!(12.5))
    );
    assert!(beat["data"]["t2"].as_f64().unwrap() >= beat["data"]["t1"].as_f64().unwrap());

    send(
        &mut follower,
        json!({"type": "heartbeat", "id": 4, "data": {}}),
    );
    let refused = next_of(&mut follower, "error");
    assert_eq!(refused["id"], 4);
    assert_eq!(
        refused["data"]["code"], "INVALID_MESSAGE",
        "no t0: refused, not ignored"
    );
}
