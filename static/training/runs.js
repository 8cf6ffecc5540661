// Launch form: only the fieldsets of the chosen kind are enabled (disabled fieldsets do not submit).
(function () {
  const kind = document.getElementById("kind");
  if (!kind) return;
  function sync() {
    document.querySelectorAll("#launch-form fieldset[data-kinds]").forEach((fs) => {
      fs.disabled = !fs.dataset.kinds.split(" ").includes(kind.value);
    });
  }
  kind.addEventListener("change", sync);
  sync();
})();
