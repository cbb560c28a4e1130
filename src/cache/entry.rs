//! The versioned values kept in Redis: `{version}|D{payload}` for a copy of a row at that version,
//! `{version}|I` for an invalidation ("nothing below this version is valid"; with TOMBSTONE, the row
//! is gone). A Lua compare-and-set writes a value only if it is newer than what Redis holds, so a slow
//! reader can never put an old version back.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Data { version: i64, payload: Vec<u8> },
    Invalid { version: i64 },
}

impl Entry {
    pub fn decode(raw: &[u8]) -> Option<Entry> {
        let sep = raw.iter().position(|b| *b == b'|')?;
        let version: i64 = std::str::from_utf8(&raw[..sep]).ok()?.parse().ok()?;
        match raw.get(sep + 1)? {
            b'D' => Some(Entry::Data {
                version,
                payload: raw[sep + 2..].to_vec(),
            }),
            b'I' => Some(Entry::Invalid { version }),
            _ => None,
        }
    }

    pub fn encode_data(version: i64, payload: &[u8]) -> Vec<u8> {
        let mut out = format!("{version}|D").into_bytes();
        out.extend_from_slice(payload);
        out
    }

    pub fn encode_invalid(version: i64) -> Vec<u8> {
        format!("{version}|I").into_bytes()
    }
}

/// KEYS[1] the key; ARGV: version, encoded value, ttl in ms, 'D' or 'I'.
/// Data at version v replaces: nothing, an invalidation at ≤ v, data below v.
/// An invalidation at v replaces: nothing, anything below v.
pub const SET_IF_NEWER: &str = r#"
local cur = redis.call('GET', KEYS[1])
local v = tonumber(ARGV[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep then
    local cv = tonumber(string.sub(cur, 1, sep - 1))
    local kind = string.sub(cur, sep + 1, sep + 1)
    if cv then
      if ARGV[4] == 'D' then
        if cv > v or (cv == v and kind == 'D') then return 0 end
      else
        if cv >= v then return 0 end
      end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let raw = Entry::encode_data(42, b"{\"a\":1}");
        assert_eq!(
            Entry::decode(&raw),
            Some(Entry::Data {
                version: 42,
                payload: b"{\"a\":1}".to_vec()
            })
        );
        assert_eq!(
            Entry::decode(&Entry::encode_invalid(7)),
            Some(Entry::Invalid { version: 7 })
        );
        assert_eq!(Entry::decode(b"garbage"), None);
        assert_eq!(Entry::decode(b"12|X"), None);
    }
}
