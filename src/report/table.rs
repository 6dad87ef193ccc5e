//! The one table renderer: plain columns separated by two spaces, no borders, sized to the
//! widest cell (in characters). The last cell of a row is never padded and trailing spaces
//! are trimmed, so a shorter row (an error line under a runtime's row) spans the rest.
//! Cells hold outside text (tags, labels, errors): each is made inert on one line
//! ([`crate::text::inert`]) before it is measured, so no cell can break a row or the layout.
//!
//! Hand-rolled on purpose: `comfy-table` and `tabled` pad the last column, count widths
//! differently and have no spanning tail cell, so neither reproduces the layout the README
//! captures and the tests assert byte for byte.

use std::fmt::Write as _;

/// A table being filled: a header row, then [`Table::row`]s, then [`Table::render`].
#[derive(Debug, Clone)]
pub struct Table {
    min: Vec<usize>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str]) -> Self {
        Table {
            min: vec![0; header.len()],
            right: vec![false; header.len()],
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Column `col` is at least `width` characters wide, whatever its cells.
    pub fn min_width(mut self, col: usize, width: usize) -> Self {
        self.min[col] = width;
        self
    }

    /// Column `col` is right-aligned (numbers).
    pub fn align_right(mut self, col: usize) -> Self {
        self.right[col] = true;
        self
    }

    /// Appends a row; fewer cells than the header make the last one span the rest.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Appends each row of `rows`.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = Vec<String>>) {
        self.rows.extend(rows);
    }

    /// Whether only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() == 1
    }

    /// The table, one `\n`-terminated line per row.
    pub fn render(&self) -> String {
        let rows = self.cells();
        let widths = Self::widths(&rows, &self.min);
        let mut out = String::new();
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                    break;
                }
                let pad = " ".repeat(widths[c].saturating_sub(cell.chars().count()));
                if self.right.get(c) == Some(&true) {
                    let _ = write!(line, "{pad}{cell}  ");
                } else {
                    let _ = write!(line, "{cell}{pad}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The cells as shown: each on one line, inert.
    fn cells(&self) -> Vec<Vec<std::borrow::Cow<'_, str>>> {
        self.rows
            .iter()
            .map(|row| row.iter().map(|c| crate::text::inert(c)).collect())
            .collect()
    }

    /// Each column's width: its widest padded cell (a row's last cell is not padded), at
    /// least its minimum.
    fn widths(rows: &[Vec<std::borrow::Cow<'_, str>>], min: &[usize]) -> Vec<usize> {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths: Vec<usize> = (0..cols)
            .map(|c| min.get(c).copied().unwrap_or(0))
            .collect();
        for row in rows {
            for (c, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                widths[c] = widths[c].max(cell.chars().count());
            }
        }
        widths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_cell_spans() {
        let mut t = Table::new(&["NAME", "N", "NOTE"])
            .min_width(1, 3)
            .align_right(1);
        t.row(vec!["alpha".into(), "1.5s".into(), "ok".into()]);
        t.row(vec!["b".into(), "2".into(), String::new()]);
        t.row(vec![String::new(), "error: a long line spanning".into()]);
        assert_eq!(
            t.render(),
            "NAME      N  NOTE\nalpha  1.5s  ok\nb         2\n       error: a long line spanning\n"
        );
    }

    #[test]
    fn widths_count_characters_and_never_panic() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["é…".into(), "x".into()]);
        t.row(vec![]);
        t.row(vec!["a".into(), "b".into(), "extra".into()]);
        assert_eq!(t.render(), "A   B\né…  x\n\na   b  extra\n");
    }

    #[test]
    fn cells_are_inert_on_one_line_and_keep_the_layout() {
        let mut t = Table::new(&["TAG", "WHY"]);
        t.row(vec!["x\x1b[2J".into(), "a\nforged line\r".into()]);
        t.row(vec!["y".into(), "ok".into()]);
        assert_eq!(
            t.render(),
            "TAG         WHY\nx\\u{1b}[2J  a\\nforged line\\r\ny           ok\n"
        );
    }
}
