//! The message list's windowing maths: which rows to render for a
//! channel of any length, and how tall the spacers standing in for the
//! rest are. Pure, tested natively; the component measures the DOM and
//! asks these functions what to render.

use std::ops::Range;

/// Rows rendered at most (a tall window shows about 60 rows of 20 px).
pub const ROWS: usize = 150;

/// When the rows in view come within this many of either end of the
/// rendered window (and there are more beyond it), the window moves.
pub const MARGIN: usize = 30;

/// The row height assumed before any is measured, in CSS pixels.
pub const DEFAULT_ROW_PX: f64 = 26.0;

/// The window ending at the newest message (following the bottom).
pub fn bottom(len: usize) -> Range<usize> {
    len.saturating_sub(ROWS)..len
}

/// The window starting at position `start` (moved back so that it is
/// full when `start` is near the end).
pub fn starting_at(len: usize, start: usize) -> Range<usize> {
    let start = start.min(len.saturating_sub(ROWS));
    start..(start + ROWS).min(len)
}

/// A window with position `i` a third of the way down: where a revealed
/// message goes.
pub fn around(len: usize, i: usize) -> Range<usize> {
    starting_at(len, i.saturating_sub(ROWS / 3))
}

/// The window to render next when rows `first..=last` are in view, or
/// `None` when `window` still covers them with [`MARGIN`] rows to spare
/// on each side that has more rows beyond it.
pub fn follow(
    window: &Range<usize>,
    len: usize,
    first: usize,
    last: usize,
) -> Option<Range<usize>> {
    let near_top = window.start > 0 && first < window.start + MARGIN;
    let near_end = window.end < len && last + MARGIN >= window.end;
    if !near_top && !near_end {
        return None;
    }
    // Centre the rows in view.
    let shown = last.saturating_sub(first) + 1;
    let before = ROWS.saturating_sub(shown) / 2;
    let next = starting_at(len, first.saturating_sub(before));
    (next != *window).then_some(next)
}

/// The heights of the spacers above and below `window`, with rows of
/// `row_px` on average.
pub fn spacers(window: &Range<usize>, len: usize, row_px: f64) -> (f64, f64) {
    let above = window.start as f64 * row_px;
    let below = len.saturating_sub(window.end) as f64 * row_px;
    (above, below)
}

/// The row at `y` pixels below the top of the list (spacers included)
/// when no rendered row is there (a scrollbar dragged far): estimated
/// from the spacer above, the rendered height and the average row.
pub fn row_at(window: &Range<usize>, len: usize, y: f64, rendered_px: f64, row_px: f64) -> usize {
    let row_px = row_px.max(1.0);
    let (above, _) = spacers(window, len, row_px);
    let i = if y < above {
        (y.max(0.0) / row_px) as usize
    } else if y > above + rendered_px {
        window.end + ((y - above - rendered_px) / row_px) as usize
    } else {
        window.start + ((y - above) / row_px) as usize
    };
    i.min(len.saturating_sub(1))
}

/// A new average row height from a measurement of `rows` rendered rows
/// that took `px`: clamped, and smoothed so the spacers do not jump; a
/// change under 2 px is ignored (20 000 rows times a small change would
/// move the spacers by thousands of pixels at every new message).
pub fn measured(old: f64, px: f64, rows: usize) -> f64 {
    if rows == 0 || !px.is_finite() || px <= 0.0 {
        return old;
    }
    let now = (px / rows as f64).clamp(12.0, 400.0);
    if (now - old).abs() < 2.0 {
        old
    } else {
        old * 0.5 + now * 0.5
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_at_the_ends() {
        assert_eq!(bottom(50), 0..50);
        assert_eq!(bottom(20_000), 19_850..20_000);
        assert_eq!(starting_at(20_000, 19_990), 19_850..20_000);
        assert_eq!(around(20_000, 1_000), 950..1_100);
        assert_eq!(around(20_000, 10), 0..150);
        assert_eq!(spacers(&(100..250), 1_000, 20.0), (2_000.0, 15_000.0));
    }

    #[test]
    fn the_window_moves_only_near_its_edges() {
        let w = 1_000..1_150;
        assert_eq!(follow(&w, 20_000, 1_050, 1_080), None);
        let up = follow(&w, 20_000, 1_010, 1_040).expect("moves up");
        assert!(up.start < 1_010 && up.end > 1_040 && up.len() == ROWS);
        let down = follow(&w, 20_000, 1_100, 1_130).expect("moves down");
        assert!(down.start < 1_100 && down.end > 1_130);
        // At the very start or end there is nothing to move to.
        assert_eq!(follow(&(0..150), 20_000, 0, 20), None);
        assert_eq!(follow(&bottom(20_000), 20_000, 19_980, 19_999), None);
        assert_eq!(follow(&(0..50), 50, 0, 49), None);
    }

    #[test]
    fn dragging_far_lands_on_an_estimated_row() {
        let w = 1_000..1_150;
        assert_eq!(row_at(&w, 20_000, 500.0 * 20.0, 3_000.0, 20.0), 500);
        assert_eq!(row_at(&w, 20_000, 20_000.0 + 1_500.0, 3_000.0, 20.0), 1_075);
        assert_eq!(row_at(&w, 20_000, 1e12, 3_000.0, 20.0), 19_999);
        assert_eq!(measured(26.0, 2_000.0, 100), 23.0);
        assert_eq!(measured(26.0, 0.0, 100), 26.0);
        assert_eq!(measured(26.0, 2_700.0, 100), 26.0, "jitter ignored");
    }

    proptest! {
        #[test]
        fn a_moved_window_covers_the_rows_in_view(
            len in 1usize..30_000, start in 0usize..30_000, a in 0usize..150, b in 0usize..60,
        ) {
            let w = starting_at(len, start.min(len));
            let first = (w.start + a).min(len - 1);
            let last = (first + b).min(len - 1);
            let next = follow(&w, len, first, last).unwrap_or(w);
            prop_assert!(next.end <= len && next.len() == ROWS.min(len));
            prop_assert!(next.start <= first && last < next.end);
        }
    }
}
