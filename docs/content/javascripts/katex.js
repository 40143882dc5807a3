// Render the $…$ and $$…$$ math that pymdownx.arithmatex (generic mode) leaves in
// the page, with the KaTeX copy vendored under assets/katex (no CDN: works offline).
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
  });
});
