// Sortable tables: click a header; numbers sort by their data-v (or text), missing values last.
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "desc" ? "asc" : "desc";
      if (!th.dataset.dir && th.dataset.type !== "num") dir = "asc";
      table.querySelectorAll("thead th").forEach(function (o) { delete o.dataset.dir; });
      th.dataset.dir = dir;
      var num = th.dataset.type === "num", body = table.tBodies[0];
      var key = function (row) {
        var cell = row.cells[col], v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
        if (!num) return v.toLowerCase();
        var f = parseFloat(String(v).replace(/,/g, ""));
        return isNaN(f) || f < 0 ? null : f;
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === y) return 0;
        if (x === null) return 1;
        if (y === null) return -1;
        return (x < y ? -1 : 1) * (dir === "asc" ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
// A click on a thumbnail swaps the image and its class-activation map; the button swaps them all.
document.querySelectorAll(".tile.has-map .thumb").forEach(function (t) {
  var flip = function () { t.parentElement.classList.toggle("show-map"); };
  t.addEventListener("click", flip);
  t.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); flip(); } });
});
var mapsAll = document.getElementById("maps-all");
if (mapsAll) mapsAll.addEventListener("click", function () {
  var on = mapsAll.dataset.on !== "1";
  mapsAll.dataset.on = on ? "1" : "0";
  mapsAll.textContent = on ? "show all images" : "show all maps";
  document.querySelectorAll(".tile.has-map").forEach(function (t) { t.classList.toggle("show-map", on); });
});
// Galleries show a first page; the button reveals the rest (their thumbnails load only then).
document.querySelectorAll(".more-btn").forEach(function (b) {
  b.addEventListener("click", function () { b.parentElement.classList.add("expanded"); });
});
