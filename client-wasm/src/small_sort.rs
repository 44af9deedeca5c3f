//! Sorting the page's short lists (channels, a page of messages) without
//! the standard library's sort routines: each of those is 3–4 KB of wasm
//! per element type, while an insertion sort is a few hundred bytes and as
//! fast for a few hundred items, and linear on sorted input.

/// Sorts `v` so that no item is `less` than the one before it; stable.
pub fn sort_by<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorts_like_the_standard_stable_sort(v in proptest::collection::vec((0u8..8, any::<u16>()), 0..200)) {
            let mut want = v.clone();
            want.sort_by_key(|p| p.0);
            let mut got = v;
            sort_by(&mut got, |a, b| a.0 < b.0);
            prop_assert_eq!(got, want);
        }
    }
}
