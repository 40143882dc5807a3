// Render the $…$ and $$…$$ math that pymdownx.arithmatex (generic mode) leaves in
// the page, with the KaTeX copy vendored under assets/katex (no CDN: works offline).
// Then fit each display formula to the text column: a formula a little too wide
// (the multi-head attention line at 1400 px) is set smaller, down to MIN_SCALE;
// one still too wide scrolls sideways in its own box (stylesheets/extra.css
// draws a shadow at the edge that has more), never under the sidebar.
const MIN_SCALE = 0.65;

function fitDisplayMath(root) {
  for (const box of root.querySelectorAll("div.arithmatex")) {
    const display = box.querySelector(".katex-display");
    if (!display || box.clientWidth === 0) continue; // not rendered, or in a hidden tab
    let scale = 1;
    display.style.fontSize = "";
    while (box.scrollWidth > box.clientWidth && scale > MIN_SCALE) {
      scale = Math.max(MIN_SCALE, scale - 0.05);
      display.style.fontSize = `${Math.round(scale * 100)}%`;
    }
  }
}

document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
  });
  fitDisplayMath(body);
  // Measured again once KaTeX's own fonts are in: the fallback fonts are narrower.
  document.fonts.ready.then(() => fitDisplayMath(body));
  // Formulas in a closed "details" block or an inactive tab have no width until shown.
  for (const details of body.querySelectorAll("details")) {
    details.addEventListener("toggle", () => fitDisplayMath(details));
  }
  for (const input of body.querySelectorAll(".tabbed-set > input")) {
    input.addEventListener("change", () => fitDisplayMath(input.parentElement));
  }
});

let resizing;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => fitDisplayMath(document.body), 150);
});
