// Keyboard for the labeling page: each label button's data-key (1..9, 0, then letters) picks
// it, s skips, u undoes the last label (docs/platform.md, "The labeling page").
// Every key clicks a real button, so the page behaves the same with and without htmx.
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  var target = event.target;
  if (target && (/^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) || target.isContentEditable)) {
    return;
  }
  var card = document.getElementById("label-card");
  if (!card || card.querySelector(".htmx-request")) return; // one action at a time
  var button = card.querySelector('[data-key="' + CSS.escape(event.key.toLowerCase()) + '"]');
  if (!button || button.disabled) return;
  event.preventDefault();
  // htmx wires up swapped-in forms only after its settle delay; a fast typist can be quicker,
  // and the click would then post the plain form (a full reload). Wire it up now.
  if (window.htmx) window.htmx.process(card);
  button.click();
});

// After each swap of the card: say what happened and what the new item is (a polite live
// region outside the card, which outlives the swap), and put the focus back on the card so
// the keys keep working and a screen reader starts from the item.
(function () {
  function itemOf(card) {
    var text = card && card.querySelector("#item-text");
    return text ? text.dataset.item || "" : "";
  }
  var shown = itemOf(document.getElementById("label-card"));
  document.addEventListener("htmx:afterSwap", function (event) {
    var card = document.getElementById("label-card");
    if (!card || event.detail.target.id !== "label-card") return;
    var item = itemOf(card);
    var posted = event.detail.requestConfig && event.detail.requestConfig.verb === "post";
    var changed = item !== shown;
    shown = item;
    if (!posted && !changed) return; // a poll that found nothing new
    var announce = document.getElementById("announce");
    if (announce) {
      var feedback = card.querySelector("#feedback");
      var text = card.querySelector("#item-text");
      var words = text ? text.textContent.trim() : "";
      if (item && words.length > 300) words = words.slice(0, 300) + "…";
      var parts = [];
      if (feedback) parts.push(feedback.textContent.trim());
      if (changed || !feedback) parts.push(item ? "New item: " + words : words);
      announce.textContent = parts.join(" ");
    }
    var active = document.activeElement;
    if (posted || !active || active === document.body) card.focus();
  });
})();
