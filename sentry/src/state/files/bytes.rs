//! Byte strings in the saved form (`#[serde(with = "bytes")]`): as one length and the
//! bytes, decoded with one copy. Plain `Vec<u8>` goes through serde byte by byte, three
//! times slower on the overlay's file contents; postcard writes both the same way.

use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Bytes;
    impl serde::de::Visitor<'_> for Bytes {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_byte_buf(Bytes)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Plain(Vec<u8>);
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Fast(#[serde(with = "super")] Vec<u8>);

    #[test]
    fn same_bytes_as_a_plain_vec() {
        let data: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let plain = postcard::to_stdvec(&Plain(data.clone())).expect("encode");
        let fast = postcard::to_stdvec(&Fast(data.clone())).expect("encode");
        assert_eq!(plain, fast);
        assert_eq!(postcard::from_bytes::<Fast>(&plain).ok(), Some(Fast(data)));
        // A length beyond the input is an error, not an allocation.
        assert!(postcard::from_bytes::<Fast>(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1]).is_err());
    }
}
