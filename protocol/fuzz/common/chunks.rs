//! Shared by the fuzz targets that feed a stream in pieces.

/// `stream` cut into pieces of the sizes in `sizes` (cycled; a size of 0
/// gives an empty piece), the last piece taking the rest.
pub fn chunks<'a>(sizes: &[u8], stream: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = stream;
    for &s in sizes.iter().cycle().take(stream.len()) {
        if rest.is_empty() {
            break;
        }
        let n = usize::from(s).min(rest.len());
        let (a, b) = rest.split_at(n);
        chunks.push(a);
        rest = b;
    }
    if !rest.is_empty() || chunks.is_empty() {
        chunks.push(rest);
    }
    chunks
}
