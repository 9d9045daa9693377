//! The delivery header a `framing: taphold` destination (and the arbiter) reads.

use taphold_wire::delivery::{Packet, HEADER_LEN};
use taphold_wire::DeliveryRepr;

use crate::{Material, Target};

pub const TARGET: Target = Target {
    name: "delivery",
    run,
    seeds,
};

fn seeds(m: &Material) -> Vec<Vec<u8>> {
    m.deliveries()
}

pub fn run(data: &[u8]) {
    let checked = Packet::new_checked(data);
    let parsed = DeliveryRepr::parse(&Packet::new_unchecked(data));
    match checked {
        Err(e) => assert_eq!(parsed, Err(e)),
        Ok(p) => {
            let r = parsed.expect("a checked header parses");
            assert_eq!(
                r.to_bytes(),
                data[..HEADER_LEN],
                "the header emits back to its bytes"
            );
            assert_eq!(p.payload(), &data[HEADER_LEN..]);
            assert_eq!(r.buffer_len(), HEADER_LEN);
        }
    }
}
