//! HTML table cells that span rows or columns (`rowspan`, `colspan`): a
//! spanning cell's text belongs to every row and column it covers, which is
//! what the table means ("TCP" once for three rows, "Stratum nodes" as the
//! destination of a whole group). [`Grid`] lays each row's cells out on
//! the columns they cover, carrying the rowspans down.

/// The cells still spanning down into later rows, by column: (text, rows left).
#[derive(Default)]
pub(crate) struct Grid {
    below: Vec<Option<(String, usize)>>,
}

/// Spans larger than this are read as this: a page cannot mean 10,000 rows.
const MAX_SPAN: usize = 1000;

impl Grid {
    /// One row's cells, each `(text, rowspan, colspan)`, as one text per column.
    pub(crate) fn row(&mut self, cells: impl IntoIterator<Item = (String, usize, usize)>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut cells = cells.into_iter();
        let mut col = 0;
        loop {
            // Columns held by a cell from a row above come first.
            if let Some(Some((text, left))) = self.below.get_mut(col) {
                out.push(text.clone());
                *left -= 1;
                if *left == 0 {
                    self.below[col] = None;
                }
                col += 1;
                continue;
            }
            let Some((text, rows, cols)) = cells.next() else { break };
            for _ in 0..cols.clamp(1, MAX_SPAN) {
                if self.below.len() <= col {
                    self.below.resize(col + 1, None);
                }
                let rows = rows.clamp(1, MAX_SPAN);
                if rows > 1 {
                    self.below[col] = Some((text.clone(), rows - 1));
                }
                out.push(text.clone());
                col += 1;
            }
        }
        // Spans still running past the row's own cells.
        while let Some(Some((text, left))) = self.below.get_mut(col) {
            out.push(text.clone());
            *left -= 1;
            if *left == 0 {
                self.below[col] = None;
            }
            col += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: &str, r: usize, k: usize) -> (String, usize, usize) {
        (t.to_string(), r, k)
    }

    #[test]
    fn rowspans_carry_down_and_colspans_repeat() {
        let mut g = Grid::default();
        assert_eq!(
            g.row([c("Port", 2, 1), c("Traffic", 1, 2), c("Notes", 2, 1)]),
            ["Port", "Traffic", "Traffic", "Notes"]
        );
        assert_eq!(
            g.row([c("Source", 1, 1), c("Destination", 1, 1)]),
            ["Port", "Source", "Destination", "Notes"]
        );
        assert_eq!(g.row([c("5433", 1, 1), c("TCP", 3, 1)]), ["5433", "TCP"]);
        assert_eq!(g.row([c("5434", 1, 1)]), ["5434", "TCP"]);
        assert_eq!(g.row([c("5435", 1, 1), c("x", 1, 1)]), ["5435", "TCP", "x"]);
        assert_eq!(g.row([c("9", 1, 1), c("y", 1, 1)]), ["9", "y"]);
    }
}
