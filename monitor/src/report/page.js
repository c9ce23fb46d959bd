// The HTML report's only script: sorts a table by the column whose header
// is clicked, and shows the findings of one kind. It reads the page's
// markup only (data- attributes and cell text) and loads nothing.
"use strict";

function sortTable(table, th) {
  const index = Array.prototype.indexOf.call(th.parentNode.children, th);
  const ascending = th.getAttribute("aria-sort") !== "ascending";
  for (const other of th.parentNode.children) {
    other.removeAttribute("aria-sort");
  }
  th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  const numeric = th.dataset.type === "number";
  const key = (row) => {
    const cell = row.cells[index];
    const v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
    return numeric ? Number(v) : v;
  };
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    const c = numeric ? x - y : x.localeCompare(y, "en", { numeric: true });
    return ascending ? c : -c;
  });
  for (const row of rows) {
    body.appendChild(row);
  }
}

function showKind(kind) {
  for (const b of document.querySelectorAll(".filter button")) {
    b.setAttribute("aria-pressed", String(b.dataset.filter === kind));
  }
  for (const el of document.querySelectorAll("#findings [data-kind]")) {
    el.hidden = kind !== "all" && el.dataset.kind !== kind;
  }
}

for (const table of document.querySelectorAll("table.sortable")) {
  for (const th of table.tHead.rows[0].cells) {
    th.tabIndex = 0;
    th.addEventListener("click", () => sortTable(table, th));
    th.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        sortTable(table, th);
      }
    });
  }
}

for (const b of document.querySelectorAll(".filter button")) {
  b.addEventListener("click", () => showKind(b.dataset.filter));
}
