//! The page's short lists (channels, a page of messages) without the
//! standard library's sort routines and hash maps: each of those is
//! kilobytes of wasm per element type. An insertion sort and a map kept in
//! a `Vec` are a few hundred bytes, and as fast for a few hundred items
//! (an insertion sort is linear on sorted input).

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

/// A map from channel names to `V`, in a `Vec` (a page has tens of
/// channels, not thousands).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMap<V>(Vec<(String, V)>);

impl<V> Default for NameMap<V> {
    fn default() -> Self {
        NameMap(Vec::new())
    }
}

impl<V> NameMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        NameMap::default()
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == name)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.index(name).map(|i| &self.0[i].1)
    }

    /// Whether `name` has a value.
    pub fn contains_key(&self, name: &str) -> bool {
        self.index(name).is_some()
    }

    /// The value of `name`, inserting `value` first when there is none.
    pub fn get_or_insert(&mut self, name: &str, value: V) -> &mut V {
        let i = match self.index(name) {
            Some(i) => i,
            None => {
                self.0.push((name.to_owned(), value));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    /// Sets the value of `name`.
    pub fn insert(&mut self, name: String, value: V) {
        match self.index(&name) {
            Some(i) => self.0[i].1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Removes the value of `name`.
    pub fn remove(&mut self, name: &str) -> Option<V> {
        self.index(name).map(|i| self.0.swap_remove(i).1)
    }

    /// The names and values, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl<V> FromIterator<(String, V)> for NameMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(items: I) -> Self {
        let mut map = NameMap::new();
        for (k, v) in items {
            map.insert(k, v);
        }
        map
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn name_map_keeps_one_value_per_name() {
        let mut m = NameMap::new();
        assert_eq!(m.get("a"), None);
        *m.get_or_insert("a", 1) += 10;
        *m.get_or_insert("a", 5) += 1;
        m.insert("b".into(), 2);
        m.insert("b".into(), 3);
        assert_eq!((m.get("a"), m.get("b")), (Some(&12), Some(&3)));
        assert!(m.contains_key("b") && !m.contains_key("c"));
        assert_eq!(m.remove("a"), Some(12));
        assert_eq!(m.remove("a"), None);
        assert_eq!(m.iter().count(), 1);
        m.clear();
        assert_eq!(m, NameMap::default());
    }

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
