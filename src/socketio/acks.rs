//! Which of the engine's direct replies answer a Socket.IO acknowledgement.
//!
//! An event sent with an acknowledgement callback goes to the engine under a request id
//! minted here (the client's own `data.id`, if any, is kept aside and put back into the
//! reply). The engine echoes the minted id on the event's direct reply, which the socket
//! then emits as an event *and* sends as the acknowledgement. A minted id is a string that
//! starts with U+0001, so it cannot be mistaken for an id a well-behaved client chose (one
//! that sends such ids only confuses its own replies).

use bandsync_protocol::RequestId;
use std::collections::VecDeque;

/// Acknowledgements waiting at once, per socket. The engine answers every acknowledged
/// event, so this is reached only by a client that fires faster than the engine answers;
/// the oldest wait is then forgotten (its callback never runs, as with a lost reply).
const MAX_WAITING: usize = 64;

/// What a reply with a given request id is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Answer {
    /// Not ours: emit it with the id it carries.
    Plain,
    /// The answer to acknowledgement `ack`, for a request whose own id was `client_id`.
    Ack {
        ack: u64,
        client_id: Option<RequestId>,
        /// The event has no direct reply in the contract (its answer is a broadcast): the
        /// `sync_response` that answers the acknowledgement goes to the callback only.
        ack_only_state: bool,
    },
    /// The answer to the rejoin of a recovering socket.
    Recovery { last_version: Option<u64> },
}

struct Waiting {
    id: RequestId,
    answer: Answer,
}

#[derive(Default)]
pub(super) struct Acks {
    next: u64,
    waiting: VecDeque<Waiting>,
}

impl Acks {
    fn mint(&mut self, answer: Answer) -> RequestId {
        self.next += 1;
        let id = RequestId::Text(format!("\u{1}{}", self.next));
        if self.waiting.len() == MAX_WAITING {
            self.waiting.pop_front();
        }
        self.waiting.push_back(Waiting {
            id: id.clone(),
            answer,
        });
        id
    }

    /// The id to send an event acknowledged as `ack` under.
    pub(super) fn expect(
        &mut self,
        ack: u64,
        client_id: Option<RequestId>,
        ack_only_state: bool,
    ) -> RequestId {
        self.mint(Answer::Ack {
            ack,
            client_id,
            ack_only_state,
        })
    }

    /// The id of a recovering socket's rejoin.
    pub(super) fn recovery(&mut self, last_version: Option<u64>) -> RequestId {
        self.mint(Answer::Recovery { last_version })
    }

    /// What the reply carrying `id` answers (once: the wait ends).
    pub(super) fn answer(&mut self, id: &RequestId) -> Answer {
        match self.waiting.iter().position(|w| &w.id == id) {
            Some(at) => self.waiting.remove(at).map_or(Answer::Plain, |w| w.answer),
            None => Answer::Plain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_id_answers_its_acknowledgement_once() {
        let mut acks = Acks::default();
        let client = Some(RequestId::from("r1"));
        let id = acks.expect(7, client.clone(), true);
        assert_eq!(acks.answer(&RequestId::from("r1")), Answer::Plain);
        assert_eq!(
            acks.answer(&id),
            Answer::Ack {
                ack: 7,
                client_id: client,
                ack_only_state: true,
            }
        );
        assert_eq!(acks.answer(&id), Answer::Plain, "answered once");
        let rejoin = acks.recovery(Some(3));
        assert_eq!(
            acks.answer(&rejoin),
            Answer::Recovery {
                last_version: Some(3)
            }
        );
    }

    #[test]
    fn waits_are_bounded() {
        let mut acks = Acks::default();
        let first = acks.expect(0, None, false);
        for ack in 1..=MAX_WAITING as u64 {
            acks.expect(ack, None, false);
        }
        assert_eq!(
            acks.answer(&first),
            Answer::Plain,
            "the oldest was forgotten"
        );
        assert_eq!(acks.waiting.len(), MAX_WAITING);
    }
}
