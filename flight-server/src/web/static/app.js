// Ctrl+Enter (or Cmd+Enter) in the SQL box runs the question. Everything else works without script.
document.addEventListener("keydown", function (event) {
  var box = event.target;
  if (box && box.name === "sql" && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    box.form.requestSubmit();
  }
});
