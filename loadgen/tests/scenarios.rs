//! Each scenario, briefly, against an in-test server: the counts must be exact.

mod common;

use common::{loadgen_json, num, temp_dir, Mode, Server};

#[test]
fn echo_closed_loop_receives_every_message_sent() {
    let server = Server::start(Mode::Echo);
    let dir = temp_dir("echo-closed");
    let url = server.url("/echo");
    let r = loadgen_json(
        &[
            "echo",
            "--url",
            &url,
            "-c",
            "8",
            "-w",
            "4",
            "-s",
            "100",
            "--warmup",
            "200ms",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!(sent > 100, "only {sent} sent");
    assert_eq!(num(&r, "/results/all/received"), sent);
    assert_eq!(server.messages(), sent);
    assert_eq!(num(&r, "/results/unanswered"), 0);
    assert_eq!(num(&r, "/results/all/connected"), 8);
    assert!(num(&r, "/results/latency/count") > 0);
    assert!(
        num(&r, "/results/window/received") < sent,
        "warm-up is not counted"
    );
}

#[test]
fn echo_open_loop_sends_on_schedule_and_gets_all_back() {
    let server = Server::start(Mode::Echo);
    let dir = temp_dir("echo-open");
    let url = server.url("/echo");
    let r = loadgen_json(
        &[
            "echo",
            "--url",
            &url,
            "-c",
            "4",
            "--rate",
            "500",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let sent = num(&r, "/results/all/sent");
    // 500/s for 1 s: the schedule is exact up to the first interval's jitter.
    assert!((498..=500).contains(&sent), "sent {sent}");
    assert_eq!(num(&r, "/results/all/received"), sent);
}

#[test]
fn fanout_delivers_every_publish_to_every_subscriber_once() {
    let server = Server::start(Mode::Broadcast);
    let dir = temp_dir("fanout");
    let url = server.url("/broadcast");
    let r = loadgen_json(
        &[
            "fanout",
            "--url",
            &url,
            "--subscribers",
            "20",
            "--publishers",
            "1",
            "--rate",
            "100",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let publishes = num(&r, "/results/all/sent");
    assert!((98..=100).contains(&publishes), "publishes {publishes}");
    assert_eq!(num(&r, "/results/delivery/expected"), 20 * publishes);
    assert_eq!(num(&r, "/results/delivery/unique"), 20 * publishes);
    assert_eq!(num(&r, "/results/all/received"), 20 * publishes);
    assert_eq!(num(&r, "/results/delivery/lost"), 0);
    assert_eq!(num(&r, "/results/delivery/duplicated"), 0);
    assert_eq!(num(&r, "/results/delivery/out_of_order"), 0);
    assert_eq!(num(&r, "/results/delivery/foreign"), 0);
}

#[test]
fn connect_and_idle_open_every_connection() {
    let server = Server::start(Mode::Echo);
    let dir = temp_dir("connect");
    let url = server.url("/echo");
    let r = loadgen_json(
        &["connect", "--url", &url, "-c", "50", "--rate", "500"],
        &dir.join("c.json"),
    );
    assert_eq!(num(&r, "/results/all/connected"), 50);
    assert_eq!(num(&r, "/results/connect_latency/count"), 50);
    assert_eq!(num(&r, "/results/all/connect_failed"), 0);
    let pid = std::process::id().to_string();
    let r = loadgen_json(
        &[
            "idle",
            "--url",
            &url,
            "-c",
            "30",
            "--warmup",
            "0s",
            "--duration",
            "300ms",
            "--server-pid",
            &pid,
        ],
        &dir.join("i.json"),
    );
    assert_eq!(num(&r, "/results/all/connected"), 30);
    assert_eq!(num(&r, "/results/all/dropped"), 0);
    assert!(r.pointer("/results/server/rss_bytes").is_some());
}

#[test]
fn a_server_that_hangs_up_right_after_a_message_is_seen_hanging_up() {
    // The message and the FIN reach the client together: a reader that stopped at the short
    // read of the message would never hear of the end of the stream.
    let server = Server::start(Mode::HangUpAfterHello);
    let dir = temp_dir("hang-up");
    let r = loadgen_json(
        &[
            "idle",
            "--url",
            &server.url("/echo"),
            "-c",
            "30",
            "--warmup",
            "0s",
            "--duration",
            "300ms",
        ],
        &dir.join("h.json"),
    );
    assert_eq!(num(&r, "/results/all/connected"), 30);
    assert_eq!(num(&r, "/results/all/dropped"), 30);
    assert_eq!(num(&r, "/results/failures/dropped: closed by server"), 30);
}

#[test]
fn churn_connects_at_its_rate_and_a_storm_reconnects_everyone_dropped() {
    let server = Server::start(Mode::Echo);
    let dir = temp_dir("churn");
    let url = server.url("/echo");
    let r = loadgen_json(
        &[
            "churn",
            "--url",
            &url,
            "-c",
            "20",
            "--rate",
            "50",
            "--stay",
            "200ms-400ms",
            "--storm",
            "50%@500ms",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let connected = num(&r, "/results/all/connected");
    // 20 initial + ~50 arrivals + the storm's reconnections.
    assert!(connected >= 65, "connected {connected}");
    assert_eq!(num(&r, "/results/all/connect_failed"), 0);
    let dropped = num(&r, "/results/storm/dropped");
    assert!(dropped > 0);
    assert_eq!(num(&r, "/results/storm/reconnected"), dropped);
}

#[test]
fn chat_rooms_deliver_to_every_other_member() {
    let server = Server::start(Mode::Broadcast);
    let dir = temp_dir("chat");
    let url = server.url("/room");
    // One room (the in-test server has one channel): 10 members, 5 msg/s each.
    let r = loadgen_json(
        &[
            "chat",
            "--url",
            &url,
            "--users",
            "10",
            "--room-size",
            "10",
            "--msg-rate",
            "5",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("r.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!((48..=50).contains(&sent), "sent {sent}");
    assert_eq!(num(&r, "/results/delivery/expected"), 9 * sent);
    assert_eq!(num(&r, "/results/delivery/unique"), 9 * sent);
    assert_eq!(num(&r, "/results/delivery/lost"), 0);
}

#[test]
fn gateway_adapter_fans_out_over_channels_and_chat_rooms() {
    let server = Server::start(Mode::GatewayProtocol);
    let dir = temp_dir("gateway-adapter");
    // The path of --url is the adapter's business: raw mode for subscribers, /ws for publishers.
    let url = server.url("/");
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--subscribers",
            "12",
            "--publishers",
            "3",
            "--channels",
            "3",
            "--rate",
            "60",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("fanout.json"),
    );
    let publishes = num(&r, "/results/all/sent");
    assert!((58..=60).contains(&publishes), "publishes {publishes}");
    // 3 channels, 4 subscribers and 1 publisher each: every publish reaches 4 subscribers.
    assert_eq!(num(&r, "/results/delivery/expected"), 4 * publishes);
    assert_eq!(num(&r, "/results/delivery/unique"), 4 * publishes);
    assert_eq!(num(&r, "/results/delivery/lost"), 0);
    assert_eq!(num(&r, "/results/delivery/foreign"), 0);

    let r = loadgen_json(
        &[
            "chat",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--users",
            "12",
            "--room-size",
            "4",
            "--msg-rate",
            "5",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("chat.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!((58..=60).contains(&sent), "sent {sent}");
    // Rooms of 4, the sender skipped: 3 deliveries per message, replies and welcomes ignored.
    assert_eq!(num(&r, "/results/delivery/expected"), 3 * sent);
    assert_eq!(num(&r, "/results/delivery/unique"), 3 * sent);
    assert_eq!(num(&r, "/results/delivery/lost"), 0);
    assert_eq!(num(&r, "/results/delivery/foreign"), 0);
}

#[test]
fn chat_members_publish_only_once_every_subscribe_is_answered() {
    // Subscriptions take 300 ms to take effect: publishing when the 101s are in (before the
    // replies) would lose the first messages of every room.
    let server = Server::start(Mode::GatewayProtocolSlowSubscribe(
        std::time::Duration::from_millis(300),
    ));
    let dir = temp_dir("gateway-slow-subscribe");
    let url = server.url("/");
    let r = loadgen_json(
        &[
            "chat",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--users",
            "8",
            "--room-size",
            "4",
            "--msg-rate",
            "20",
            "--warmup",
            "0s",
            "--duration",
            "500ms",
        ],
        &dir.join("chat.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!(sent >= 70, "sent {sent}");
    assert_eq!(num(&r, "/results/delivery/expected"), 3 * sent);
    assert_eq!(num(&r, "/results/delivery/unique"), 3 * sent);
    assert_eq!(num(&r, "/results/delivery/lost"), 0);
}

#[test]
fn connections_spread_over_urls_and_source_addresses() {
    let a = Server::start(Mode::Echo);
    let b = Server::start(Mode::Echo);
    let dir = temp_dir("spread");
    let (ua, ub) = (a.url("/echo"), b.url("/echo"));
    let r = loadgen_json(
        &[
            "echo",
            "--url",
            &ua,
            "--url",
            &ub,
            "-c",
            "6",
            "--source",
            "127.0.0.2-127.0.0.4",
            "--warmup",
            "0s",
            "--duration",
            "300ms",
        ],
        &dir.join("r.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!(a.messages() > 0 && b.messages() > 0);
    assert_eq!(a.messages() + b.messages(), sent);
    let mut seen = a.sources();
    seen.extend(b.sources());
    seen.sort();
    seen.dedup();
    let want: Vec<std::net::IpAddr> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(seen, want);
}

#[test]
fn gateway_adapter_publishes_through_the_backend_api() {
    let server = Server::start(Mode::GatewayProtocol);
    let dir = temp_dir("gateway-api");
    let url = server.url("/");
    let api = format!("http://{}", server.addr);
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--api-url",
            &api,
            "--api-key",
            "testkey",
            "--subscribers",
            "10",
            "--publishers",
            "2",
            "--channels",
            "2",
            "--rate",
            "40",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("ok.json"),
    );
    let publishes = num(&r, "/results/all/sent");
    assert!((38..=40).contains(&publishes), "publishes {publishes}");
    assert_eq!(server.messages(), publishes);
    assert_eq!(num(&r, "/results/delivery/expected"), 5 * publishes);
    assert_eq!(num(&r, "/results/delivery/unique"), 5 * publishes);
    assert_eq!(num(&r, "/results/delivery/lost"), 0);

    // A wrong key: every publish is refused, counted by status, and lost.
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--api-url",
            &api,
            "--api-key",
            "wrong",
            "--subscribers",
            "4",
            "--publishers",
            "1",
            "--rate",
            "20",
            "--warmup",
            "0s",
            "--duration",
            "500ms",
            "--drain",
            "300ms",
        ],
        &dir.join("refused.json"),
    );
    let publishes = num(&r, "/results/all/sent");
    assert_eq!(num(&r, "/results/failures/api http 401"), publishes);
    assert_eq!(num(&r, "/results/delivery/lost"), 4 * publishes);
}

#[test]
fn processes_split_broadcast_runs_by_channel_and_room() {
    let server = Server::start(Mode::GatewayProtocol);
    let dir = temp_dir("broadcast-processes");
    let url = server.url("/");
    let r = loadgen_json(
        &[
            "fanout",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--subscribers",
            "8",
            "--publishers",
            "2",
            "--channels",
            "2",
            "--rate",
            "40",
            "--processes",
            "2",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("fanout.json"),
    );
    assert_eq!(num(&r, "/results/processes"), 2);
    let publishes = num(&r, "/results/all/sent");
    assert!((38..=40).contains(&publishes), "publishes {publishes}");
    assert_eq!(num(&r, "/results/delivery/expected"), 4 * publishes);
    assert_eq!(num(&r, "/results/delivery/unique"), 4 * publishes);
    assert_eq!(num(&r, "/results/delivery/foreign"), 0);

    let r = loadgen_json(
        &[
            "chat",
            "--adapter",
            "gateway",
            "--url",
            &url,
            "--users",
            "12",
            "--room-size",
            "4",
            "--msg-rate",
            "5",
            "--processes",
            "2",
            "--warmup",
            "0s",
            "--duration",
            "1s",
        ],
        &dir.join("chat.json"),
    );
    let sent = num(&r, "/results/all/sent");
    assert!((57..=60).contains(&sent), "sent {sent}");
    assert_eq!(num(&r, "/results/delivery/expected"), 3 * sent);
    assert_eq!(num(&r, "/results/delivery/unique"), 3 * sent);
    assert_eq!(num(&r, "/results/all/connected"), 12);
}
