// Keyboard for the labeling page: 1..9 pick a label, s skips, u undoes the last label.
// Every key clicks a real button, so the page behaves the same with and without htmx.
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  var target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA")) return;
  var card = document.getElementById("label-card");
  if (!card || card.querySelector(".htmx-request")) return; // one action at a time
  var button = card.querySelector('[data-key="' + event.key.toLowerCase() + '"]');
  if (!button || button.disabled) return;
  event.preventDefault();
  // htmx wires up swapped-in forms only after its settle delay; a fast typist can be quicker,
  // and the click would then post the plain form (a full reload). Wire it up now.
  if (window.htmx) window.htmx.process(card);
  button.click();
});
