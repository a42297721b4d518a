// LLM Gateway dashboard: progressive enhancement only; every form works without it.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const opener of document.querySelectorAll("[data-open-dialog]")) {
    opener.addEventListener("click", () => {
      const dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog) dialog.showModal();
    });
  }
  for (const closer of document.querySelectorAll("[data-close-dialog]")) {
    closer.addEventListener("click", () => closer.closest("dialog").close());
  }
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      const status = button.parentElement.querySelector(".copied");
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
        if (status) status.textContent = "Copied.";
      } catch (_error) {
        // Clipboard API needs a secure context; the text stays selected for Ctrl+C.
        if (status) status.textContent = "Press Ctrl+C to copy the selected key.";
      }
    });
  }
});
