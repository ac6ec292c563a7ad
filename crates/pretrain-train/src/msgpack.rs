//! A bounds check of MessagePack bytes before serde reads them.
//!
//! rmp-serde hands each array's declared length to serde as a size hint, and some types
//! reserve it whole: burn's `TensorData` shape is a `SmallVec`, so an `optimizer.bin` of 11 KB
//! declaring a 2^29-element shape asked for 4 GiB (found by fuzzing). Every value takes at
//! least one byte, so a well-formed file never declares more elements, or longer strings, than
//! it has bytes left; this walk refuses any that does, before a single allocation.

use rmp::Marker;

/// Why bytes are not a bounded MessagePack value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgpackError {
    /// The bytes end inside a value.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Where the missing value starts.
        offset: usize,
    },
    /// An array, map, string, binary or extension declares more than the bytes left.
    #[error("byte {offset} declares {declared} {what}, but only {left} bytes follow")]
    Oversized {
        /// Where the header is.
        offset: usize,
        /// Elements (arrays), entries (maps) or bytes (strings, binaries, extensions).
        declared: u64,
        /// What the count counts.
        what: &'static str,
        /// Bytes after the header.
        left: usize,
    },
    /// The reserved marker 0xc1.
    #[error("byte {offset} is the reserved marker 0xc1")]
    Reserved {
        /// Where it is.
        offset: usize,
    },
    /// Bytes after the one top-level value.
    #[error("{extra} bytes after the value")]
    Trailing {
        /// How many.
        extra: usize,
    },
}

/// Checks that `bytes` hold exactly one MessagePack value whose every declared length fits
/// in the bytes that follow it. Iterative (a counter of values still to read), so nesting
/// depth costs no stack.
pub fn check_bounded(bytes: &[u8]) -> Result<(), MsgpackError> {
    let mut pos = 0usize;
    // Values still to read; u64 so that map entries (2 values each) cannot overflow.
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let offset = pos;
        let &byte = bytes.get(pos).ok_or(MsgpackError::Truncated { offset })?;
        pos += 1;
        let mut read = |n: usize| -> Result<u64, MsgpackError> {
            let field = bytes
                .get(pos..pos + n)
                .ok_or(MsgpackError::Truncated { offset })?;
            pos += n;
            Ok(field.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
        };
        // (payload bytes to skip, nested values to read, what a declared length counts)
        let (skip, values, what) = match Marker::from_u8(byte) {
            Marker::Reserved => return Err(MsgpackError::Reserved { offset }),
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0, "")
            }
            // Fixed-width scalars (no declared length: a short one is a truncation).
            Marker::U8 | Marker::I8 => (1, 0, ""),
            Marker::U16 | Marker::I16 => (2, 0, ""),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0, ""),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0, ""),
            Marker::FixStr(n) => (u64::from(n), 0, "string bytes"),
            Marker::Str8 | Marker::Bin8 => (read(1)?, 0, "bytes"),
            Marker::Str16 | Marker::Bin16 => (read(2)?, 0, "bytes"),
            Marker::Str32 | Marker::Bin32 => (read(4)?, 0, "bytes"),
            // Extensions: a type byte, then the data.
            Marker::FixExt1 => (2, 0, "extension bytes"),
            Marker::FixExt2 => (3, 0, "extension bytes"),
            Marker::FixExt4 => (5, 0, "extension bytes"),
            Marker::FixExt8 => (9, 0, "extension bytes"),
            Marker::FixExt16 => (17, 0, "extension bytes"),
            Marker::Ext8 => (read(1)? + 1, 0, "extension bytes"),
            Marker::Ext16 => (read(2)? + 1, 0, "extension bytes"),
            Marker::Ext32 => (read(4)? + 1, 0, "extension bytes"),
            Marker::FixArray(n) => (0, u64::from(n), "elements"),
            Marker::Array16 => (0, read(2)?, "elements"),
            Marker::Array32 => (0, read(4)?, "elements"),
            Marker::FixMap(n) => (0, 2 * u64::from(n), "map keys and values"),
            Marker::Map16 => (0, 2 * read(2)?, "map keys and values"),
            Marker::Map32 => (0, 2 * read(4)?, "map keys and values"),
        };
        let left = bytes.len() - pos;
        // Each pending value takes at least one byte too.
        if skip.saturating_add(values).saturating_add(pending) > left as u64 {
            if what.is_empty() {
                return Err(MsgpackError::Truncated { offset });
            }
            return Err(MsgpackError::Oversized {
                offset,
                declared: skip.max(values),
                what,
                left,
            });
        }
        pos += skip as usize;
        pending += values;
    }
    match bytes.len() - pos {
        0 => Ok(()),
        extra => Err(MsgpackError::Trailing { extra }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_values() {
        // {"a": [1, -1, 2.5f64, "xy", bin[0xff], nil, true]}
        let mut bytes = vec![0x81, 0xa1, b'a', 0x97, 0x01, 0xff, 0xcb];
        bytes.extend(2.5f64.to_be_bytes());
        bytes.extend([0xa2, b'x', b'y', 0xc4, 0x01, 0xff, 0xc0, 0xc3]);
        assert_eq!(check_bounded(&bytes), Ok(()));
        // An array16 of 300 zeros, and a u64.
        let mut long = vec![0xdc, 0x01, 0x2c];
        long.extend([0u8; 300]);
        assert_eq!(check_bounded(&long), Ok(()));
        assert_eq!(check_bounded(&[0xcf, 0, 0, 0, 0, 0, 0, 0, 7]), Ok(()));
    }

    #[test]
    fn refuses_a_declared_length_beyond_the_bytes() {
        // array32 of 2^29 elements, then 3 bytes.
        let bytes = [0xdd, 0x20, 0, 0, 0, 1, 2, 3];
        assert_eq!(
            check_bounded(&bytes),
            Err(MsgpackError::Oversized {
                offset: 0,
                declared: 1 << 29,
                what: "elements",
                left: 3
            })
        );
        // A string of 10 bytes with 2 left; a map of 2 entries with 3 values.
        assert!(matches!(
            check_bounded(&[0xd9, 10, b'a', b'b']),
            Err(MsgpackError::Oversized { declared: 10, .. })
        ));
        assert!(matches!(
            check_bounded(&[0x82, 1, 2, 3]),
            Err(MsgpackError::Oversized { declared: 4, .. })
        ));
    }

    #[test]
    fn counts_the_values_still_pending_after_a_nested_header() {
        // [[x, x, x], y]: the inner array fits its own bytes but not the outer's next value.
        assert!(matches!(
            check_bounded(&[0x92, 0x93, 1, 2, 3]),
            Err(MsgpackError::Oversized { offset: 1, .. })
        ));
        assert_eq!(check_bounded(&[0x92, 0x93, 1, 2, 3, 4]), Ok(()));
    }

    #[test]
    fn refuses_truncation_reserved_markers_and_trailing_bytes() {
        assert_eq!(
            check_bounded(&[0xcd, 1]),
            Err(MsgpackError::Truncated { offset: 0 })
        );
        assert_eq!(
            check_bounded(&[]),
            Err(MsgpackError::Truncated { offset: 0 })
        );
        assert_eq!(
            check_bounded(&[0xc1]),
            Err(MsgpackError::Reserved { offset: 0 })
        );
        assert_eq!(
            check_bounded(&[1, 2]),
            Err(MsgpackError::Trailing { extra: 1 })
        );
    }

    #[test]
    fn deep_nesting_uses_no_stack() {
        let mut bytes = vec![0x91; 1_000_000];
        bytes.push(0xc0);
        assert_eq!(check_bounded(&bytes), Ok(()));
    }
}
