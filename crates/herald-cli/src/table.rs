//! Aligned plain-text tables for people: a header row, then one row per
//! item, columns two spaces apart, numbers flush right.

use std::fmt::Write as _;

/// Which side of its column a cell sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    /// Text: flush left.
    Left,
    /// Numbers: flush right, so their digits line up.
    Right,
}

/// A table being filled in; [`render`](Table::render) lays it out.
#[derive(Debug)]
pub(crate) struct Table {
    headers: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub(crate) fn new(headers: &[(&'static str, Align)]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank and extra ones are dropped.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines, each ending in a newline, with no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let widths: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .map(|(i, (header, _))| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|cell| cell.chars().count())
                    .fold(header.len(), usize::max)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<&str> = self.headers.iter().map(|(h, _)| *h).collect();
        self.render_row(&mut out, &header, &widths);
        for row in &self.rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            self.render_row(&mut out, &cells, &widths);
        }
        out
    }

    fn render_row(&self, out: &mut String, cells: &[&str], widths: &[usize]) {
        let mut line = String::new();
        for (i, ((_, align), width)) in self.headers.iter().zip(widths).enumerate() {
            let cell = cells.get(i).copied().unwrap_or("");
            if i > 0 {
                line.push_str("  ");
            }
            // Writing to a String cannot fail.
            let _ = match align {
                Align::Left => write!(line, "{cell:<width$}"),
                Align::Right => write!(line, "{cell:>width$}"),
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

/// Two columns of names and values, for one item's details.
pub(crate) fn details(pairs: &[(&'static str, String)]) -> String {
    let mut table = Table::new(&[("", Align::Left), ("", Align::Left)]);
    for (name, value) in pairs {
        table.row(vec![format!("{name}:"), value.clone()]);
    }
    // The empty header row renders as a blank first line; drop it.
    table.render().trim_start_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&[("NAME", Align::Left), ("MESSAGES", Align::Right), ("NOTE", Align::Left)]);
        table.row(vec!["orders".into(), "12".into(), "ok".into()]);
        table.row(vec!["payments-eu".into(), "3456789012".into(), String::new()]);
        assert_eq!(
            table.render(),
            "NAME           MESSAGES  NOTE\n\
             orders               12  ok\n\
             payments-eu  3456789012\n"
        );
    }

    #[test]
    fn details_align_values_after_their_names() {
        assert_eq!(
            details(&[("name", "orders".into()), ("messages", "12".into())]),
            "name:      orders\nmessages:  12\n"
        );
    }
}
