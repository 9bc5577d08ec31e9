//! Every peer server speaks the bench protocol (`bench/PROTOCOL.md`): started with `--listen`
//! and `--threads`, it announces its address, echoes on `/echo`, relays `pub:` messages on
//! `/broadcast` to every connection but the sender, in order, and exits on SIGTERM.

mod support;

use std::time::Duration;

use frame_simd::Opcode;
use support::{Client, Server};

/// The same checks for every peer; `start` launches it with a thread count.
struct Peer {
    program: &'static str,
    args: &'static [&'static str],
}

impl Peer {
    fn start(&self, threads: usize) -> Server {
        Server::start(self.program, self.args, threads)
    }

    fn echoes_text_and_binary_messages_of_every_length_encoding(&self) {
        let server = self.start(2);
        let mut client = Client::connect(server.addr, "/echo");
        let binary_300: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let binary_70k: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let messages: [(Opcode, &[u8]); 5] = [
            (Opcode::Text, b"hello"),
            (Opcode::Binary, &[0, 1, 2, 255]),
            (Opcode::Text, "héllo wörld".as_bytes()),
            (Opcode::Binary, &binary_300),
            (Opcode::Binary, &binary_70k),
        ];
        for (opcode, payload) in messages {
            client.send(opcode, payload);
            let (got_opcode, got) = client.recv();
            assert_eq!(
                got_opcode, opcode,
                "{} echoed the wrong opcode",
                self.program
            );
            assert!(
                got == payload,
                "{} echoed {} bytes, sent {}",
                self.program,
                got.len(),
                payload.len()
            );
        }
        // Pipelined: all sent before any is read, answers in order.
        for i in 0..20 {
            client.send(Opcode::Text, format!("message {i}").as_bytes());
        }
        for i in 0..20 {
            assert_eq!(
                client.recv(),
                (Opcode::Text, format!("message {i}").into_bytes())
            );
        }
        server.terminate();
    }

    fn echoes_a_fragmented_message_whole(&self) {
        let server = self.start(1);
        let mut client = Client::connect(server.addr, "/echo");
        client.send_fragment(false, Opcode::Text, b"frag");
        client.send_fragment(false, Opcode::Continuation, b"men");
        client.send_fragment(true, Opcode::Continuation, b"ted");
        assert_eq!(client.recv(), (Opcode::Text, b"fragmented".to_vec()));
    }

    fn answers_ping_with_pong_and_close_with_close(&self) {
        let server = self.start(1);
        let mut client = Client::connect(server.addr, "/echo");
        client.send(Opcode::Ping, b"are you there");
        assert_eq!(client.recv(), (Opcode::Pong, b"are you there".to_vec()));
        client.send(Opcode::Close, &[0x03, 0xe8]);
        let (opcode, payload) = client.recv();
        assert_eq!(opcode, Opcode::Close);
        assert_eq!(
            payload.get(..2),
            Some(&[0x03, 0xe8][..]),
            "close code not echoed"
        );
        client.expect_eof();
    }

    fn broadcasts_every_publish_in_order_to_all_but_the_publisher(&self) {
        let server = self.start(2);
        let mut subscribers: Vec<Client> = (0..3)
            .map(|_| Client::connect(server.addr, "/broadcast"))
            .collect();
        let mut publisher = Client::connect(server.addr, "/broadcast");
        // Not publishes: ignored.
        publisher.send(Opcode::Text, b"hello");
        publisher.send(Opcode::Binary, b"pub:binary is not a publish");
        for i in 0..10 {
            publisher.send(Opcode::Text, format!("pub:message {i}").as_bytes());
        }
        for (n, subscriber) in subscribers.iter_mut().enumerate() {
            for i in 0..10 {
                let expected = (Opcode::Text, format!("message {i}").into_bytes());
                assert_eq!(
                    subscriber.recv(),
                    expected,
                    "{}: subscriber {n}",
                    self.program
                );
            }
        }
        publisher.expect_nothing(Duration::from_millis(300));
        for subscriber in &mut subscribers {
            subscriber.expect_nothing(Duration::from_millis(50));
        }
        server.terminate();
    }
}

/// The raw writer hands publishes between its event loops; with 16 subscribers on 2 loops
/// (`SO_REUSEPORT` spreads them by address hash) the chance that none sits on the other loop
/// than the publisher's is 2^-16.
#[test]
fn raw_writer_delivers_across_its_event_loops() {
    let server = RAW_WRITER.start(2);
    let mut subscribers: Vec<Client> = (0..16)
        .map(|_| Client::connect(server.addr, "/broadcast"))
        .collect();
    let mut publisher = Client::connect(server.addr, "/broadcast");
    for i in 0..20 {
        publisher.send(Opcode::Text, format!("pub:{i}").as_bytes());
    }
    for (n, subscriber) in subscribers.iter_mut().enumerate() {
        for i in 0..20 {
            assert_eq!(
                subscriber.recv(),
                (Opcode::Text, i.to_string().into_bytes()),
                "subscriber {n}"
            );
        }
    }
    publisher.expect_nothing(Duration::from_millis(100));
}

const TOKIO_TUNGSTENITE: Peer = Peer {
    program: env!("CARGO_BIN_EXE_peer-tokio-tungstenite"),
    args: &[],
};
const FASTWEBSOCKETS: Peer = Peer {
    program: env!("CARGO_BIN_EXE_peer-fastwebsockets"),
    args: &[],
};
const RAW_WRITER: Peer = Peer {
    program: env!("CARGO_BIN_EXE_peer-raw-writer"),
    args: &[],
};
const NODE_WS: Peer = Peer {
    program: "node",
    args: &[concat!(env!("CARGO_MANIFEST_DIR"), "/peers/node/server.js")],
};
const PYTHON_WEBSOCKETS: Peer = Peer {
    program: "python3",
    args: &[concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/peers/python/server.py"
    )],
};

/// One test per peer and behaviour, so a failure names both.
macro_rules! peer_tests {
    ($($module:ident => $peer:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn echoes_text_and_binary_messages_of_every_length_encoding() {
                $peer.echoes_text_and_binary_messages_of_every_length_encoding();
            }

            #[test]
            fn echoes_a_fragmented_message_whole() {
                $peer.echoes_a_fragmented_message_whole();
            }

            #[test]
            fn answers_ping_with_pong_and_close_with_close() {
                $peer.answers_ping_with_pong_and_close_with_close();
            }

            #[test]
            fn broadcasts_every_publish_in_order_to_all_but_the_publisher() {
                $peer.broadcasts_every_publish_in_order_to_all_but_the_publisher();
            }
        }
    )*};
}

peer_tests! {
    tokio_tungstenite => TOKIO_TUNGSTENITE,
    fastwebsockets => FASTWEBSOCKETS,
    raw_writer => RAW_WRITER,
    node_ws => NODE_WS,
    python_websockets => PYTHON_WEBSOCKETS,
}
