//! Decoded copies of cached payloads, kept per thread by the payload's exact bytes. A warm view
//! reads the same session, connection list and settings payloads over and over; decoding JSON
//! each time costs more than cloning the value decoded before. Keyed by the bytes themselves, an
//! entry can never be stale: other bytes are another key.

use std::any::{Any, TypeId};
use std::cell::RefCell;

use crate::memo::BoundedMemo;

/// Bytes of payload kept per thread; past it the memo starts empty.
const BUDGET: usize = 1024 * 1024;
/// Payloads bigger than this are decoded every time.
const MAX_PAYLOAD: usize = 16 * 1024;

type Memo = BoundedMemo<(TypeId, Vec<u8>), Box<dyn Any>>;

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(BoundedMemo::new(BUDGET, MAX_PAYLOAD));
}

/// `decode(payload)`, or a clone of what it returned for the same bytes before on this thread.
pub fn decode_memoized<T: Clone + 'static>(
    payload: &[u8],
    decode: impl FnOnce(&[u8]) -> Option<T>,
) -> Option<T> {
    let key = (TypeId::of::<T>(), payload.to_vec());
    let known = MEMO.with_borrow(|memo| {
        memo.get(&key)
            .and_then(|value| value.downcast_ref::<T>())
            .cloned()
    });
    if known.is_some() {
        return known;
    }
    let value = decode(payload)?;
    let size = payload.len();
    MEMO.with_borrow_mut(|memo| memo.insert(key, Box::new(value.clone()), size));
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_decode_once_and_other_bytes_decode_anew() {
        let calls = std::cell::Cell::new(0);
        let decode = |bytes: &[u8]| {
            calls.set(calls.get() + 1);
            serde_json::from_slice::<Vec<i64>>(bytes).ok()
        };
        assert_eq!(decode_memoized(b"[1,2]", decode), Some(vec![1, 2]));
        assert_eq!(decode_memoized(b"[1,2]", decode), Some(vec![1, 2]));
        assert_eq!(decode_memoized(b"[3]", decode), Some(vec![3]));
        assert_eq!(calls.get(), 2);
        // A payload that does not decode is not remembered as anything.
        assert_eq!(decode_memoized(b"[oops", decode), None);
        assert_eq!(decode_memoized(b"[oops", decode), None);
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn a_type_is_part_of_the_key() {
        assert_eq!(
            decode_memoized(b"7", |b| serde_json::from_slice::<i64>(b).ok()),
            Some(7)
        );
        assert_eq!(
            decode_memoized(b"7", |b| serde_json::from_slice::<String>(b).ok()),
            None
        );
    }

    #[test]
    fn it_stays_within_its_budget() {
        for i in 0..(2 * BUDGET / 8) {
            let text = format!("[{i}]");
            decode_memoized(text.as_bytes(), |b| {
                serde_json::from_slice::<Vec<u64>>(b).ok()
            });
        }
        MEMO.with_borrow(|memo| assert!(memo.bytes() <= BUDGET));
    }
}
