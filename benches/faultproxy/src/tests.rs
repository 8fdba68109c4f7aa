use super::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn draws(link: Link, seed: u64, n: usize) -> Vec<f64> {
    let mut m = DelayModel::new(link, seed);
    (0..n).map(|_| m.draw().delay_ms).collect()
}

#[test]
fn the_same_seed_draws_the_same_delays_and_another_seed_does_not() {
    let link = Link {
        stall_p: 0.1,
        stall_ms: 50.0,
        ..Link::jittered(3.0, 5.0)
    };
    assert_eq!(draws(link, 7, 1000), draws(link, 7, 1000));
    assert_ne!(draws(link, 7, 1000), draws(link, 8, 1000));
    let seeds = [
        model::direction_seed(1, 0, true),
        model::direction_seed(1, 0, false),
        model::direction_seed(1, 1, true),
        model::direction_seed(2, 0, true),
    ];
    for (i, a) in seeds.iter().enumerate() {
        assert!(seeds[i + 1..].iter().all(|b| a != b), "{seeds:?}");
    }
}

#[test]
fn both_jitter_models_have_the_standard_deviation_asked_for() {
    for jitter in [Jitter::Exponential, Jitter::HalfNormal] {
        let link = Link {
            jitter,
            ..Link::jittered(10.0, 5.0)
        };
        let s = stats::summarize(&draws(link, 42, 200_000));
        assert!((s.sd_ms - 5.0).abs() < 0.1, "{jitter:?}: {s:?}");
        assert!(s.min_ms >= 10.0, "{jitter:?}: never early: {s:?}");
    }
    assert!(draws(Link::jittered(4.0, 0.0), 1, 10)
        .iter()
        .all(|&d| d == 4.0));
}

#[test]
fn stalls_happen_at_the_rate_asked_for_and_add_their_length() {
    let link = Link {
        stall_p: 0.25,
        stall_ms: 100.0,
        ..Link::default()
    };
    let mut m = DelayModel::new(link, 3);
    let all: Vec<_> = (0..10_000).map(|_| m.draw()).collect();
    let stalled = all.iter().filter(|d| d.stalled).count();
    assert!((2_300..2_700).contains(&stalled), "{stalled}");
    assert!(all
        .iter()
        .all(|d| d.delay_ms == if d.stalled { 100.0 } else { 0.0 }));
}

#[test]
fn out_of_range_parameters_are_refused() {
    let bad = [
        Link::jittered(f64::NAN, 1.0),
        Link::jittered(-1.0, 1.0),
        Link::jittered(1.0, MAX_DELAY_MS + 1.0),
        Link {
            stall_ms: f64::INFINITY,
            ..Link::default()
        },
    ];
    for link in bad {
        assert!(
            matches!(link.check(), Err(ConfigError::Delay(_))),
            "{link:?}"
        );
    }
    let p = Link {
        stall_p: 1.5,
        ..Link::default()
    };
    assert_eq!(p.check(), Err(ConfigError::Probability));
    assert!(Faults::symmetric(0.0, 5.0, 1).check().is_ok());
}

/// An upstream that echoes every byte back.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            socket.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (mut rx, mut tx) = socket.split();
                let _ = tokio::io::copy(&mut rx, &mut tx).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn bytes_cross_in_order_however_the_chunks_are_jittered() {
    let proxy = FaultProxy::start(echo_server().await, Faults::symmetric(0.0, 8.0, 11))
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    let mut sent = Vec::new();
    for i in 0u32..300 {
        let chunk = format!("<{i}>");
        client.write_all(chunk.as_bytes()).await.unwrap();
        sent.extend_from_slice(chunk.as_bytes());
        // Far shorter than the jitter: drawn delays overlap, so reordering would show.
        tokio::time::sleep(Duration::from_micros(300)).await;
    }
    let mut got = vec![0; sent.len()];
    tokio::time::timeout(Duration::from_secs(20), client.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&sent)
    );
    let injected = proxy.injected();
    assert_eq!(injected.connections, 1);
    assert!(
        injected.up.chunks > 0 && injected.down.chunks > 0,
        "{injected:?}"
    );
    assert_eq!(injected.up.bytes, sent.len() as u64);
}

#[tokio::test]
async fn each_direction_gets_its_own_base_delay() {
    let faults = Faults {
        up: Link::jittered(40.0, 0.0),
        down: Link::jittered(5.0, 0.0),
        seed: 1,
    };
    let proxy = FaultProxy::start(echo_server().await, faults)
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.set_nodelay(true).unwrap();
    for _ in 0..5 {
        let started = Instant::now();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(45));
    }
    let injected = proxy.injected();
    // tokio's timer rounds up to the next millisecond; a loaded machine adds more.
    assert!((40.0..60.0).contains(&injected.up.min_ms), "{injected:?}");
    assert!((5.0..25.0).contains(&injected.down.min_ms), "{injected:?}");
    assert!(
        injected.up.min_ms - injected.down.min_ms > 30.0,
        "{injected:?}"
    );
}

#[tokio::test]
async fn a_stall_holds_the_chunks_behind_it_and_is_counted() {
    let faults = Faults {
        up: Link {
            stall_p: 1.0,
            stall_ms: 30.0,
            ..Link::default()
        },
        down: Link::default(),
        seed: 5,
    };
    let proxy = FaultProxy::start(echo_server().await, faults)
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let started = Instant::now();
    client.write_all(b"abc").await.unwrap();
    let mut buf = [0; 3];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"abc");
    assert!(started.elapsed() >= Duration::from_millis(30));
    let injected = proxy.injected();
    assert_eq!(injected.up.stalls, injected.up.chunks);
    assert!(injected.up.min_ms >= 30.0, "{injected:?}");
}

#[tokio::test]
async fn dropping_the_proxy_ends_its_connections() {
    let proxy = FaultProxy::start(echo_server().await, Faults::default())
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(b"x").await.unwrap();
    let mut buf = [0; 1];
    client.read_exact(&mut buf).await.unwrap();
    drop(proxy);
    let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
}
