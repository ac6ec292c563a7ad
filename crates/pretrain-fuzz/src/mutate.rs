//! A seeded byte mutator for the smoke run: the edits libFuzzer's default mutators make (bit
//! flips, interesting integers, insertions, deletions, duplications, splices), without its
//! coverage feedback. Written here because the stable toolchain has no libFuzzer and the
//! mutators of `arbitrary`-style crates generate structured values, not damaged files.

use rand::RngExt;
use rand::rngs::StdRng;

/// Inputs grow to at most this many bytes.
pub const MAX_LEN: usize = 1 << 20;

/// Values that sit on the edges of sizes and counts.
const INTERESTING_U32: [u32; 8] = [0, 1, 0x7f, 0xff, 0x8000, 0xffff, 0x7fff_ffff, 0xffff_ffff];

/// Bytes that mean something to the text formats (quotes, separators, markup, escapes).
const SYNTAX: &[u8] = b"\"',;\t\n\r<>{}[]=\\#:%\0";

/// A mutation of `input`: one to four edits, sometimes splicing in part of `other`.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        edit(&mut out, other, rng);
    }
    out.truncate(MAX_LEN);
    out
}

fn edit(out: &mut Vec<u8>, other: &[u8], rng: &mut StdRng) {
    let len = out.len();
    let at = |rng: &mut StdRng| {
        if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        }
    };
    match rng.random_range(0..9) {
        0 if len > 0 => {
            let i = at(rng);
            out[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = at(rng);
            out[i] = rng.random();
        }
        2 if len >= 4 => {
            let i = rng.random_range(0..=len - 4);
            let value = INTERESTING_U32[rng.random_range(0..INTERESTING_U32.len())];
            let bytes = if rng.random() {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            out[i..i + 4].copy_from_slice(&bytes);
        }
        3 => {
            let i = at(rng);
            let n = rng.random_range(1..=16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            out.splice(i..i, bytes);
        }
        4 => {
            let i = at(rng);
            out.insert(i, SYNTAX[rng.random_range(0..SYNTAX.len())]);
        }
        5 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(64));
            out.drain(i..i + n);
        }
        6 if len > 0 => {
            let i = at(rng);
            let n = rng.random_range(1..=(len - i).min(64));
            let copy = out[i..i + n].to_vec();
            let to = at(rng);
            out.splice(to..to, copy);
        }
        7 => out.truncate(at(rng)),
        _ if !other.is_empty() => {
            let from = rng.random_range(0..other.len());
            let n = rng.random_range(1..=(other.len() - from).min(256));
            let to = at(rng);
            out.splice(to..to, other[from..from + n].iter().copied());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mutations_are_seeded_and_change_the_input() {
        let input = b"label,text\n1,hello world\n".to_vec();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| mutate(&input, b"other", &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(run(3).iter().filter(|m| **m != input).count() > 40);
        let mut rng = StdRng::seed_from_u64(4);
        assert!(mutate(&[], b"", &mut rng).len() <= 16 * 4);
    }
}
